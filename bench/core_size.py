"""Flash and static RAM of the portable firmware core on the Cortex-M4F, and the frame buffers
the model's tensor sizes call for.

Two firmware-like images are linked with arm-none-eabi-g++ (newlib-nano, --gc-sections):
one that runs the core's dispatcher on static buffers and a baseline with the same stubs but
no core. Their difference is what the core costs (including the libc pieces it pulls in,
memcpy); the frame buffers are measured from the symbol table and reported separately.
The sum over the core's object files is reported too, as an upper bound.

Run: ``python -m bench.core_size [--generated-dir DIR]``; writes bench/results/core_size.json.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import runfolder
from common.atomic import write_json
from common.errors import ToolError, UsageError, run_cli

REPO = Path(__file__).resolve().parent.parent
CORE_DIR = REPO / "firmware" / "lib" / "core"
DEFAULT_GENERATED_DIR = REPO / runfolder.FIRMWARE_MODEL_DIR
RESULT_PATH = REPO / "bench" / "results" / "core_size.json"

CXX = "arm-none-eabi-g++"
SIZE = "arm-none-eabi-size"
NM = "arm-none-eabi-nm"
ARM_FLAGS = ("-std=c++17", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os",
             "-fno-exceptions", "-fno-rtti", "-ffunction-sections", "-fdata-sections",
             "-Wall", "-Wextra", "-Werror")
LINK_FLAGS = ("--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections")
# The budget the core must fit in (besides the frame buffers).
FLASH_BUDGET = 8 * 1024
RAM_BUDGET = 2 * 1024
FRAME_BUFFERS = ("g_rx_frame", "g_tx_frame", "g_result_cache")
TOOL_TIMEOUT_S = 300

# A board layer in miniature: stub engine, clock and transport, buffers sized from the
# generated settings. CORE_SIZE_BASELINE keeps everything but the core.
FIRMWARE_LIKE_SOURCE = r"""
#include <stdint.h>
#include <string.h>

#include "device_info.h"
#include "interfaces.h"
#include "model_settings.h"
#include "protocol.h"
#ifndef CORE_SIZE_BASELINE
#include "dispatcher.h"
#include "model_device_info.h"
#include "version.h"
#endif

extern "C" void __cxa_pure_virtual() { while (true) {} }

namespace {
volatile uint8_t g_sink;
volatile uint32_t g_ticks;

class StubEngine final
#ifndef CORE_SIZE_BASELINE
    : public core::Engine
#endif
{
 public:
  int8_t* input() { return input_; }
  size_t input_bytes() const { return model::kInputBytes; }
  bool invoke() { output_[0] = input_[0]; return true; }
  const int8_t* output() const { return output_; }
  size_t output_bytes() const { return model::kOutputBytes; }
  size_t arena_used() const { return 0; }
 private:
  int8_t input_[model::kInputBytes];
  int8_t output_[model::kOutputBytes];
};

class StubClock final
#ifndef CORE_SIZE_BASELINE
    : public core::Clock
#endif
{
 public:
  uint32_t micros() { return g_ticks++; }
  bool has_cycles() const { return true; }
  uint32_t cycles() { return g_ticks; }
};

class StubTransport final
#ifndef CORE_SIZE_BASELINE
    : public core::Transport
#endif
{
 public:
  size_t read(uint8_t* buf, size_t cap) { if (cap) buf[0] = g_sink; return cap ? 1 : 0; }
  void write(const uint8_t* data, size_t len) { if (len) g_sink = data[len - 1]; }
};

StubEngine g_engine;
StubClock g_clock;
StubTransport g_transport;
core::DeviceInfo g_info;  // board-layer data (a plain struct): kept in both images
}  // namespace

uint8_t g_rx_frame[core::RxBufferBytes(model::kInputBytes)];
uint8_t g_tx_frame[core::TxBufferBytes(model::kOutputBytes, model::kOperatorCount)];
uint8_t g_result_cache[core::CacheBufferBytes(model::kOutputBytes)];
core::OpTicks g_ops[model::kOperatorCount];
// Both images keep every board-side object (their addresses escape), so the difference
// between them is the core alone.
void* volatile g_keep[] = {g_rx_frame, g_tx_frame, g_result_cache, g_ops, &g_engine, &g_clock,
                           &g_transport, &g_info};

