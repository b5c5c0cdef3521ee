"""The firmware's portable core as a host shared library, built on demand and loaded with ctypes.

Usage (virtual board, tests)::

    from host_tools.hostlib import HostCore
    core = HostCore.load()                    # or HostCore.load(generated_dir); builds with g++ once
    def invoke(in_ptr: int, in_len: int, out_ptr: int, out_len: int) -> int:
        x = np.frombuffer(ctypes.string_at(in_ptr, in_len), np.int8)   # or np.ctypeslib
        ctypes.memmove(out_ptr, y.ctypes.data, out_len)                 # y: int8 outputs
        return 0                              # non-zero -> ERROR INVOKE_FAILED
    core.init_model(invoke, write_cb=replies.append)   # write_cb(bytes): reply frames, wire format
    core.feed(wire_bytes)                     # replies reach write_cb before feed() returns
    core.model_data()                         # the generated kModelData bytes (give them to TFLM)

An exception raised in a callback is re-raised by ``feed`` (an invoke failure is first
answered with ERROR INVOKE_FAILED). The library has one static device per process and build:
``init_*`` on a second ``HostCore`` of the same library takes the device over, and the
first one then refuses calls.

The library is cached in ``build/hostlib/<hash>/`` where the hash covers every source, the
generated files and the compiler flags, so an edited source or a new model rebuilds it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import runfolder
from common.errors import ModelError, ToolError
from common.native_tflm import compiler_identity, first_error_line

__all__ = [
    "DEFAULT_GENERATED_DIR",
    "DeviceInfo",
    "HostBuildError",
    "HostCore",
    "TensorInfo",
    "build_library",
    "build_vector_runner",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
CORE_DIR = FIRMWARE_DIR / "lib" / "core"
HOST_DIR = FIRMWARE_DIR / "host"
# The model installed into the firmware (what `pio run` would build); tests of the core use it.
DEFAULT_GENERATED_DIR = REPO_ROOT / runfolder.FIRMWARE_MODEL_DIR
DEFAULT_BUILD_ROOT = REPO_ROOT / "build" / "hostlib"
GENERATED_FILES = ("model_settings.h", "model_data.h", "model_data.cpp")

CXX = os.environ.get("CXX", "g++")
WARNINGS = ("-Wall", "-Wextra", "-Werror")
# The virtual board's library uses the 1 KB byte-table CRC (same results, fewer operations);
# the sanitizer runner keeps the board's 64-byte nibble table, so the vectors check both.
LIBRARY_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-DCORE_CRC32_BYTE_TABLE", *WARNINGS)
# -O1 keeps the sanitizer build quick to compile while still catching what -O2 would hide.
SANITIZER_FLAGS = ("-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer",
                   "-fsanitize=address,undefined", "-fno-sanitize-recover=all", *WARNINGS)
LIBRARY_NAME = "libtm_host.so"
RUNNER_NAME = "vector_runner"
# A C++ build of the core takes a few seconds; a hung compiler must not hang the caller.
BUILD_TIMEOUT_S = 300

TM_OK = 0
_INIT_ERRORS = {
    -1: "invoke and write callbacks are required",
    -2: "tensor shapes are invalid or too large for a frame (rank 1..4, at most 65,526 bytes)",
}

# The C callback types of firmware/host/tm_host.h. Pointers travel as plain ints (c_void_p),
# the cheapest way through ctypes.
INVOKE_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32,
                             ctypes.c_void_p, ctypes.c_uint32)
CLOCK_FN = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)
WRITE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32)

InvokeCallback = Callable[[int, int, int, int], int]
WriteCallback = Callable[[bytes], None]
ClockCallback = Callable[[], int]


class HostBuildError(ToolError):
    """The host library or the vector runner did not compile."""

    exit_code = 6  # build, toolchain or board sources missing (README, exit codes)


class _CTensorInfo(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_uint8), ("rank", ctypes.c_uint8), ("dims", ctypes.c_uint16 * 4),
                ("scale", ctypes.c_float), ("zero_point", ctypes.c_int32)]


class _CDeviceInfo(ctypes.Structure):
    _fields_ = [("firmware_version", ctypes.c_uint8 * 3), ("startup_status", ctypes.c_uint8),
                ("clock_hz", ctypes.c_uint32), ("arena_size", ctypes.c_uint32),
                ("arena_used", ctypes.c_uint32), ("model_hash", ctypes.c_uint8 * 8),
                ("input", _CTensorInfo), ("output", _CTensorInfo), ("model_size", ctypes.c_uint32),
                ("board_name", ctypes.c_char_p), ("startup_message", ctypes.c_char_p)]


@dataclass(frozen=True)
class TensorInfo:
    dims: tuple[int, ...]
    scale: float = 1.0
    zero_point: int = 0
    dtype: int = 1  # protocol dtype code: 1 = int8

    def _to_c(self) -> _CTensorInfo:
        dims = list(self.dims) + [0] * (4 - len(self.dims))
        return _CTensorInfo(self.dtype, len(self.dims), (ctypes.c_uint16 * 4)(*dims[:4]),
                            self.scale, self.zero_point)


@dataclass(frozen=True)
class DeviceInfo:
    """What the device reports in INFO (docs/protocol.md section 3), for ``init_custom``."""

    input: TensorInfo
    output: TensorInfo
    firmware_version: tuple[int, int, int] = (0, 1, 0)
    startup_status: int = 0
    clock_hz: int = 0
    arena_size: int = 0
    arena_used: int = 0
    model_hash: bytes = field(default=bytes(8))
    model_size: int = 0
    board_name: str = ""
    startup_message: str = ""

    def _to_c(self) -> _CDeviceInfo:
        if len(self.model_hash) != 8:
            raise ValueError("model_hash must be 8 bytes")
        if not 1 <= len(self.input.dims) <= 4 or not 1 <= len(self.output.dims) <= 4:
            raise ValueError("tensor rank must be 1..4")
        return _CDeviceInfo((ctypes.c_uint8 * 3)(*self.firmware_version), self.startup_status,
                            self.clock_hz, self.arena_size, self.arena_used,
                            (ctypes.c_uint8 * 8)(*self.model_hash), self.input._to_c(),
                            self.output._to_c(), self.model_size, self.board_name.encode("ascii"),
                            self.startup_message.encode("ascii"))


def core_sources() -> list[Path]:
    return sorted(CORE_DIR.glob("*.cpp"))


def _generated_files(generated_dir: Path) -> list[Path]:
    missing = [name for name in GENERATED_FILES if not (generated_dir / name).is_file()]
    if missing:
        raise ModelError(f"{generated_dir} lacks {', '.join(missing)}: run `convert` first "
                         "(or pass the generated directory)")
    return [generated_dir / name for name in GENERATED_FILES]


def _inputs_digest(files: Iterable[Path], flags: Sequence[str]) -> str:
    digest = hashlib.sha256()
    digest.update("\0".join([compiler_identity(CXX), *flags]).encode())
    for path in files:
        digest.update(b"\0" + path.name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _compile(sources: Sequence[Path], include_dirs: Sequence[Path], flags: Sequence[str],
             target: Path) -> Path:
    """Compile into ``target`` unless it exists; atomic, so concurrent builders are safe."""
    if target.is_file():
        return target
    if shutil.which(CXX) is None:
        raise HostBuildError(f"{CXX} not found: install g++ to build the host library")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    cmd = [CXX, *flags, *(f"-I{d}" for d in include_dirs), *map(str, sources), "-o", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
        if proc.returncode != 0:
            raise HostBuildError(f"{target.name} build failed: {first_error_line(proc.stderr)}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # another process may have won the race: same bytes either way
    except subprocess.TimeoutExpired:
        raise HostBuildError(f"{target.name} build timed out after {BUILD_TIMEOUT_S} s") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _build(generated_dir: Path | None, build_root: Path | None, extra_sources: Sequence[Path],
           flags: Sequence[str], name: str) -> Path:
    gen = Path(generated_dir) if generated_dir is not None else DEFAULT_GENERATED_DIR
    generated = _generated_files(gen)
    headers = [*sorted(CORE_DIR.glob("*.h")), HOST_DIR / "tm_host.h"]
    sources = [*core_sources(), HOST_DIR / "tm_host.cpp", *extra_sources, gen / "model_data.cpp"]
    key = _inputs_digest([*sources, *headers, *generated], flags)
    root = Path(build_root) if build_root is not None else DEFAULT_BUILD_ROOT
    return _compile(sources, [CORE_DIR, HOST_DIR, gen], flags, root / key / name)


def build_library(generated_dir: Path | None = None, build_root: Path | None = None) -> Path:
    """Path of ``libtm_host.so`` for the given generated directory (built when missing)."""
    return _build(generated_dir, build_root, [], LIBRARY_FLAGS, LIBRARY_NAME)


BOARD_LIBRARY_NAME = "libtm_board.so"
# The adapter and the host end of it; the adapter is the board's own file.
ADAPTER_SOURCES = (FIRMWARE_DIR / "src" / "tflm_engine.cpp", HOST_DIR / "tm_board_engine.cpp")


def build_board_library(generated_dir: Path | None = None, build_root: Path | None = None) -> Path:
    """``libtm_board.so``: the core and the shim as in ``build_library``, with the firmware's TFLM
    adapter and the board's TFLM library (built for the host, ``common.native_tflm``) as the engine."""
    from common import native_tflm

    native = native_tflm.build_archive()
    gen = Path(generated_dir) if generated_dir is not None else DEFAULT_GENERATED_DIR
    generated = [*_generated_files(gen), gen / "model_op_resolver.h"]
    if not generated[-1].is_file():
        raise ModelError(f"{gen} lacks model_op_resolver.h: run `convert` first "
                         "(or pass the generated directory)")
    sources = [*core_sources(), HOST_DIR / "tm_host.cpp", *ADAPTER_SOURCES, gen / "model_data.cpp"]
    headers = [*sorted(CORE_DIR.glob("*.h")), HOST_DIR / "tm_host.h", FIRMWARE_DIR / "src" / "tflm_engine.h"]
    key = _inputs_digest([*sources, *headers, *generated], [str(native.archive), "-DCORE_CRC32_BYTE_TABLE"])
    root = Path(build_root) if build_root is not None else DEFAULT_BUILD_ROOT
    return native_tflm.compile_shared(sources, [CORE_DIR, HOST_DIR, gen, FIRMWARE_DIR / "src"], native,
                                      root / key / BOARD_LIBRARY_NAME, ("-DCORE_CRC32_BYTE_TABLE",))


