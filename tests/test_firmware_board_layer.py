"""The board layers and the TFLM adapter: layering rules. (They compile against the board's real
sources in tests/test_firmware_nano_build.py and tests/test_emulated_board.py.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"


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
                 if p not in allowed and p.parent != FIRMWARE / "host"
                 and any(inc.startswith("tensorflow/") for inc in _includes(p))]
    assert offenders == []


def test_the_emulated_board_layer_is_one_board_file_beside_the_nanos() -> None:
    # The emulated image differs from the Nano's only in the board layer: the adapter, core and
    # model are shared; the board folder holds the board file, start-up code and linker script.
    board = FIRMWARE / "boards" / "mps2_an386"
    assert sorted(p.name for p in board.iterdir()) == ["board.cpp", "mps2_an386.ld", "startup.cpp"]
    assert {"tflm_engine.h", "dispatcher.h", "model_settings.h"} <= set(_includes(board / "board.cpp"))
    assert _includes(board / "startup.cpp") == ["stddef.h", "stdint.h"]
