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

from host_tools.hostlib import DeviceInfo, HostCore, TensorInfo

REPO = Path(__file__).resolve().parent.parent
SHIPPED_GENERATED_DIR = REPO / "firmware" / "lib" / "model"

FAKE_MODEL = bytes(range(1, 200))  # stands in for a .tflite: only its bytes and size matter here


def write_fake_generated(directory: Path, input_dims: tuple[int, ...] = (1, 28, 28, 1),
                         output_dims: tuple[int, ...] = (1, 10), model: bytes = FAKE_MODEL,
                         model_hash: str = "0123456789abcdef") -> Path:
    """The generated files as docs/architecture.md describes them, for a made-up model."""
    directory.mkdir(parents=True, exist_ok=True)
    in_bytes = 1
    for d in input_dims:
        in_bytes *= d
    out_bytes = 1
    for d in output_dims:
        out_bytes *= d
    labels = ", ".join(f'"{i}"' for i in range(out_bytes))
    (directory / "model_settings.h").write_text(f"""#pragma once
namespace model {{
constexpr char kModelHash[] = "{model_hash}";
constexpr char kModelSource[] = "model_int8.tflite";
constexpr int kInputRank = {len(input_dims)};
constexpr int kInputDims[kInputRank] = {{{", ".join(map(str, input_dims))}}};
constexpr unsigned int kInputBytes = {in_bytes};
constexpr int kOutputRank = {len(output_dims)};
constexpr int kOutputDims[kOutputRank] = {{{", ".join(map(str, output_dims))}}};
constexpr unsigned int kOutputBytes = {out_bytes};
constexpr float kInputScale = 0.00392156863f;
constexpr int kInputZeroPoint = -128;
constexpr float kOutputScale = 0.00390625f;
constexpr int kOutputZeroPoint = -128;
constexpr unsigned char kInputDtype = 1;
constexpr unsigned char kOutputDtype = 1;
constexpr int kNumClasses = {out_bytes};
constexpr const char* kClassLabels[kNumClasses] = {{{labels}}};
constexpr unsigned int kArenaSize = 4096;
constexpr int kOpCount = 4;
constexpr int kOperatorCount = 4;
constexpr unsigned int kModelBytes = {len(model)};
}}  // namespace model
""")
    (directory / "model_data.h").write_text(
        "#pragma once\nnamespace model {\nextern const unsigned char kModelData[];\n"
        "extern const unsigned int kModelDataLen;\n}  // namespace model\n")
    body = ", ".join(str(b) for b in model)
    (directory / "model_data.cpp").write_text(
        '#include "model_data.h"\nnamespace model {\n'
        f"alignas(16) const unsigned char kModelData[] = {{{body}}};\n"
        f"const unsigned int kModelDataLen = {len(model)};\n}}  // namespace model\n")
    return directory


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
