"""Where the board's own sources are: the TFLM Arduino library and the Arduino Mbed core.

Every device claim is checked against the sources the board builds, so the host build of
the board's TFLM, the cross-compile checks and the emulated Cortex-M4 all read them from
here. Looked up in this order:

1. where PlatformIO puts them after ``pio pkg install -e nano33ble`` (needs internet once):
   ``.pio/libdeps/nano33ble/Arduino_TensorFlowLite`` in the repository and
   ``framework-arduino-mbed`` in PlatformIO's packages folder (``$PLATFORMIO_CORE_DIR`` or
   ``~/.platformio``);
2. ``$TINYML_BOARD_SOURCES``: a folder holding ``Arduino_TensorFlowLite/`` and
   ``ArduinoCore-mbed/`` (unmodified copies of the same public trees).

The library pin itself lives in ``platformio.ini`` (``lib_deps``), the one place a user's
PlatformIO reads it from.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from common.errors import ToolError

__all__ = [
    "CORE_DIRNAME",
    "ENV_VAR",
    "FETCH_HINT",
    "LIBRARY_NAME",
    "BoardSourcesMissing",
    "find_core",
    "find_library",
    "library_version",
    "require_core",
    "require_library",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "TINYML_BOARD_SOURCES"
PIO_ENV = "nano33ble"
LIBRARY_NAME = "Arduino_TensorFlowLite"
# PlatformIO's package name for the Arduino Mbed core, and the folder name of a plain checkout.
CORE_PACKAGE = "framework-arduino-mbed"
CORE_DIRNAME = "ArduinoCore-mbed"
FETCH_HINT = (f"run `make board-sources` (pio pkg install -e {PIO_ENV}, needs internet once) or set "
              f"{ENV_VAR} to a folder holding {LIBRARY_NAME}/ and {CORE_DIRNAME}/")


class BoardSourcesMissing(ToolError):
    """The board's TFLM library or Arduino core is not on this machine."""

    exit_code = 6


def _platformio_home() -> Path:
    return Path(os.environ.get("PLATFORMIO_CORE_DIR") or Path.home() / ".platformio")


def _override(name: str) -> Path | None:
    root = os.environ.get(ENV_VAR)
    return Path(root) / name if root else None


def _first_existing(candidates: list[Path | None], marker: str) -> Path | None:
    for path in candidates:
        if path is not None and (path / marker).is_file():
            return path.resolve()
    return None


def find_library() -> Path | None:
    """The TFLM Arduino library's root (the folder with ``library.properties``), or None."""
    return _first_existing([REPO_ROOT / ".pio" / "libdeps" / PIO_ENV / LIBRARY_NAME, _override(LIBRARY_NAME)],
                           "library.properties")


def find_core() -> Path | None:
    """The Arduino Mbed core's root (with ``cores/arduino`` and the Nano's variant), or None."""
    return _first_existing([_platformio_home() / "packages" / CORE_PACKAGE, _override(CORE_DIRNAME)],
                           "variants/ARDUINO_NANO33BLE/cxxflags.txt")


def require_library() -> Path:
    found = find_library()
    if found is None:
        raise BoardSourcesMissing(f"the board's TFLM library ({LIBRARY_NAME}) was not found: {FETCH_HINT}")
    return found


def require_core() -> Path:
    found = find_core()
    if found is None:
        raise BoardSourcesMissing(f"the Arduino Mbed core ({CORE_DIRNAME}) was not found: {FETCH_HINT}")
    return found


@functools.cache
def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in {".h", ".hpp", ".c", ".cc", ".cpp", ".properties"}:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def library_version(root: Path) -> str:
    """``<name> <version> (<digest of its sources>)``: the version field alone does not change
    between the library's commits, the digest does."""
    fields = {}
    for line in (root / "library.properties").read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return f"{fields.get('name', root.name)} {fields.get('version', '?')} ({_tree_digest(root)})"
