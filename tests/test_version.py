"""One version, written once (lib/idstore/__init__.py): both packages and the idstore command read it."""
import subprocess
import sys
from pathlib import Path

import idstore
from idstore_tools.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_both_packages_take_their_version_from_idstore():
    for folder in (REPO, REPO / "tools"):
        result = subprocess.run([sys.executable, "setup.py", "--version"], cwd=folder, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == idstore.__version__


def test_the_command_prints_its_version_and_a_bare_call_is_a_usage_error_on_stderr(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"idstore {idstore.__version__}"
    assert main([]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and "usage: idstore COMMAND" in printed.err
