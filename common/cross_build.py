"""Cross-compile the Nano 33 BLE firmware with the board's own sources and flags.

``pio run`` needs to download the nordicnrf52 platform, so this module does what PlatformIO's
Mbed builder does with the pieces that are on this machine: the flags of the Arduino Mbed
core's Nano variant (``variants/ARDUINO_NANO33BLE/{cflags,cxxflags,defines,includes}.txt``),
changed by ``platformio.ini``'s ``build_unflags`` / ``build_flags`` (read through
``pio project config``, so the flags live in one place), applied to

- every C/C++ source file of the TFLM Arduino library that PlatformIO compiles (all of them
  under ``src/``, except the top-level ``example(s)/`` and ``test(s)/`` folders), and
- the firmware: ``firmware/src/*.cpp``, ``firmware/lib/core/*.cpp`` and the generated
  ``model_data.cpp``.

Nothing links for the Nano here (the core's precompiled ``libmbed.a`` is not part of the
sources), so the result is a set of objects, their warnings and their sizes. The emulated
Cortex-M4 (``common.emulated_image``) links the very same library and firmware objects.

Objects are cached under ``build/cross/<kind>-<digest>/``, where the digest covers every
source and header that can reach them, the flags and the compiler version; a build goes to
a temporary folder that is renamed into place, so concurrent builders never see half of one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common import board_sources
from common.errors import ModelError, ToolError

__all__ = [
    "CC",
    "CXX",
    "BoardFlags",
    "CrossBuildError",
    "ObjectSet",
    "board_flags",
    "firmware_objects",
    "library_objects",
    "library_sources",
    "object_sizes",
    "require_toolchain",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
BUILD_ROOT = REPO_ROOT / "build" / "cross"
PLATFORMIO_INI = REPO_ROOT / "platformio.ini"
PIO_ENV = "env:nano33ble"

CC = "arm-none-eabi-gcc"
CXX = "arm-none-eabi-g++"
AR = "arm-none-eabi-ar"
SIZE = "arm-none-eabi-size"
TOOLCHAIN_HINT = ("Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                  "libstdc++-arm-none-eabi-newlib")

# The machine is shared; two compilers at once use both cores without starving the rest.
JOBS = 2
# One -O2 translation unit of TFLM takes seconds; a compiler stuck for minutes is hung.
COMPILE_TIMEOUT_S = 300.0
# `pio project config` only parses platformio.ini (about 1 s).
PIO_TIMEOUT_S = 120.0
# `size`, `ar`, `--version`: instant tools.
TOOL_TIMEOUT_S = 120.0

VARIANT = Path("variants") / "ARDUINO_NANO33BLE"
# What the Arduino IDE and PlatformIO's Mbed builder define for this board (the IDE's version
# number of the core's own platform.txt; no source compares it beyond "defined").
ARDUINO_DEFINES = ("-DARDUINO=10607", "-DARDUINO_ARDUINO_NANO33BLE", "-DARDUINO_ARCH_MBED")
CORE_INCLUDES = (Path("cores") / "arduino", Path("cores") / "arduino" / "api" / "deprecated",
                 Path("cores") / "arduino" / "api" / "deprecated-avr-comp", VARIANT)
# PlatformIO's default source filter for a library: everything under src/ except these
# top-level folders (piolib.LibBuilderBase.src_filter); deeper folders of the same name, such
# as src/peripherals/examples/, are compiled (they hold only .ino files here, which a library
# build does not compile).
LIBRARY_EXCLUDED_DIRS = ("example", "examples", "test", "tests", ".git", ".svn")
C_SUFFIXES = (".c",)
CXX_SUFFIXES = (".cpp", ".cc", ".cxx")
HEADER_SUFFIXES = (".h", ".hpp", ".inc")
MANIFEST = "manifest.json"
WARNING = re.compile(r": warning: ")


class CrossBuildError(ToolError):
    """The cross compiler is missing or the firmware does not compile for the board."""

    exit_code = 6


@dataclass(frozen=True)
class BoardFlags:
    """Everything a compile line needs besides its include folders."""

    c: tuple[str, ...]
    cxx: tuple[str, ...]
    # -I/-iprefix/@includes.txt of the core, as absolute paths.
    core_includes: tuple[str, ...]
    # The changes platformio.ini makes (for reports).
    unflags: tuple[str, ...]
    added: tuple[str, ...]


@dataclass(frozen=True)
class ObjectSet:
    """Compiled objects, keyed by their source's path relative to ``root``."""

    directory: Path
    objects: dict[str, Path]
    warnings: int
    warning_lines: tuple[str, ...]
    build_s: float | None  # wall time of the build that made these objects (None: not recorded)

    def paths(self) -> list[Path]:
        return [self.objects[k] for k in sorted(self.objects)]