def build_vector_runner(generated_dir: Path | None = None, build_root: Path | None = None,
                        sanitize: bool = True) -> Path:
    """Path of the vector runner (firmware/host/vector_runner.cpp), ASan+UBSan by default."""
    flags = SANITIZER_FLAGS if sanitize else ("-std=c++17", "-O2", *WARNINGS)
    return _build(generated_dir, build_root, [HOST_DIR / "vector_runner.cpp"], flags, RUNNER_NAME)


def _declare(lib: ctypes.CDLL) -> None:
    u32, i32, vp = ctypes.c_uint32, ctypes.c_int32, ctypes.c_void_p
    signatures: dict[str, tuple[list[Any], object]] = {
        "tm_init_model": ([INVOKE_FN, CLOCK_FN, WRITE_FN, vp, ctypes.c_uint8, ctypes.c_char_p, u32], i32),
        "tm_init_custom": ([ctypes.POINTER(_CDeviceInfo), INVOKE_FN, CLOCK_FN, WRITE_FN, vp], i32),
        "tm_feed": ([ctypes.c_char_p, u32], None),
        "tm_reset": ([], None),
        "tm_max_payload": ([], u32),
        "tm_model_data": ([], vp),
        "tm_model_size": ([], u32),
        "tm_input_bytes": ([], u32),
        "tm_output_bytes": ([], u32),
        "tm_arena_size": ([], u32),
        "tm_model_hash": ([], ctypes.c_char_p),
        "tm_crc32": ([ctypes.c_char_p, u32], u32),
        "tm_cobs_encode": ([ctypes.c_char_p, u32, ctypes.c_char_p, u32], u32),
    }
    for name, (args, res) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    # Only in the board-engine build (build_board_library).
    board_engine: dict[str, tuple[list[Any], object]] = {
        "tm_engine_begin": ([], ctypes.c_uint8), "tm_engine_message": ([], ctypes.c_char_p),
        "tm_engine_arena_used": ([], u32), "tm_engine_attach_profiler": ([], None)}
    for name, (args, res) in board_engine.items():
        if hasattr(lib, name):
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = res


