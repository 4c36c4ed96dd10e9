"""`python -m idstore_tools.local up|down|status|seed`: the same as `idstore local ...`."""

import sys

from idstore_tools.local.cli import main

sys.exit(main())
