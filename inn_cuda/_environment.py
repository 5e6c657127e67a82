"""Environment variables read by inn_cuda, validated where they are read: a bad value is an
error that names the variable, what it accepts and what it holds.

In the ``inn-cuda`` command line (``inn-cuda ...``, ``python -m inn_cuda ...``) the variables
are read while the package is imported, before the command can catch anything; there a bad
value prints one line and exits with status 2 (``--debug`` or ``INN_CUDA_DEBUG=1`` show the
traceback). Everywhere else it raises ``ValueError``.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

FLAG_VALUES = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}
DEBUG_ENV = "INN_CUDA_DEBUG"


def _flag_text(name: str):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return FLAG_VALUES.get(value.strip().lower(), value)


def debug_requested(argv=None) -> bool:
    """``--debug`` on the command line or ``INN_CUDA_DEBUG`` set to a true value (an invalid
    value counts as asking for tracebacks: it is reported as an error anyway)."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or _flag_text(DEBUG_ENV) not in (None, False)


def running_cli() -> bool:
    """Whether this process is the ``inn-cuda`` command (console script or ``python -m``)."""
    argv = getattr(sys, "orig_argv", sys.argv)
    if "-m" in argv[:-1] and argv[argv.index("-m") + 1].split(".")[0] == "inn_cuda":
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "") in ("inn-cuda", "inn-cuda.exe")


def fail_import(error: Exception) -> NoReturn:
    """Raise ``error`` (found while importing inn_cuda, e.g. a bad variable); in the command
    line print it as one line and exit 2 instead."""
    if running_cli() and not debug_requested():
        print(f"inn-cuda: error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(2)
    raise error


def invalid(name: str, value: str, expected: str) -> NoReturn:
    """Report environment variable ``name`` holding ``value`` where ``expected`` was wanted."""
    fail_import(ValueError(f"environment variable {name} must be {expected}; got {value!r}"))


def read_flag(name: str, default: bool) -> bool:
    """A boolean variable: 1/0, true/false, yes/no, on/off (any case); unset or empty: default."""
    value = _flag_text(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    invalid(name, value, "one of 1, 0, true, false, yes, no, on, off")


def read_choice(name: str, choices, default: str) -> str:
    """A variable that names one of ``choices`` (case-insensitive); unset: ``default``."""
    value = os.environ.get(name, default)
    if value.lower() not in choices:
        invalid(name, value, f"one of {', '.join(choices)}")
    return value.lower()
