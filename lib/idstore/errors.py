"""How a run can end other than in success, one exception and one exit code each.

The code tells an operator's runbook what to do: fix the config (2), look at what failed in
AWS (1), decide about a guard (3), or wait for the input (4).
"""
OK, FAILED, USAGE, REFUSED, INPUT_NOT_READY = 0, 1, 2, 3, 4
EXIT_CODES = (  # (code, what it means, what follows from it)
    (OK, "success", ""),
    (FAILED, "the run failed", "AWS refused a call, a resource is missing or a write failed; the message names "
                               "the resource and the action"),
    (USAGE, "configuration or usage error", "the message names the key or flag; nothing was read or written"),
    (REFUSED, "refused by a safety guard or the table's run lock", "nothing was changed"),
    (INPUT_NOT_READY, "the input is not there yet", "a day of the window, or the snapshot, is missing; run again "
                                                    "when it has arrived"),
)


class ConfigError(ValueError):
    """A configuration or usage problem; the message names the key."""


class RunFailed(RuntimeError):
    """The run did not complete; the message says what is missing."""


class RunRefused(RuntimeError):
    """A safety guard or the lock stopped the run before it changed anything."""


class InputNotReady(RuntimeError):
    """The input the run needs is not there (yet); the message names what is missing."""


def exit_code(exc: BaseException) -> int:
    """The exit code a run that raised `exc` ends with."""
    for kind, code in ((ConfigError, USAGE), (RunRefused, REFUSED), (InputNotReady, INPUT_NOT_READY)):
        if isinstance(exc, kind):
            return code
    return FAILED


def exit_codes_text() -> str:
    """The table of exit codes for --help and the docs."""
    return "exit codes: " + ", ".join(f"{code} {meaning}" for code, meaning, _ in EXIT_CODES)
