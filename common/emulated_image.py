"""The firmware image for the emulated Cortex-M4 (QEMU ``mps2-an386``).

It links the objects ``common.cross_build`` compiled with the Nano's flags: the TFLM library
(CMSIS-NN kernels on their DSP paths, ``-mfloat-abi=softfp -mfpu=fpv4-sp-d16``), the TFLM
adapter, the portable core and the generated model. Only the board layer differs:
``firmware/boards/mps2_an386/`` (semihosting link, SysTick, start-up code, linker script) replaces
``firmware/src/main.cpp``, and the library's Arduino-only files (its ``system_setup.cpp``,
which sends TFLM's log to ``Serial``, and the ``peripherals/`` and ``test_over_serial/``
helpers) stay out; the board layer defines ``DebugLog`` instead.

The image is cached in ``build/cross/emu-<digest>/firmware.elf`` (digest of every object's
folder, the board layer, the linker script and the link flags), linked in a temporary folder
that is renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import board_sources, cross_build
from common.cross_build import CrossBuildError
from common.errors import ToolError

__all__ = ["BOARD_DIR", "QEMU", "EmulatedImage", "QemuMissing", "build_image", "require_qemu"]

# What runs the image (Debian package qemu-system-arm).
QEMU = "qemu-system-arm"

BOARD_DIR = cross_build.FIRMWARE_DIR / "boards" / "mps2_an386"
BOARD_UNITS = ("board.cpp", "startup.cpp")
LINKER_SCRIPT = BOARD_DIR / "mps2_an386.ld"
IMAGE_NAME = "firmware.elf"
MAP_NAME = "firmware.map"
# Library files that need the Arduino core at run time (Serial, Wire, pins): the Nano links
# them, the emulated board has no Arduino core to link them against.
ARDUINO_ONLY = ("tensorflow/lite/micro/system_setup.cpp", "peripherals/", "test_over_serial/")
# The Nano's board layer, replaced by BOARD_UNITS.
NANO_BOARD_LAYER = "src/main.cpp"
# Only the CPU and ABI flags matter for the link; the rest are compile options.
CPU_FLAG_PREFIXES = ("-mcpu=", "-mthumb", "-mfloat-abi=", "-mfpu=")
LINK_FLAGS = ("-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections")


class QemuMissing(ToolError):
    """qemu-system-arm is not installed (the exit code of a missing toolchain)."""

    exit_code = 6


def require_qemu(needed_by: str | None = None) -> None:
    """One line and exit 6 unless qemu-system-arm is on PATH."""
    if shutil.which(QEMU) is None:
        what = f"{needed_by} needs {QEMU}" if needed_by else f"{QEMU} not found"
        raise QemuMissing(f"{what}: install it (Debian: apt-get install qemu-system-arm)")


@dataclass(frozen=True)
class EmulatedImage:
    elf: Path
    sizes: cross_build.Sizes  # of the linked image
    build_s: float  # seconds this call spent building (0 when cached)


def _arduino_only(key: str) -> bool:
    return any(key == p or (p.endswith("/") and key.startswith(p)) for p in ARDUINO_ONLY)


def build_image(generated_dir: Path, library: Path | None = None, core: Path | None = None) -> EmulatedImage:
    """The linked ELF for ``generated_dir``'s model (built when missing)."""
    started = time.monotonic()
    library = library if library is not None else board_sources.require_library()
    core = core if core is not None else board_sources.require_core()
    generated_dir = Path(generated_dir)
    lib = cross_build.library_objects(library, core)
    firmware = cross_build.firmware_objects(generated_dir, library, core)
    board_units = {f"board/{name}": BOARD_DIR / name for name in BOARD_UNITS}
    include_dirs = cross_build.firmware_include_dirs(generated_dir, library, core)
    board = cross_build.compile_units("mps2", board_units, include_dirs, library, core)
    cpu = tuple(f for f in cross_build.board_flags(core).cxx if f.startswith(CPU_FLAG_PREFIXES))
    objects = [*board.paths(), *(p for k, p in sorted(firmware.objects.items()) if k != NANO_BOARD_LAYER)]
    archive_members = [p for k, p in sorted(lib.objects.items()) if not _arduino_only(k)]
    digest = cross_build._digest([cross_build.compiler_identity(), *cpu, *LINK_FLAGS, lib.directory.name,
                                  firmware.directory.name, board.directory.name], [LINKER_SCRIPT])
    final = cross_build.BUILD_ROOT / f"emu-{digest}"
    if not (final / IMAGE_NAME).is_file():
        _link(final, cpu, objects, archive_members)
    elf = final / IMAGE_NAME
    sizes = cross_build.object_sizes([elf])
    return EmulatedImage(elf, sizes, time.monotonic() - started)


def _link(final: Path, cpu: tuple[str, ...], objects: list[Path], archive_members: list[Path]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cross_build.BUILD_ROOT))
    try:
        archive = tmp / "libtflm.a"
        # The library goes in as an archive: the linker takes only the members the image uses.
        proc = cross_build._run([cross_build.AR, "rcs", str(archive), *map(str, archive_members)],
                                cross_build.TOOL_TIMEOUT_S)
        if proc.returncode != 0:
            raise CrossBuildError(f"{cross_build.AR} failed: {cross_build._first_error(proc.stderr)}")
        cmd = [cross_build.CXX, *cpu, *LINK_FLAGS, f"-T{LINKER_SCRIPT}", f"-Wl,-Map={tmp / MAP_NAME}",
               *map(str, objects), str(archive), "-o", str(tmp / IMAGE_NAME)]
        proc = cross_build._run(cmd, cross_build.COMPILE_TIMEOUT_S)
        if proc.returncode != 0:
            raise CrossBuildError("the emulated board's image does not link: "
                                  f"{cross_build._first_error(proc.stderr)}")
        archive.unlink()
        (tmp / "link.json").write_text(json.dumps({"command": [Path(cmd[0]).name, *cmd[1:]]}, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / IMAGE_NAME).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
