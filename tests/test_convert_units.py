"""convert's building blocks in isolation: C literals, arena, budget, costs, file checks, staged writes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.errors import DataError, ModelError
from convert import arena, codegen, cost, staged_write, tflite_model, tflm_ops
from convert.boards import NANO33BLE, Board
from convert.pipeline import check_budget
from convert.quantize import calibration_sample
from convert.tflite_model import OpInfo, TensorInfo

# ---------------------------------------------------------------- C literals


def _compile_string_literal(tmp_path: Path, literal: str) -> bytes:
    """Compile a program that writes the literal's bytes, run it, return what it wrote."""
    src = tmp_path / "lit.cpp"
    src.write_text('#include <cstdio>\n#include <cstring>\nconstexpr const char* kS = ' + literal + ';\n'
                   "int main() { std::fwrite(kS, 1, std::strlen(kS), stdout); return 0; }\n")
    exe = tmp_path / "lit"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe)],
                   check=True, capture_output=True)
    return subprocess.run([str(exe)], check=True, capture_output=True).stdout


def test_c_string_round_trips_hostile_text_through_a_compiler(tmp_path: Path) -> None:
    text = 'a"b\\c\nd\te*/f??=g é 7\x01' + "\u20ac1f"
    assert _compile_string_literal(tmp_path, codegen.c_string(text)) == text.encode("utf-8")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=40))
def test_c_string_contains_only_safe_characters(text: str) -> None:
    literal = codegen.c_string(text)
    assert literal.startswith('"') and literal.endswith('"')
    body = literal[1:-1]
    # Outside escapes: printable ASCII without quote, backslash or '?'; escapes are exactly 3 octal digits.
    assert re.fullmatch(r'(?:[ !#-&(->@-\[\]-~]|\\[0-7]{3})*', body)
    decoded = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), body)
    assert decoded.encode("latin-1") == text.encode("utf-8")


@given(st.floats(min_value=1e-12, max_value=1e6, allow_nan=False))
def test_c_float_round_trips_float32(value: float) -> None:
    literal = codegen.c_float(value)
    assert literal.endswith("f") and re.fullmatch(r"-?[0-9.]+(e[-+][0-9]+)?f", literal)
    assert np.float32(float(literal[:-1])) == np.float32(value)


def test_c_float_of_an_integer_value_is_still_a_float_literal() -> None:
    assert codegen.c_float(1.0) == "1.0f"


def test_comment_safe_cannot_close_a_comment_or_break_a_line() -> None:
    out = codegen.comment_safe("evil*/\nname.tflite")
    assert "*/" not in out and "\n" not in out and out.endswith(".tflite")


# ---------------------------------------------------------------- arena, budget


@pytest.mark.parametrize(("measured", "percent", "expected"),
                         [(3376, 10.0, 4400), (20000, 10.0, 22000), (100, 10.0, 1136), (50000, 0.0, 51024)])
def test_arena_is_measured_plus_margin_rounded_to_16(measured: int, percent: float, expected: int) -> None:
    chosen = arena.choose_arena(measured, percent)
    assert chosen == expected and chosen % 16 == 0
    assert chosen - measured >= max(arena.MIN_MARGIN_BYTES, measured * percent / 100)


def test_budget_passes_a_small_model_and_reports_what_is_left() -> None:
    budget = check_budget(20_000, 4_400, NANO33BLE)
    assert budget["flash_left"] == NANO33BLE.flash_for_model - 20_000
    assert budget["ram_left"] == NANO33BLE.ram_for_arena - 4_400
    assert NANO33BLE.flash_for_model > 0 and NANO33BLE.ram_for_arena > 0


def test_budget_rejects_flash_and_ram_overruns_with_the_numbers() -> None:
    tiny = Board(name="tiny", description="test", flash_bytes=64_000, ram_bytes=32_000,
                 flash_reserve_bytes=50_000, ram_reserve_bytes=30_000, clock_hz=1)
    with pytest.raises(ModelError, match=r"20000 bytes of flash .* 14000 left"):
        check_budget(20_000, 1_000, tiny)
    with pytest.raises(ModelError, match=r"4400-byte tensor arena .* 2000 bytes of RAM"):
        check_budget(10_000, 4_400, tiny)


# ---------------------------------------------------------------- costs


def _t(shape: tuple[int, ...], const: bool = False, dtype: str = "int8") -> TensorInfo:
    return TensorInfo(index=0, name="t", shape=shape, dtype=dtype, is_constant=const)


def test_macs_and_params_follow_the_layer_formulas() -> None:
    fc = OpInfo(0, "FULLY_CONNECTED", (_t((1, 784)), _t((20, 784), True), _t((20,), True, "int32")),
                (_t((1, 20)),))
    conv = OpInfo(1, "CONV_2D", (_t((1, 28, 28, 1)), _t((8, 3, 3, 1), True), _t((8,), True, "int32")),
                  (_t((1, 26, 26, 8)),))
    dw = OpInfo(2, "DEPTHWISE_CONV_2D", (_t((1, 26, 26, 8)), _t((1, 3, 3, 8), True)), (_t((1, 24, 24, 8)),))
    reshape = OpInfo(3, "RESHAPE", (_t((1, 28, 28, 1)), _t((2,), True, "int32")), (_t((1, 784)),))
    assert cost.op_macs(fc) == 784 * 20 and cost.op_params(fc) == 784 * 20 + 20
    assert cost.op_macs(conv) == 26 * 26 * 8 * 3 * 3 * 1 and cost.op_params(conv) == 8 * 9 + 8
    assert cost.op_macs(dw) == 24 * 24 * 8 * 3 * 3
    assert cost.op_macs(reshape) == 0 and cost.op_params(reshape) == 0


