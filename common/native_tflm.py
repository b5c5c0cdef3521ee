"""The board's TFLM library compiled for this machine: one static archive, built once and cached.

The Nano runs the TFLM sources of its Arduino library (``common.board_sources``). Building
those same sources natively lets the host compute what the board computes: convert's TFLM
column and the virtual board both link this archive. The build defines ``ARDUINO`` as the
board build does, because the library chooses code by it: the CMSIS-NN registrations of
conv, depthwise conv, fully connected, pooling, softmax, add, mul and svdf (on their portable
C paths here: no ``ARM_MATH_DSP``), and asserts that do not abort. Left out: the library's
``system_setup.cpp`` (Arduino ``Serial``; the host's ``DebugLog`` is
``firmware/host/tm_host_log.cpp``), the Arduino-only ``peripherals/`` and ``test_over_serial/``,
and the audio front end and kissfft, which no interpreter code calls.

The archive lives in ``build/board_tflm/<key>/`` where the key covers the library's sources
(``board_sources.library_version``), the flags and the compiler; two processes building at
once both end with a complete archive (each builds in its own folder, then renames).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common import board_sources
from common.errors import ToolError

__all__ = ["NativeBuildError", "NativeTflm", "build_archive", "compile_shared", "first_error_line",
           "source_digest"]

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST_DIR = REPO_ROOT / "firmware" / "host"
BUILD_ROOT = REPO_ROOT / "build" / "board_tflm"
ARCHIVE_NAME = "libboard_tflm.a"
CC = os.environ.get("CC", "gcc")
CXX = os.environ.get("CXX", "g++")
AR = os.environ.get("AR", "ar")
# Folders of the library's src/ that hold the interpreter, kernels and their dependencies.
SOURCE_ROOTS = ("tensorflow", "third_party")
EXCLUDED = ("tensorflow/lite/micro/system_setup.cpp", "tensorflow/lite/experimental/microfrontend/",
            "third_party/kissfft/",
            # Test scaffolding of TFLM's own unit tests: nothing the interpreter or a kernel calls
            # (the shared libraries link with --no-undefined, so a wrong guess fails the build).
            "tensorflow/lite/micro/test_helpers.cpp", "tensorflow/lite/micro/test_helper_custom_ops.cpp",
            "tensorflow/lite/micro/mock_micro_graph.cpp", "tensorflow/lite/micro/fake_micro_context.cpp",
            "tensorflow/lite/micro/recording_micro_allocator.cpp",
            "tensorflow/lite/micro/kernels/kernel_runner.cpp")
# ARDUINO as in the board build (see the module docstring); -w: the library's own warnings are
# not ours to fix, and the cross build reports them against the board's flags.
COMMON_FLAGS = ("-O2", "-fPIC", "-DARDUINO")
# No exceptions, as on the board: with them, TFLM's placement news would need the operator
# delete its ARDUINO build makes private (micro_allocator.cpp does not compile).
CXX_FLAGS = ("-std=gnu++14", *COMMON_FLAGS, "-fno-exceptions", "-fno-rtti", "-w")
C_FLAGS = ("-std=gnu11", *COMMON_FLAGS, "-w")
# Our own code linked with the archive keeps its warnings.
LINK_FLAGS = ("-std=gnu++14", *COMMON_FLAGS, "-fno-exceptions", "-fno-rtti", "-Wall", "-shared",
              "-Wl,--no-undefined")
OWN_SOURCES = (HOST_DIR / "tm_host_log.cpp",)
# One file compiles in seconds (up to a minute on a loaded 2-core machine); a hung compiler must
# not hang the caller.
COMPILE_TIMEOUT_S = 900


class NativeBuildError(ToolError):
    """The board's TFLM library (or code linked with it) did not compile on this machine."""

    exit_code = 6


def first_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:  # the linker names the symbol before collect2 says "error"
        if "undefined reference" in line:
            return line
    for line in lines:
        if "error" in line:
            return line
    return lines[0] if lines else "no compiler output"


@functools.cache
def compiler_identity(compiler: str) -> str:
    """First line of ``<compiler> --version``: an upgrade must not reuse an old build."""
    try:
        proc = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return compiler
    return proc.stdout.splitlines()[0] if proc.stdout else compiler


@dataclass(frozen=True)
class NativeTflm:
    """A built archive and what code linking it needs."""

    archive: Path
    include_dir: Path  # the library's src/
    version: str  # board_sources.library_version()


