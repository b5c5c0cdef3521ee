"""Shared helpers of the core tests: a fake generated model directory and drivers that run the
vectors' exchanges through the host library (ctypes) or the sanitizer vector runner."""

from __future__ import annotations

import ctypes
import importlib.util
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

from core_reference import CLOCK_START_US, CLOCK_STEP_US, Info, mock_invoke

from common import runfolder
from host_tools.hostlib import DeviceInfo, HostCore, TensorInfo

REPO = Path(__file__).resolve().parent.parent
SHIPPED_GENERATED_DIR = REPO / runfolder.FIRMWARE_MODEL_DIR

FAKE_MODEL = bytes(range(1, 200))  # stands in for a .tflite: only its bytes and size matter here
FAKE_ARENA_BYTES = 4096


def write_fake_generated(directory: Path, input_dims: tuple[int, ...] = (1, 28, 28, 1),
                         output_dims: tuple[int, ...] = (1, 10), model: bytes = FAKE_MODEL,
                         model_hash: str | None = None) -> Path:
    """The generated files of a made-up model, rendered by convert's own templates, so they are
    exactly what convert would write for such a model. ``model_hash`` replaces the hash of
    ``model`` in the settings (a library that must differ from another one, or a known value)."""
    from common.quant import IoSpec, TensorSpec
    from convert.codegen import ArenaInfo, render
    from convert.tflite_model import OpInfo, TfliteModel

    io = IoSpec(input=TensorSpec("input", input_dims, "int8", 0.00392156863, -128),
                output=TensorSpec("output", output_dims, "int8", 0.00390625, -128))
    ops = tuple(OpInfo(i, name, (), ()) for i, name in enumerate(("FULLY_CONNECTED", "RESHAPE", "SOFTMAX")))
    fake = TfliteModel(data=model, io=io, ops=ops)
    files = render(fake, [str(i) for i in range(io.output.size)], ArenaInfo(FAKE_ARENA_BYTES, 3000, "fixed"),
                   "fake_model.tflite", "model_int8.tflite")
    if model_hash is not None:
        computed = f'kModelHash[] = "{hash_of(model)}";'
        settings = files["model_settings.h"]
        assert computed in settings, "the settings template no longer names kModelHash"
        files["model_settings.h"] = settings.replace(computed, f'kModelHash[] = "{model_hash}";')
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def hash_of(model: bytes) -> str:
    from common.quant import model_hash

    return model_hash(model)


def to_host_info(info: Info) -> DeviceInfo:
    def tensor(t: Any) -> TensorInfo:
        return TensorInfo(t.dims, t.scale, t.zero_point, t.dtype)

    return DeviceInfo(tensor(info.input), tensor(info.output), info.firmware_version, info.startup_status,
                      info.clock_hz, info.arena_size, info.arena_used, info.model_hash, info.model_size,
                      info.board_name, info.startup_message)


class MockBoard:
    """The host library with the vectors' mock engine and fake clock; collects reply bytes."""

    def __init__(self, core: HostCore, info: Info) -> None:
        self.core = core
        self.out = bytearray()
        self.now = CLOCK_START_US
        self.runs = 0
        core.init_custom(to_host_info(info), self._invoke, self.out.extend, self._clock)

    def _invoke(self, in_ptr: int, in_len: int, out_ptr: int, out_len: int) -> int:
        self.runs += 1
        result = mock_invoke(ctypes.string_at(in_ptr, in_len), out_len)
        if result is None:
            return 1
        ctypes.memmove(out_ptr, result, out_len)
        return 0

    def _clock(self) -> int:
        now = self.now
        self.now += CLOCK_STEP_US
        return now

    def feed(self, data: bytes) -> bytes:
        self.out.clear()
        self.core.feed(data)
        return bytes(self.out)


def runner_info_line(info: Info) -> str:
    """The vector runner's `info` command (see firmware/host/vector_runner.cpp)."""
    def tensor(t: Any) -> list[str]:
        dims = list(t.dims) + [0] * (4 - len(t.dims))
        bits = struct.unpack("<I", struct.pack("<f", t.scale))[0]
        return [str(t.dtype), str(len(t.dims)), *map(str, dims), f"{bits:x}", str(t.zero_point)]

    def hex_or_dash(text: str) -> str:
        return text.encode("ascii").hex() or "-"

    fields = [*map(str, info.firmware_version), str(info.startup_status), str(info.clock_hz),
              str(info.arena_size), str(info.arena_used), info.model_hash.hex(), *tensor(info.input),
              *tensor(info.output), str(info.model_size), hex_or_dash(info.board_name),
              hex_or_dash(info.startup_message)]
    return "info " + " ".join(fields)


def load_core_size_bench() -> ModuleType:
    """bench/core_size.py by path: ``bench`` is not an installed package."""
    spec = importlib.util.spec_from_file_location("bench_core_size", REPO / "bench" / "core_size.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