def test_latency_estimate_is_labelled_a_lower_bound_in_instructions() -> None:
    fc = OpInfo(0, "FULLY_CONNECTED", (_t((1, 784)), _t((20, 784), True)), (_t((1, 20)),))
    model = tflite_model.TfliteModel(data=b"", io=None, ops=(fc,))  # type: ignore[arg-type]
    rows = cost.layer_costs(model)
    est = cost.latency_estimate(rows, NANO33BLE)
    assert est["kind"] == "estimate" and "lower bound" in est["basis"] and est["fallback_ops"] == []
    # The fit's FULLY_CONNECTED costs more than one instruction per MAC (the emulated Cortex-M4
    # measured 30,760 for this layer, issue 11).
    assert est["instructions"] == rows[0].est_instructions > 784 * 20
    assert est["lower_bound_us"] == pytest.approx(est["instructions"] / 64, abs=0.1)


# ---------------------------------------------------------------- file checks, op table


@pytest.mark.parametrize(("data", "message"), [(b"", "truncated"), (b"\x00" * 7, "truncated"),
                                               (b"\x18\x00\x00\x00PK\x03\x04rest", "not a TFLite model")])
def test_container_check_rejects_empty_short_and_foreign_files(data: bytes, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        tflite_model.check_container(data, "m.tflite")


# Three methods in the shapes the real header uses: a default registration argument whose own
# parentheses end the signature late, a plain one, and a custom op that must be left out.
RESOLVER_HEADER_EXCERPT = """
  TfLiteStatus AddCustom(const char* name, TfLiteRegistration* registration) {
    return kTfLiteOk;
  }
  TfLiteStatus AddConv2D(
      const TfLiteRegistration& registration = Register_CONV_2D()) {
    return AddBuiltin(BuiltinOperator_CONV_2D, registration, ParseConv2D);
  }
  TfLiteStatus AddAbs() {
    return AddBuiltin(BuiltinOperator_ABS, tflite::ops::micro::Register_ABS(),
                      ParseAbs);
  }
  TfLiteStatus AddEthosU() {
    TfLiteRegistration* registration = tflite::Register_ETHOSU();
    return AddCustom(tflite::GetString_ETHOSU(), registration);
  }
"""


def test_resolver_methods_are_read_from_the_header_text() -> None:
    parsed = tflm_ops.parse_resolver_header(RESOLVER_HEADER_EXCERPT)
    assert parsed == {"ABS": "AddAbs", "CONV_2D": "AddConv2D"}


def test_op_snapshot_is_the_board_librarys_own_header(board_library: Path) -> None:
    """board_ops.json stands in for the header on machines without the library: it must be
    what the header says, op for op."""
    import json

    header = (board_library / tflm_ops.RESOLVER_HEADER).read_text()
    parsed = tflm_ops.parse_resolver_header(header)
    assert json.loads(tflm_ops.SNAPSHOT.read_text())["methods"] == parsed
    # Every Add<Op>() of the class that takes no op argument registers a builtin or a custom op.
    adders = set(re.findall(r"TfLiteStatus\s+(Add\w+)\s*\(", header)) - {"AddBuiltin", "AddCustom"}
    customs = {"AddCircularBuffer", "AddDetectionPostprocess", "AddEthosU"}
    assert set(parsed.values()) == adders - customs
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE", "MAX_POOL_2D"} <= set(parsed)


# ---------------------------------------------------------------- calibration, staged writes


def test_calibration_sample_is_seeded_and_bounded() -> None:
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    a, b, c = calibration_sample(x, 10, 0), calibration_sample(x, 10, 0), calibration_sample(x, 10, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and len(np.unique(a)) == 10
    assert len(calibration_sample(x, 500, 0)) == 100
    with pytest.raises(DataError):
        calibration_sample(x, 0, 0)


def test_staged_write_replaces_all_files_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a.h", tmp_path / "sub" / "b.h"
    a.write_bytes(b"old a")
    staged_write.write_all({a: b"new a", b: b"new b"})
    assert a.read_bytes() == b"new a" and b.read_bytes() == b"new b"
    umask = os.umask(0)
    os.umask(umask)
    assert (b.stat().st_mode & 0o777) == 0o666 & ~umask  # not mkstemp's private 0600

    real_fsync = staged_write.os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(staged_write.os, "fsync", failing_fsync)
    with pytest.raises(DataError, match="disk full"):  # one line, exit 3: not an internal error
        staged_write.write_all({a: b"newer a", b: b"newer b"})
    assert a.read_bytes() == b"new a" and b.read_bytes() == b"new b"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.h", "b.h", "sub"]


def test_a_crashing_tflm_child_becomes_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGSEGV in the probe (the runtime's reaction to some too-small arenas) must not escape."""
    def segfault(cmd: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, -11, stdout="", stderr="")

    monkeypatch.setattr(arena.subprocess, "run", segfault)
    with pytest.raises(ModelError, match=r"chosen arena of 4400 bytes: TFLM crashed \(signal 11\)"):
        arena.verify_arena(b"model", 4400)
    with pytest.raises(ModelError, match=r"cannot run the model with a 1024 KB arena: TFLM crashed"):
        arena.measure_arena(b"model")