def library_sources(src: Path) -> list[Path]:
    found = []
    for root in SOURCE_ROOTS:
        for path in sorted((src / root).rglob("*")):
            rel = path.relative_to(src).as_posix()
            if path.suffix in {".c", ".cc", ".cpp"} and not any(rel.startswith(x) for x in EXCLUDED):
                found.append(path)
    return found


def _compile_object(source: Path, include_dirs: list[Path], obj: Path) -> None:
    """Compile unless ``obj`` exists; written under a temporary name, then renamed, so an
    interrupted build keeps what it finished and never leaves half an object."""
    if obj.is_file():
        return
    is_c = source.suffix == ".c"
    tmp = obj.with_name(f".{obj.name}.{os.getpid()}.tmp")
    cmd = [CC if is_c else CXX, *(C_FLAGS if is_c else CXX_FLAGS), *(f"-I{d}" for d in include_dirs),
           "-c", str(source), "-o", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            raise NativeBuildError(f"{source.name} did not compile: {first_error_line(proc.stderr)}")
        os.replace(tmp, obj)
    except subprocess.TimeoutExpired:
        raise NativeBuildError(f"compiling {source.name} timed out after {COMPILE_TIMEOUT_S} s") from None
    finally:
        tmp.unlink(missing_ok=True)


def source_digest_of_names(paths: list[Path], root: Path) -> str:
    names = "\0".join(p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name for p in paths)
    return hashlib.sha256(names.encode()).hexdigest()[:12]


def source_digest(paths: list[Path]) -> str:
    """Short digest of files' contents, for cache keys of code linked with the archive."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _key(library: Path) -> str:
    """Objects depend on the library's sources, our own sources, the flags and the compilers."""
    digest = hashlib.sha256()
    digest.update("\0".join([board_sources.library_version(library), compiler_identity(CC),
                             compiler_identity(CXX), *C_FLAGS, *CXX_FLAGS]).encode())
    for path in OWN_SOURCES:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _object_name(source: Path, src: Path) -> str:
    rel = source.relative_to(src) if source.is_relative_to(src) else Path("own") / source.name
    return rel.as_posix().replace("/", "__") + ".o"


def build_archive(quiet: bool = False) -> NativeTflm:
    """The cached archive of the board's TFLM for this machine, built when missing (minutes)."""
    library = board_sources.require_library()
    src = library / "src"
    for tool in (CC, CXX, AR):
        if shutil.which(tool) is None:
            raise NativeBuildError(f"{tool} not found: install gcc, g++ and binutils to build the board's "
                                   "TFLM library for the host")
    sources = [*library_sources(src), *OWN_SOURCES]
    final = BUILD_ROOT / _key(library)
    # The archive also depends on which sources go in (EXCLUDED).
    archive = final / source_digest_of_names(sources, src) / ARCHIVE_NAME
    version = board_sources.library_version(library)
    if archive.is_file():
        return NativeTflm(archive, src, version)
    if not quiet:
        print(f"building {version} for the host ({len(sources)} files, once; a few minutes on 2 cores)",
              file=sys.stderr, flush=True)
    objects_dir = final / "obj"
    objects_dir.mkdir(parents=True, exist_ok=True)
    objects = [objects_dir / _object_name(s, src) for s in sources]
    include_dirs = [src, HOST_DIR]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        # list() re-raises the first compile error here.
        list(pool.map(lambda pair: _compile_object(pair[0], include_dirs, pair[1]),
                      zip(sources, objects, strict=True)))
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{ARCHIVE_NAME}.", dir=archive.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # ar creates it
    try:
        proc = subprocess.run([AR, "rcs", str(tmp), *map(str, objects)], capture_output=True, text=True,
                              timeout=COMPILE_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            raise NativeBuildError(f"{AR} failed: {first_error_line(proc.stderr)}")
        os.replace(tmp, archive)  # another builder may have won: same objects either way
    finally:
        tmp.unlink(missing_ok=True)
    return NativeTflm(archive, src, version)


def compile_shared(sources: list[Path], include_dirs: list[Path], native: NativeTflm, target: Path,
                   extra_flags: tuple[str, ...] = ()) -> Path:
    """Link ``sources`` with the archive into the shared library ``target`` (atomic, cached by path)."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    cmd = [CXX, *LINK_FLAGS, *extra_flags, *(f"-I{d}" for d in [*include_dirs, native.include_dir]),
           *map(str, sources), str(native.archive), "-o", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            raise NativeBuildError(f"{target.name} did not build: {first_error_line(proc.stderr)}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except subprocess.TimeoutExpired:
        raise NativeBuildError(f"{target.name} build timed out after {COMPILE_TIMEOUT_S} s") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
