"""One exception boundary for every command-line stage.

Stages raise a ``ToolError`` subclass with a message a user can act on; ``run_cli`` turns it
into one line on stderr and a distinct exit code. Anything else is a bug and still gets one
line (plus a hint to re-run with ``TINYML_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence


class ToolError(Exception):
    """An error the user can fix; ``exit_code`` tells scripts which kind."""

    exit_code = 1


class UsageError(ToolError):
    exit_code = 2


class DataError(ToolError):
    """Dataset or run-folder content is missing or malformed."""

    exit_code = 3


class ModelError(ToolError):
    """A model cannot be converted, verified or deployed."""

    exit_code = 4


class DeviceError(ToolError):
    """The serial port or the device misbehaves (missing, busy, silent, wrong model)."""

    exit_code = 5


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main`` and map failures to a one-line message and an exit code."""
    try:
        code = main(argv)
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.filename is None or os.environ.get("TINYML_DEBUG"):
            return _internal(exc)
        # A file or folder the user can fix (permissions, a directory in place of a file, a
        # full disk): the run-folder exit code, not an internal error.
        print(f"error: cannot access {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return DataError.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the boundary: never show a traceback by default
        return _internal(exc)
    return int(code or 0)


def first_line(exc: BaseException | str, default: str | None = None) -> str:
    """The first non-blank line of an exception's message (or of a text), stripped, for a
    one-line error. An empty message gives ``default``, else the exception's type name (a
    text gives ""), so a caller never indexes an empty list."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    if default is not None:
        return default
    return type(exc).__name__ if isinstance(exc, BaseException) else ""


def _internal(exc: Exception) -> int:
    if os.environ.get("TINYML_DEBUG"):
        raise exc
    first = first_line(exc, default="")
    print(f"error: internal error: {type(exc).__name__}: {first} (set TINYML_DEBUG=1 for details)",
          file=sys.stderr)
    return 70