def require_toolchain() -> None:
    missing = [tool for tool in (CC, CXX, AR, SIZE) if shutil.which(tool) is None]
    if missing:
        raise CrossBuildError(f"{', '.join(missing)} not found: install the Arm cross compiler "
                              f"({TOOLCHAIN_HINT})")


def _run(cmd: Sequence[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=cwd)
    except subprocess.TimeoutExpired:
        raise CrossBuildError(f"{Path(cmd[0]).name} timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise CrossBuildError(f"cannot run {cmd[0]}: {exc.strerror}") from None


@functools.cache
def compiler_identity() -> str:
    """First line of ``arm-none-eabi-g++ --version``: a new compiler must not reuse old objects."""
    require_toolchain()
    proc = _run([CXX, "--version"], TOOL_TIMEOUT_S)
    return proc.stdout.splitlines()[0] if proc.stdout else CXX


@functools.cache
def pio_flag_changes(ini: Path = PLATFORMIO_INI) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(build_unflags, build_flags)`` of the nano33ble environment, as PlatformIO reads them."""
    proc = _run([sys.executable, "-m", "platformio", "project", "config", "--json-output"], PIO_TIMEOUT_S,
                cwd=ini.parent)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CrossBuildError(f"`pio project config` failed on {ini.name}: {last}")
    try:
        sections = dict(json.loads(proc.stdout))
        options = dict(sections[PIO_ENV])
    except (ValueError, KeyError, TypeError):
        raise CrossBuildError(f"{ini.name} has no [{PIO_ENV}] section") from None

    def tokens(name: str) -> tuple[str, ...]:
        value = options.get(name, [])
        items = value if isinstance(value, list) else [value]
        return tuple(tok for item in items for tok in shlex.split(str(item)))

    return tokens("build_unflags"), tokens("build_flags")


def _flag_file(path: Path) -> list[str]:
    if not path.is_file():
        raise board_sources.BoardSourcesMissing(f"{path} is missing: the Arduino Mbed core is incomplete")
    return [tok for tok in shlex.split(path.read_text(errors="replace")) if tok != "-c"]


def _apply(base: list[str], unflags: Sequence[str], added: Sequence[str], cxx: bool) -> tuple[str, ...]:
    kept = [flag for flag in base if flag not in unflags]
    # PlatformIO routes -std=gnu++/c++ to C++ only and -std=gnu11/c11 to C only.
    for flag in added:
        if flag.startswith("-std="):
            if ("++" in flag) != cxx:
                continue
            kept = [f for f in kept if not f.startswith("-std=")]
        kept.append(flag)
    return tuple(kept)


def board_flags(core: Path | None = None) -> BoardFlags:
    """The Nano's compile flags: the variant's own, with platformio.ini's changes."""
    core = core if core is not None else board_sources.require_core()
    variant = core / VARIANT
    unflags, added = pio_flag_changes()
    defines = [f"@{variant / 'defines.txt'}", *ARDUINO_DEFINES]
    c = _apply(_flag_file(variant / "cflags.txt"), unflags, added, cxx=False)
    cxx = _apply(_flag_file(variant / "cxxflags.txt"), unflags, added, cxx=True)
    includes = (*(f"-I{core / d}" for d in CORE_INCLUDES), f"-iprefix{core / 'cores' / 'arduino'}/",
                f"@{variant / 'includes.txt'}")
    return BoardFlags(c=(*c, *defines), cxx=(*cxx, *defines), core_includes=includes, unflags=unflags,
                      added=added)


def library_sources(library: Path) -> list[Path]:
    """The library's files PlatformIO compiles: C/C++ under ``src/`` minus the excluded top folders."""
    src = library / "src"
    found = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if len(rel.parts) > 1 and rel.parts[0] in LIBRARY_EXCLUDED_DIRS:
            continue
        if path.is_file() and path.suffix in (*C_SUFFIXES, *CXX_SUFFIXES):
            found.append(path)
    return found


@functools.cache
def _tree_digest(root: Path, suffixes: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and (not suffixes or path.suffix in suffixes):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _core_digest(core: Path) -> str:
    # Headers and flag files: the core's .cpp files are never compiled here.
    return _tree_digest(core, (*HEADER_SUFFIXES, ".txt"))


def _digest(parts: Iterable[str], files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    for path in files:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _first_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error" in line:
            return line
    return lines[0] if lines else "no compiler output"


def _object_name(key: str) -> str:
    return re.sub(r"\.(c|cc|cpp|cxx)$", ".o", key)


def _compile_all(kind: str, digest: str, units: dict[str, Path], flags: BoardFlags,
                 include_dirs: Sequence[Path]) -> ObjectSet:
    """Compile ``units`` (key -> source) into ``build/cross/<kind>-<digest>/`` unless cached."""
    final = BUILD_ROOT / f"{kind}-{digest}"
    manifest = final / MANIFEST
    if manifest.is_file():
        return _load(final)
    require_toolchain()
    started = time.monotonic()
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-{digest}.", dir=BUILD_ROOT))
    includes = [f"-I{d}" for d in include_dirs]

    def one(key: str) -> tuple[str, list[str]]:
        src = units[key]
        out = tmp / _object_name(key)
        out.parent.mkdir(parents=True, exist_ok=True)
        is_c = src.suffix in C_SUFFIXES
        cmd = [CC if is_c else CXX, *(flags.c if is_c else flags.cxx), *includes, *flags.core_includes,
               "-c", str(src), "-o", str(out)]
        proc = _run(cmd, COMPILE_TIMEOUT_S)
        if proc.returncode != 0:
            raise CrossBuildError(f"{key} does not compile for the Nano 33 BLE: {_first_error(proc.stderr)}")
        return key, [line for line in proc.stderr.splitlines() if WARNING.search(line)]

    try:
        pool = ThreadPoolExecutor(max_workers=JOBS)
        try:
            results = dict(pool.map(one, sorted(units)))
        finally:
            # A failed unit stops the build at once instead of after every other unit.
            pool.shutdown(wait=True, cancel_futures=True)
        warnings = [line for key in sorted(results) for line in results[key]]
        record = {
            "kind": kind,
            "compiler": compiler_identity(),
            "c_flags": list(flags.c),
            "cxx_flags": list(flags.cxx),
            "objects": {key: _object_name(key) for key in sorted(units)},
            "warnings": len(warnings),
            "warning_lines": [_strip_paths(line) for line in warnings],
            # Wall time of the build with JOBS compilers (the machine's load included).
            "build_s": round(time.monotonic() - started, 1),
            "jobs": JOBS,
        }
        (tmp / MANIFEST).write_text(json.dumps(record, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:
            if not manifest.is_file():  # not another builder's complete result: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _load(final)


def _strip_paths(line: str) -> str:
    """Warning lines without machine paths (for reports)."""
    return re.sub(r"^/\S*/(Arduino_TensorFlowLite|ArduinoCore-mbed|firmware)/", r"\1/", line)


def _load(directory: Path) -> ObjectSet:
    record = json.loads((directory / MANIFEST).read_text())
    objects = {key: directory / name for key, name in record["objects"].items()}
    return ObjectSet(directory, objects, int(record["warnings"]), tuple(record["warning_lines"]),
                     record.get("build_s"))


def library_objects(library: Path | None = None, core: Path | None = None) -> ObjectSet:
    """Every library source PlatformIO compiles, compiled with the Nano's flags (cached).

    Keys are paths relative to the library's ``src/`` folder."""
    library = library if library is not None else board_sources.require_library()
    core = core if core is not None else board_sources.require_core()
    flags = board_flags(core)
    src = library / "src"
    units = {str(p.relative_to(src)): p for p in library_sources(library)}
    digest = _digest([compiler_identity(), *flags.c, *flags.cxx, *flags.core_includes,
                      _tree_digest(src, ()), _core_digest(core)], [])
    # PlatformIO compiles a library with its own folder on the include path, the core's, and
    # those of the core's bundled libraries its dependency finder resolves (<Wire.h> for the
    # library's peripherals/).
    return _compile_all("lib", digest, units, flags, [src, *core_library_dirs(core)])


def core_library_dirs(core: Path) -> list[Path]:
    """The include folders of the libraries bundled with the core (``libraries/<name>[/src]``)."""
    found = []
    for lib in sorted((core / "libraries").glob("*")):
        if lib.is_dir():
            found.append(lib / "src" if (lib / "src").is_dir() else lib)
    return found


def firmware_units(generated_dir: Path) -> dict[str, Path]:
    """The firmware's own translation units for the Nano: board layer, adapter, core, model."""
    units = {f"src/{p.name}": p for p in sorted((FIRMWARE_DIR / "src").glob("*.cpp"))}
    units.update({f"core/{p.name}": p for p in sorted((FIRMWARE_DIR / "lib" / "core").glob("*.cpp"))})
    units.update({f"model/{p.name}": p for p in sorted(Path(generated_dir).glob("*.cpp"))})
    return units


def firmware_include_dirs(generated_dir: Path, library: Path, core: Path) -> list[Path]:
    """What PlatformIO puts on the firmware's include path: the project's include and src
    folders, its libraries (core, model), the TFLM library's src/ and the core's bundled
    libraries the TFLM library's header pulls in (TensorFlowLite.h includes <Wire.h>)."""
    return [FIRMWARE_DIR / "include", FIRMWARE_DIR / "src", FIRMWARE_DIR / "lib" / "core",
            Path(generated_dir), library / "src", *core_library_dirs(core)]


def compile_units(kind: str, units: dict[str, Path], include_dirs: Sequence[Path], library: Path,
                  core: Path, extra_files: Iterable[Path] = ()) -> ObjectSet:
    """Compile firmware-side ``units`` with the Nano's flags (cached by every header they can see
    in ``include_dirs`` besides the board's sources, which are covered by their own digests)."""
    flags = board_flags(core)
    board_dirs = {library / "src", *core_library_dirs(core)}
    headers = [p for d in include_dirs if d not in board_dirs and Path(d).is_dir()
               for p in sorted(Path(d).glob("*")) if p.suffix in HEADER_SUFFIXES]
    files = [*(units[k] for k in sorted(units)), *headers, *extra_files]
    digest = _digest([compiler_identity(), *flags.c, *flags.cxx, *flags.core_includes, *sorted(units),
                      _tree_digest(library / "src", ()), _core_digest(core)], files)
    return _compile_all(kind, digest, units, flags, include_dirs)


def firmware_objects(generated_dir: Path, library: Path | None = None, core: Path | None = None) -> ObjectSet:
    """``main.cpp``, the TFLM adapter, the portable core and the generated model (cached)."""
    library = library if library is not None else board_sources.require_library()
    core = core if core is not None else board_sources.require_core()
    generated_dir = Path(generated_dir)
    if not (generated_dir / "model_settings.h").is_file():
        raise ModelError(f"{generated_dir} holds no generated model files (model_settings.h): "
                         "run `python -m convert`")
    return compile_units("nano", firmware_units(generated_dir),
                         firmware_include_dirs(generated_dir, library, core), library, core)


@dataclass(frozen=True)
class Sizes:
    text: int
    data: int
    bss: int

    @property
    def flash(self) -> int:
        """Bytes in flash: code and constants, plus the initial values of .data."""
        return self.text + self.data

    @property
    def ram(self) -> int:
        """Static RAM: .data and .bss."""
        return self.data + self.bss


def object_sizes(paths: Sequence[Path]) -> Sizes:
    """Berkeley sizes (``arm-none-eabi-size -t``) summed over ``paths`` (unlinked: an upper bound
    of what a linker with --gc-sections keeps)."""
    if not paths:
        return Sizes(0, 0, 0)
    proc = _run([SIZE, "-t", *map(str, paths)], TOOL_TIMEOUT_S)
    if proc.returncode != 0:
        raise CrossBuildError(f"{SIZE} failed: {_first_error(proc.stderr)}")
    total = proc.stdout.strip().splitlines()[-1].split()
    return Sizes(int(total[0]), int(total[1]), int(total[2]))
