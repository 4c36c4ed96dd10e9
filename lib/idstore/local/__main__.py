"""`python -m idstore.local up|down|status|seed`: the same as `idstore local ...`."""

import sys

from idstore.local.cli import main

sys.exit(main())
