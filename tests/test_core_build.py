"""The core builds for the board (arm-none-eabi, the board's flags) and pedantically on the host,
stays free of Arduino and TFLM, fits its size budget, and its buffer-size helpers hold."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from core_harness import REPO, SHIPPED_GENERATED_DIR, load_core_size_bench, write_fake_generated
from core_reference import INFER, INFO_PAYLOAD_MAX, WINDOW, RefDevice, Tensor, frame
from core_reference import Info as RefInfo

from common.errors import ToolError
from common.protocol import cobs_max_overhead

core_size = load_core_size_bench()

CORE_DIR = REPO / "firmware" / "lib" / "core"
HOST_DIR = REPO / "firmware" / "host"
HOST_FLAGS = ("-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic")
needs_arm = pytest.mark.usefixtures("cross_compiler")  # skips with a reason, fails under TINYML_REQUIRE_ALL


@pytest.fixture(scope="module")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped generated model when there is one, else a fake with the same contract."""
    if (SHIPPED_GENERATED_DIR / "model_settings.h").is_file():
        return SHIPPED_GENERATED_DIR
    return write_fake_generated(tmp_path_factory.mktemp("gen") / "model")


def compile_ok(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@needs_arm
def test_core_and_a_firmware_like_unit_cross_compile(generated_dir: Path, tmp_path: Path) -> None:
    unit = tmp_path / "firmware_like.cpp"
    unit.write_text(core_size.FIRMWARE_LIKE_SOURCE)
    for src in [*sorted(CORE_DIR.glob("*.cpp")), unit]:
        compile_ok(["arm-none-eabi-g++", *core_size.ARM_FLAGS, f"-I{CORE_DIR}", f"-I{generated_dir}", "-c",
                    str(src), "-o", str(tmp_path / f"{src.stem}.o")])


def test_core_shim_and_runner_build_pedantically_on_the_host(generated_dir: Path, tmp_path: Path) -> None:
    unit = tmp_path / "firmware_like.cpp"
    unit.write_text(core_size.FIRMWARE_LIKE_SOURCE)
    sources = [*sorted(CORE_DIR.glob("*.cpp")), HOST_DIR / "tm_host.cpp", HOST_DIR / "vector_runner.cpp",
               unit]
    for src in sources:
        compile_ok(["g++", *HOST_FLAGS, f"-I{CORE_DIR}", f"-I{HOST_DIR}", f"-I{generated_dir}", "-c",
                    str(src), "-o", str(tmp_path / f"{src.stem}.o")])


INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.MULTILINE)


def includes(path: Path) -> list[str]:
    return INCLUDE.findall(path.read_text(errors="replace"))


def firmware_sources() -> list[Path]:
    suffixes = (".h", ".hpp", ".c", ".cc", ".cpp", ".ino")
    return [p for p in (REPO / "firmware").rglob("*") if p.suffix in suffixes]


def test_only_main_cpp_includes_arduino() -> None:
    offenders = [p.relative_to(REPO).as_posix() for p in firmware_sources()
                 if "Arduino.h" in includes(p) and p != REPO / "firmware" / "src" / "main.cpp"]
    assert offenders == []


def test_core_includes_nothing_of_tflm_or_arduino() -> None:
    core_files = sorted(CORE_DIR.iterdir())
    assert core_files, "the core directory is empty"
    for path in core_files:
        for name in includes(path):
            assert not name.startswith("tensorflow/"), f"{path.name} includes {name}"
            assert name not in ("Arduino.h", "TensorFlowLite.h"), f"{path.name} includes {name}"


