"""host_tools.hostlib: on-demand build and cache, one-line build errors, and the typed wrapper
around the host library (compiled-in model, callbacks, errors raised inside callbacks)."""

from __future__ import annotations

import ctypes
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from core_harness import FAKE_MODEL, REPO, write_fake_generated
from core_reference import (
    ERROR,
    HELLO,
    INFER,
    INFO,
    INVOKE_FAILED,
    NOT_READY,
    RESULT,
    cobs_decode_stream,
    frame,
)

from common.errors import ModelError, ToolError
from host_tools.hostlib import DeviceInfo, HostBuildError, HostCore, TensorInfo, build_library

HASH = "00112233445566ff"


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_generated(tmp_path_factory.mktemp("gen") / "model", input_dims=(1, 6, 6, 1),
                                output_dims=(1, 4), model_hash=HASH)


@pytest.fixture(scope="module")
def build_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="module")
def core(gen: Path, build_root: Path) -> HostCore:
    return HostCore.load(gen, build_root)


def replies(stream: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    for encoded in stream.split(b"\x00")[:-1]:
        event, raw = cobs_decode_stream(encoded, 1 << 17)
        assert event == "frame"
        ver_type, seq, _ = struct.unpack_from("<BHH", raw)
        out.append((ver_type & 0xF, seq, raw[5:-4]))
    return out


def copy_invoke(in_ptr: int, in_len: int, out_ptr: int, out_len: int) -> int:
    ctypes.memmove(out_ptr, ctypes.string_at(in_ptr, out_len), out_len)  # outputs = first inputs
    return 0


def test_library_is_cached_and_rebuilt_when_the_model_changes(gen: Path, build_root: Path,
                                                              tmp_path: Path) -> None:
    first = build_library(gen, build_root)
    stamp = first.stat().st_mtime_ns
    assert build_library(gen, build_root) == first
    assert first.stat().st_mtime_ns == stamp  # not rebuilt
    other = write_fake_generated(tmp_path / "model", input_dims=(1, 6, 6, 1), output_dims=(1, 4),
                                 model_hash="ffffffffffffffff")
    assert build_library(other, build_root) != first


def test_concurrent_builds_agree(gen: Path, tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from host_tools.hostlib import build_library; "
            "print(build_library(Path(sys.argv[1]), Path(sys.argv[2])))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(gen), str(tmp_path)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    assert HostCore(Path(paths.pop())).model_hash == HASH
    leftovers = [p.name for p in tmp_path.rglob(".*")]
    assert leftovers == []  # temporary outputs were renamed or removed


def test_compiler_error_is_one_line(tmp_path: Path) -> None:
    broken = write_fake_generated(tmp_path / "model")
    (broken / "model_data.cpp").write_text("this is not C++\n")
    with pytest.raises(HostBuildError) as info:
        build_library(broken, tmp_path / "build")
    message = str(info.value)
    assert "\n" not in message
    assert "model_data.cpp" in message and "error" in message


def test_missing_generated_files_name_the_stage(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model_settings\.h.*convert"):
        build_library(tmp_path, tmp_path / "build")


def test_compiled_in_model_and_info(core: HostCore) -> None:
    assert core.model_data() == FAKE_MODEL
    assert (core.input_bytes, core.output_bytes, core.arena_size, core.model_hash) == (36, 4, 4096, HASH)
    out = bytearray()
    core.init_model(copy_invoke, out.extend, arena_used=1234)
    core.feed(frame(HELLO, 9))
    [(kind, seq, payload)] = replies(bytes(out))
    assert (kind, seq) == (INFO, 9)
    assert payload[20:28] == bytes.fromhex(HASH)
    assert struct.unpack_from("<B4H", payload, 29) == (4, 1, 6, 6, 1)
    assert struct.unpack_from("<II", payload, 12) == (4096, 1234)  # arena size, arena used
    assert struct.unpack_from("<I", payload, 64)[0] == len(FAKE_MODEL)
    assert payload[69:69 + payload[68]] == b"virtual"
    out.clear()
    core.feed(frame(INFER, 10, bytes(range(36))))
    [(kind, seq, payload)] = replies(bytes(out))
    assert (kind, seq, payload[9:]) == (RESULT, 10, bytes(range(4)))


def test_startup_error_makes_the_device_not_ready(core: HostCore) -> None:
    out = bytearray()
    core.init_model(copy_invoke, out.extend, startup_error="TFLM failed to allocate tensors")
    core.feed(frame(HELLO, 1) + frame(INFER, 2, bytes(36)))
    (_, _, info), (kind, seq, payload) = replies(bytes(out))
    assert info[5] == 3
    assert info[-31:] == b"TFLM failed to allocate tensors"
    assert (kind, seq, payload) == (ERROR, 2, bytes([NOT_READY]) + b"TFLM failed to allocate tensors")


def test_exception_in_invoke_is_answered_and_reraised(core: HostCore) -> None:
    out = bytearray()

    def failing(*_: int) -> int:
        raise RuntimeError("engine exploded")

    core.init_model(failing, out.extend)
    with pytest.raises(RuntimeError, match="engine exploded"):
        core.feed(frame(INFER, 3, bytes(36)))
    assert replies(bytes(out)) == [(ERROR, 3, bytes([INVOKE_FAILED]))]


def test_default_clock_measures_real_time(core: HostCore) -> None:
    out = bytearray()

    def slow(in_ptr: int, in_len: int, out_ptr: int, out_len: int) -> int:
        time.sleep(0.005)
        return copy_invoke(in_ptr, in_len, out_ptr, out_len)

    core.init_model(slow, out.extend)
    core.feed(frame(INFER, 4, bytes(36)))
    [(_, _, payload)] = replies(bytes(out))
    micros = struct.unpack_from("<I", payload, 1)[0]
    assert 5000 <= micros < 5_000_000


def test_a_second_instance_takes_the_device_over(core: HostCore, gen: Path, build_root: Path) -> None:
    core.init_model(copy_invoke, lambda _: None)
    other = HostCore.load(gen, build_root)
    other.init_model(copy_invoke, lambda _: None)
    with pytest.raises(ToolError, match="took it over"):
        core.feed(frame(HELLO, 1))
    other.feed(frame(HELLO, 1))


def test_invalid_custom_info_is_refused(core: HostCore) -> None:
    too_big = DeviceInfo(input=TensorInfo((1, 300, 300)), output=TensorInfo((10,)))
    with pytest.raises(ToolError, match="too large"):
        core.init_custom(too_big, copy_invoke, lambda _: None)
    with pytest.raises(ToolError, match="not initialised"):
        core.feed(frame(HELLO, 1))


def test_unloadable_library_is_a_one_line_error(tmp_path: Path) -> None:
    fake = tmp_path / "libtm_host.so"
    fake.write_bytes(b"not a shared object")
    with pytest.raises(HostBuildError, match="cannot load"):
        HostCore(fake)
