"""The board layer and the TFLM adapter: layering rules, and a Cortex-M4F compile against the
API stand-ins in tests/firmware_api_stub (the real Arduino core and TFLM library need
PlatformIO's downloads; `pio run -e nano33ble` is the real build)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
STUB = ROOT / "tests" / "firmware_api_stub"
ARM_FLAGS = ["-std=c++17", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
             "-Os", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror"]
INCLUDES = [f"-I{STUB}", f"-I{FIRMWARE / 'src'}", f"-I{FIRMWARE / 'lib' / 'core'}",
            f"-I{FIRMWARE / 'lib' / 'model'}"]


def _includes(path: Path) -> list[str]:
    return re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', path.read_text(errors="replace"), re.M)


def _firmware_sources() -> list[Path]:
    return [p for p in FIRMWARE.rglob("*") if p.suffix in {".h", ".hpp", ".c", ".cc", ".cpp"}]


def test_only_main_cpp_includes_arduino() -> None:
    offenders = [p.relative_to(ROOT) for p in _firmware_sources()
                 if p != FIRMWARE / "src" / "main.cpp"
                 and any(inc in ("Arduino.h", "TensorFlowLite.h") for inc in _includes(p))]
    assert offenders == []


def test_tflm_headers_only_in_engine_adapter_and_generated_resolver() -> None:
    allowed = {FIRMWARE / "src" / "tflm_engine.cpp", FIRMWARE / "lib" / "model" / "model_op_resolver.h"}
    offenders = [p.relative_to(ROOT) for p in _firmware_sources()
                 if p not in allowed and any(inc.startswith("tensorflow/") for inc in _includes(p))]
    assert offenders == []


@pytest.mark.parametrize("source", ["main.cpp", "tflm_engine.cpp"])
def test_board_layer_compiles_for_cortex_m4f(source: str, tmp_path: Path) -> None:
    compiler = shutil.which("arm-none-eabi-g++")
    if compiler is None:
        pytest.fail("arm-none-eabi-g++ not installed (Debian package gcc-arm-none-eabi)")
    proc = subprocess.run([compiler, *ARM_FLAGS, *INCLUDES, "-c", str(FIRMWARE / "src" / source),
                           "-o", str(tmp_path / "out.o")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