# Which HostCore currently drives each loaded library (they share one static device).
_owners: dict[str, int] = {}


class HostCore:
    """One loaded host library: feed it wire bytes, get reply frames through ``write_cb``."""

    def __init__(self, library: Path) -> None:
        self.path = str(Path(library).resolve())
        try:
            self._lib = ctypes.CDLL(self.path)
        except OSError as exc:
            raise HostBuildError(f"cannot load {self.path}: {exc}") from None
        _declare(self._lib)
        self._callbacks: tuple[object, ...] = ()  # ctypes thunks must outlive their use in C
        self._pending: BaseException | None = None

    @classmethod
    def load(cls, generated_dir: Path | None = None, build_root: Path | None = None) -> HostCore:
        return cls(build_library(generated_dir, build_root))

    # --- set-up -------------------------------------------------------------------------
    def _thunks(self, invoke_cb: InvokeCallback, write_cb: WriteCallback,
                clock_cb: ClockCallback | None) -> tuple[object, object, object]:
        def invoke(_user: int | None, in_ptr: int, in_len: int, out_ptr: int, out_len: int) -> int:
            try:
                return int(invoke_cb(in_ptr or 0, in_len, out_ptr or 0, out_len))
            except BaseException as exc:  # re-raised by feed(), never lost in C
                self._pending = self._pending or exc
                return 1

        def write(_user: int | None, ptr: int, n: int) -> None:
            try:
                write_cb(ctypes.string_at(ptr, n))
            except BaseException as exc:  # re-raised by feed()
                self._pending = self._pending or exc

        def clock(_user: int | None) -> int:
            try:
                return int(clock_cb()) & 0xFFFFFFFF if clock_cb is not None else 0
            except BaseException as exc:  # re-raised by feed()
                self._pending = self._pending or exc
                return 0

        clock_thunk = CLOCK_FN(clock) if clock_cb is not None else CLOCK_FN()  # NULL: steady_clock
        thunks = (INVOKE_FN(invoke), clock_thunk, WRITE_FN(write))
        self._callbacks = thunks
        return thunks

    def _started(self, code: int) -> None:
        if code != TM_OK:
            _owners.pop(self.path, None)
            raise ToolError(f"host core refused the device info: {_INIT_ERRORS.get(code, code)}")
        _owners[self.path] = id(self)

    def init_model(self, invoke_cb: InvokeCallback, write_cb: WriteCallback,
                   clock_cb: ClockCallback | None = None, startup_error: str | None = None,
                   arena_used: int = 0, startup_status: int | None = None) -> None:
        """Device info from the compiled-in generated settings; a ``startup_error`` makes the
        device not ready (status ``startup_status``, default 3 = AllocateTensors failed)."""
        invoke, clock, write = self._thunks(invoke_cb, write_cb, clock_cb)
        status = 0 if startup_error is None else (3 if startup_status is None else startup_status)
        message = startup_error.encode("ascii", "replace") if startup_error else None
        self._started(self._lib.tm_init_model(invoke, clock, write, None, status, message, arena_used))

    @property
    def has_board_engine(self) -> bool:
        return hasattr(self._lib, "tm_engine_invoke")

    def init_board_engine(self, write_cb: WriteCallback, clock_cb: ClockCallback | None = None,
                          min_invoke_s: float = 0.0) -> int:
        """Start the firmware's TFLM adapter on the board's library (``build_board_library``) and
        wire it in as the engine: invokes never leave C, unless ``min_invoke_s`` simulates a
        slower board (then a Python callback calls the C engine and sleeps). Returns the
        start-up status (0 = ready), which INFO reports as the board would."""
        status = int(self._lib.tm_engine_begin())
        message = self._lib.tm_engine_message() or None
        native = ctypes.cast(self._lib.tm_engine_invoke, INVOKE_FN)
        if min_invoke_s > 0:
            def slow_invoke(in_ptr: int, in_len: int, out_ptr: int, out_len: int) -> int:
                started = time.monotonic()
                code = int(native(None, in_ptr, in_len, out_ptr, out_len))
                time.sleep(max(0.0, started + min_invoke_s - time.monotonic()))
                return code

            invoke, clock, write = self._thunks(slow_invoke, write_cb, clock_cb)
        else:
            _, clock, write = self._thunks(lambda *_: 1, write_cb, clock_cb)
            invoke = native
            self._callbacks = (*self._callbacks, native)
        self._started(self._lib.tm_init_model(invoke, clock, write, None, status, message,
                                              int(self._lib.tm_engine_arena_used())))
        self._lib.tm_engine_attach_profiler()  # PROFILE times each op, as on the board
        return status

    def init_custom(self, info: DeviceInfo, invoke_cb: InvokeCallback, write_cb: WriteCallback,
                    clock_cb: ClockCallback | None = None) -> None:
        invoke, clock, write = self._thunks(invoke_cb, write_cb, clock_cb)
        c_info = info._to_c()
        self._started(self._lib.tm_init_custom(ctypes.byref(c_info), invoke, clock, write, None))

    # --- running ------------------------------------------------------------------------
    def _check_owner(self) -> None:
        if _owners.get(self.path) != id(self):
            raise ToolError("host core is not initialised (or another HostCore took it over)")

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Hand host -> device bytes to the core; replies go to ``write_cb`` before this returns."""
        self._check_owner()
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._lib.tm_feed(chunk, len(chunk))
        if self._pending is not None:
            exc, self._pending = self._pending, None
            raise exc

    def reset(self) -> None:
        """Simulated power cycle: the partial frame and the result cache are dropped."""
        self._check_owner()
        self._lib.tm_reset()

    # --- the compiled-in model and the core's primitives --------------------------------
    def model_data(self) -> bytes:
        return ctypes.string_at(self._lib.tm_model_data(), self._lib.tm_model_size())

    @property
    def max_payload(self) -> int:
        return int(self._lib.tm_max_payload())

    @property
    def input_bytes(self) -> int:
        return int(self._lib.tm_input_bytes())

    @property
    def output_bytes(self) -> int:
        return int(self._lib.tm_output_bytes())

    @property
    def arena_size(self) -> int:
        return int(self._lib.tm_arena_size())

    @property
    def model_hash(self) -> str:
        return str(self._lib.tm_model_hash().decode("ascii"))

    def crc32(self, data: bytes) -> int:
        return int(self._lib.tm_crc32(data, len(data)))

    def cobs_encode(self, data: bytes) -> bytes:
        cap = len(data) + len(data) // 254 + 2
        out = ctypes.create_string_buffer(cap)
        n = self._lib.tm_cobs_encode(data, len(data), out, cap)
        if n == 0:
            raise ValueError(f"COBS encoding of {len(data)} bytes failed")
        return out.raw[:n]