def test_transmit_buffer_helper_holds_the_largest_reply_for_every_output_size(tmp_path: Path) -> None:
    check = tmp_path / "tx_check.cpp"
    check.write_text('#include "protocol.h"\n#include <cstdio>\nint main() {\n'
                     "  const uint32_t last = core::kMaxPayloadField - core::kResultHeaderBytes;\n"
                     "  for (uint32_t out = 1; out <= last; ++out) {\n"
                     "    const uint32_t need = core::RawFrameCapacity(core::MaxReplyPayload(out));\n"
                     "    if (core::TxRawCapacity(core::TxBufferBytes(out)) < need) {\n"
                     "      std::printf(\"%u\\n\", out);\n      return 1;\n    }\n  }\n  return 0;\n}\n")
    exe = tmp_path / "tx_check"
    compile_ok(["g++", *HOST_FLAGS, "-O1", f"-I{CORE_DIR}", str(check), "-o", str(exe)])
    proc = subprocess.run([str(exe)], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, f"too small for {proc.stdout.strip()} output bytes"


@needs_arm
def test_core_size_benchmark_is_within_budget(generated_dir: Path, tmp_path: Path) -> None:
    result = core_size.run(generated_dir, tmp_path / "core_size.json")
    assert (tmp_path / "core_size.json").is_file()
    assert 0 < result["core_flash_bytes"] <= 8 * 1024
    assert 0 < result["core_ram_bytes"] <= 2 * 1024
    n_in, n_out = result["model_input_bytes"], result["model_output_bytes"]
    buffers = result["frame_buffers"]
    assert buffers["rx"] == 9 + max(n_in, INFO_PAYLOAD_MAX)  # docs/protocol.md: 9 + max_payload
    assert buffers["result_cache"] == WINDOW * n_out
    raw_reply = 9 + max(INFO_PAYLOAD_MAX, 9 + n_out)
    # The encoded reply plus the head start of the in-place encoder (one byte per started block).
    assert raw_reply + 2 * cobs_max_overhead(raw_reply) + 1 <= buffers["tx"] <= 2 * raw_reply


@needs_arm
def test_core_size_needs_generated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(core_size, "DEFAULT_GENERATED_DIR", tmp_path / "absent")
    with pytest.raises(ToolError, match=r"model_settings\.h not found"):
        core_size.run(None, None)


WIRING_CHECK = r"""
#include <cstdio>
#include <cstring>
#include "dispatcher.h"
#include "protocol.h"

namespace {
constexpr uint32_t kIn = 300, kOut = 7;
struct Engine final : core::Engine {
  int8_t in[kIn], out[kOut];
  int8_t* input() override { return in; }
  size_t input_bytes() const override { return kIn; }
  bool invoke() override { return true; }
  const int8_t* output() const override { return out; }
  size_t output_bytes() const override { return kOut; }
  size_t arena_used() const override { return 0; }
};
struct Clock final : core::Clock { uint32_t micros() override { return 0; } };
struct Transport final : core::Transport {
  const uint8_t* src = nullptr; size_t left = 0; size_t written = 0; size_t reads = 0;
  size_t read(uint8_t* buf, size_t cap) override {
    ++reads;
    const size_t n = left < cap ? left : cap;
    std::memcpy(buf, src, n); src += n; left -= n;
    return n;
  }
  void write(const uint8_t*, size_t len) override { written += len; }
};
uint8_t rx[core::RxBufferBytes(kIn)], tx[core::TxBufferBytes(kOut)], cache[core::CacheBufferBytes(kOut)];
}  // namespace

int main(int argc, char** argv) {
  core::DeviceInfo info{};
  info.input = core::TensorInfo{1, 1, {kIn, 0, 0, 0}, 1.0f, 0};
  info.output = core::TensorInfo{1, 1, {kOut, 0, 0, 0}, 1.0f, 0};
  Engine e; Clock c; Transport t;
  int failures = 0;
  auto check = [&](bool cond, const char* what) { if (!cond) { std::printf("%s\n", what); ++failures; } };
  auto wired = [&](const core::DeviceInfo& i, size_t rx_size, uint8_t* tx_buf, size_t tx_size,
                   size_t cache_size) {
    return core::Dispatcher(i, e, c, t, {rx, rx_size, tx_buf, tx_size, cache, cache_size, nullptr, 0}).ok();
  };
  check(wired(info, sizeof rx, tx, sizeof tx, sizeof cache), "exact sizes");
  check(!wired(info, sizeof rx - 1, tx, sizeof tx, sizeof cache), "rx short");
  check(!wired(info, sizeof rx, tx, sizeof tx - 1, sizeof cache), "tx short");
  check(!wired(info, sizeof rx, tx, sizeof tx, sizeof cache - 1), "cache short");
  check(!wired(info, sizeof rx, rx, sizeof tx, sizeof cache), "overlap");
  core::DeviceInfo bad = info;
  bad.input.rank = 5;
  check(!wired(bad, sizeof rx, tx, sizeof tx, sizeof cache), "rank 5");
  // Poll() drains the transport in bounded chunks; the wire bytes come from argv[1] (hex).
  static uint8_t wire[4096];
  size_t n = 0;
  for (const char* p = argv[argc - 1]; p[0] && p[1] && n < sizeof wire; p += 2) {
    unsigned v; std::sscanf(p, "%2x", &v); wire[n++] = static_cast<uint8_t>(v);
  }
  t.src = wire; t.left = n;
  core::Dispatcher d(info, e, c, t, {rx, sizeof rx, tx, sizeof tx, cache, sizeof cache, nullptr, 0});
  while (t.left != 0) d.Poll();
  check(t.reads == (n + 63) / 64, "chunked reads");
  std::printf("written %zu\n", t.written);
  return failures;
}
"""


def test_dispatcher_refuses_bad_wiring_and_polls_the_transport(tmp_path: Path) -> None:
    src = tmp_path / "wiring.cpp"
    src.write_text(WIRING_CHECK)
    exe = tmp_path / "wiring"
    core_sources = map(str, sorted(CORE_DIR.glob("*.cpp")))
    compile_ok(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-g", "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all", f"-I{CORE_DIR}", str(src), *core_sources, "-o", str(exe)])
    wire = frame(INFER, 1, bytes(range(1, 251)) + bytes(50)) + frame(INFER, 2, bytes(300))
    proc = subprocess.run([str(exe), wire.hex()], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reference = RefDevice(RefInfo(Tensor((300,), 1.0, 0), Tensor((7,), 1.0, 0)))
    assert proc.stdout.strip() == f"written {len(reference.feed(wire))}"