#ifndef CORE_SIZE_BASELINE
static_assert(core::TxRawCapacity(sizeof g_tx_frame) >=
                  core::RawFrameCapacity(core::MaxReplyPayload(model::kOutputBytes, model::kOperatorCount)),
              "the transmit buffer must hold the largest reply");
namespace {
core::Dispatcher g_dispatcher(g_info, g_engine, g_clock, g_transport,
                              core::Buffers{g_rx_frame, sizeof g_rx_frame, g_tx_frame, sizeof g_tx_frame,
                                            g_result_cache, sizeof g_result_cache, g_ops,
                                            model::kOperatorCount});
}  // namespace
#endif

int main() {
  for (void* volatile& kept : g_keep) g_sink = *static_cast<uint8_t*>(kept);
#ifndef CORE_SIZE_BASELINE
  core::FillModelInfo(&g_info);
  memcpy(g_info.firmware_version, core::kFirmwareVersion, 3);
  g_info.board_name = "bench";
  while (g_dispatcher.ok()) g_dispatcher.Poll();
#else
  // Touch the buffers and stubs the same way, so the baseline keeps them too.
  uint8_t b[64];
  while (true) {
    const size_t n = g_transport.read(b, sizeof b);
    g_rx_frame[n] = b[0];
    g_tx_frame[n] = g_rx_frame[0];
    g_result_cache[n] = g_tx_frame[0];
    g_engine.input()[0] = static_cast<int8_t>(g_result_cache[0]);
    if (g_engine.invoke()) g_transport.write(g_tx_frame, g_clock.micros() + g_engine.output_bytes());
  }
#endif
  return 0;
}
"""

class BenchError(ToolError):
    """The cross toolchain is missing or a build failed."""


def _tool(*cmd: str) -> str:
    if shutil.which(cmd[0]) is None:
        raise BenchError(f"{cmd[0]} not found: install gcc-arm-none-eabi and libnewlib-arm-none-eabi")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{cmd[0]} timed out after {TOOL_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        first = next((ln for ln in lines if "error" in ln), lines[0] if lines else "no output")
        raise BenchError(f"{cmd[0]} failed: {first.strip()}")
    return proc.stdout


def compile_objects(sources: Sequence[Path], include_dirs: Sequence[Path], out_dir: Path,
                    defines: Sequence[str] = ()) -> list[Path]:
    """Compile each source with the board's flags (-c); returns the object files."""
    objects = []
    for src in sources:
        obj = out_dir / f"{src.stem}{'_base' if defines else ''}.o"
        _tool(CXX, *ARM_FLAGS, *defines, *(f"-I{d}" for d in include_dirs), "-c", str(src), "-o", str(obj))
        objects.append(obj)
    return objects


def section_sizes(elf: Path) -> dict[str, int]:
    """Flash (.text + .rodata + .data init) and RAM (.data + .bss) of a linked image."""
    sizes: dict[str, int] = {}
    for line in _tool(SIZE, "-A", str(elf)).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    text = sum(v for k, v in sizes.items() if k in (".text", ".rodata", ".ARM.exidx", ".init", ".fini"))
    data = sizes.get(".data", 0)
    bss = sizes.get(".bss", 0)
    return {"flash": text + data, "ram": data + bss, "text": text, "data": data, "bss": bss}


def symbol_sizes(elf: Path, names: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in _tool(NM, "-S", "-C", str(elf)).splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] in names:
            found[parts[3]] = int(parts[1], 16)
    missing = [n for n in names if n not in found]
    if missing:
        raise BenchError(f"symbols {', '.join(missing)} not in {elf.name}")
    return found


def object_sizes(objects: Sequence[Path]) -> dict[str, dict[str, int]]:
    """Berkeley sizes per object (text includes .rodata); an upper bound before --gc-sections."""
    table: dict[str, dict[str, int]] = {}
    for line in _tool(SIZE, *map(str, objects)).splitlines()[1:]:
        text, data, bss, _dec, _hex, name = line.split()[:6]
        table[Path(name).name] = {"text": int(text), "data": int(data), "bss": int(bss)}
    return table


def _input_output_bytes(settings: Path) -> tuple[int, int]:
    text = settings.read_text()
    values = {}
    for key in ("kInputBytes", "kOutputBytes"):
        match = re.search(rf"{key}\s*=\s*(\d+)", text)
        if match is None:
            raise BenchError(f"{settings} has no {key}")
        values[key] = int(match.group(1))
    return values["kInputBytes"], values["kOutputBytes"]


def run(generated_dir: Path | None = None, result_path: Path | None = RESULT_PATH) -> dict[str, Any]:
    """Measure, write the JSON (unless ``result_path`` is None) and return it."""
    gen = Path(generated_dir) if generated_dir is not None else DEFAULT_GENERATED_DIR
    with tempfile.TemporaryDirectory(prefix="core_size_") as tmp_name:
        tmp = Path(tmp_name)
        if not (gen / "model_settings.h").is_file():
            raise UsageError(f"{gen / 'model_settings.h'} not found: run `python -m convert` first")
        main = tmp / "firmware_like.cpp"
        main.write_text(FIRMWARE_LIKE_SOURCE)
        includes = [CORE_DIR, gen]
        core_objects = compile_objects(sorted(CORE_DIR.glob("*.cpp")), includes, tmp)
        main_obj = compile_objects([main], includes, tmp)[0]
        base_obj = compile_objects([main], includes, tmp, defines=["-DCORE_SIZE_BASELINE"])[0]
        elf, base_elf = tmp / "with_core.elf", tmp / "baseline.elf"
        _tool(CXX, *ARM_FLAGS, *LINK_FLAGS, str(main_obj), *map(str, core_objects), "-o", str(elf))
        _tool(CXX, *ARM_FLAGS, *LINK_FLAGS, str(base_obj), "-o", str(base_elf))
        with_core, baseline = section_sizes(elf), section_sizes(base_elf)
        buffers = symbol_sizes(elf, FRAME_BUFFERS)
        objects = object_sizes(core_objects)
        compiler = _tool(CXX, "--version").splitlines()[0]
        input_bytes, output_bytes = _input_output_bytes(gen / "model_settings.h")
    flash = with_core["flash"] - baseline["flash"]
    ram = with_core["ram"] - baseline["ram"]
    result: dict[str, Any] = {
        "core_flash_bytes": flash,
        "core_ram_bytes": ram,
        "flash_budget_bytes": FLASH_BUDGET,
        "ram_budget_bytes": RAM_BUDGET,
        "within_budget": flash <= FLASH_BUDGET and ram <= RAM_BUDGET,
        "frame_buffers": {"rx": buffers["g_rx_frame"], "tx": buffers["g_tx_frame"],
                          "result_cache": buffers["g_result_cache"], "total": sum(buffers.values())},
        "model_input_bytes": input_bytes,
        "model_output_bytes": output_bytes,
        "settings": str(gen.relative_to(REPO) if gen.is_relative_to(REPO) else gen),
        "objects_upper_bound": {
            "flash": sum(o["text"] + o["data"] for o in objects.values()),
            "ram": sum(o["data"] + o["bss"] for o in objects.values()),
            "per_object": objects,
        },
        "images": {"with_core": with_core, "baseline": baseline},
        "method": "linked image with the core minus the same image without it (arm-none-eabi, -Os, "
                  "newlib-nano, --gc-sections); frame buffers from the symbol table",
        "compiler": compiler,
    }
    if result_path is not None:
        write_json(result_path, result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core_size", description=__doc__.splitlines()[0])
    parser.add_argument("--generated-dir", type=Path, default=None,
                        help="directory with the generated model_settings.h (default: the installed model)")
    args = parser.parse_args(argv)
    result = run(args.generated_dir)
    buffers = result["frame_buffers"]
    print(f"core: {result['core_flash_bytes']} B flash (budget {FLASH_BUDGET}), "
          f"{result['core_ram_bytes']} B static RAM (budget {RAM_BUDGET}); frame buffers for "
          f"{result['model_input_bytes']} input bytes: rx {buffers['rx']} + tx {buffers['tx']} + "
          f"cache {buffers['result_cache']} = {buffers['total']} B -> {RESULT_PATH.relative_to(REPO)}")
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
