"""convert against damaged and awkward models: corrupted bytes, odd quantization, hostile names,
fixed batches, ops TFLM cannot prepare, and the exact int8 rounding of inputs."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import numpy as np
import pytest

from common.errors import ModelError
from common.names import MAX_SHOWN_CHARS, shown
from common.quant import TensorSpec
from common.quiet import captured_stdout_fd, quiet_tensorflow, silenced_stderr
from convert import arena, cost, tflite_model, verify
from convert.tflite_model import OpInfo, TensorInfo

SHAPE = (8, 8, 1)
MUTANTS = 600


def _keras_int8(*layers: object) -> bytes:
    quiet_tensorflow()
    import keras

    from convert.quantize import quantize_int8

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), *layers])
    return quantize_int8(model, np.random.default_rng(0).random((20, *SHAPE), dtype=np.float32))


@pytest.fixture(scope="module")
def tiny() -> bytes:
    import keras

    return _keras_int8(keras.layers.Dense(6, activation="relu", name="hidden"), keras.layers.Dense(3))


def _edited(data: bytes, edit: Callable[[object], None]) -> bytes:
    """The model with its object tree changed by ``edit`` and packed again."""
    import flatbuffers

    schema = tflite_model._schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _fc_weights(model: object) -> object:
    """The weight tensor (input 1) of the first FULLY_CONNECTED op."""
    schema = tflite_model._schema()
    graph = model.subgraphs[0]
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.FULLY_CONNECTED:
            return graph.tensors[op.inputs[1]]
    raise AssertionError("no FULLY_CONNECTED op")


def _check(data: bytes) -> tflite_model.TfliteModel:
    model = tflite_model.load(data, "m.tflite")
    tflite_model.check_int8(model, "m.tflite")
    tflite_model.check_tflm_ops(model)
    cost.layer_costs(model)
    return model


def test_tiny_model_passes_every_check(tiny: bytes) -> None:
    model = _check(tiny)
    assert model.io.input.shape == (1, *SHAPE)
    assert verify.run_litert(tiny, verify.random_inputs(model.io.input.shape, 0, count=3)).shape == (3, 3)


def test_flipped_bytes_give_model_errors_or_a_valid_model(tiny: bytes) -> None:
    """Seeded mutants (bytes overwritten, 32-bit words replaced, truncation): the checking code either
    accepts the model or raises a one-line ModelError; never another exception."""
    rng = np.random.default_rng(20260101)
    outcomes = {"accepted": 0, "refused": 0}
    for i in range(MUTANTS):
        data = bytearray(tiny)
        kind = i % 3
        if kind == 0:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        elif kind == 1:
            at = int(rng.integers(0, len(data) - 4))
            data[at:at + 4] = int(rng.integers(0, 2**32)).to_bytes(4, "little")
        else:
            data = data[:int(rng.integers(0, len(data)))]
        try:
            model = _check(bytes(data))
            verify.run_litert(bytes(data), verify.random_inputs(model.io.input.shape, i, count=2))
            outcomes["accepted"] += 1
        except ModelError as exc:
            assert "\n" not in str(exc), (i, str(exc))
            outcomes["refused"] += 1
    # Both kinds occur: flips in the weights keep a valid model, flips in the structure do not.
    assert outcomes["accepted"] > 0 and outcomes["refused"] > 0, outcomes


def test_non_zero_weight_zero_point_is_refused(tiny: bytes) -> None:
    def shift(model: object) -> None:
        weights = _fc_weights(model)
        weights.quantization.zeroPoint = np.full_like(weights.quantization.zeroPoint, 3)

    with pytest.raises(ModelError, match=r"weights .* of op FULLY_CONNECTED .*non-zero zero point"):
        _check(_edited(tiny, shift))


def test_hostile_tensor_names_are_cleaned_and_cut_in_messages(tiny: bytes) -> None:
    hostile = "evil\n\x1b[31mred" + "x" * 300

    def rename_and_shift(model: object) -> None:
        weights = _fc_weights(model)
        weights.name = hostile.encode()
        weights.quantization.zeroPoint = np.full_like(weights.quantization.zeroPoint, 1)

    with pytest.raises(ModelError) as err:
        _check(_edited(tiny, rename_and_shift))
    message = str(err.value)
    assert "evil??[31mred" in message and "\n" not in message and "\x1b" not in message
    cut = "evil??[31mred" + "x" * (MAX_SHOWN_CHARS - len("evil??[31mred") - 1) + "\u2026"
    assert f"'{cut}'" in message  # the 313-character name shown as its first 80 characters


def test_shown_strips_control_characters_and_truncates() -> None:
    assert shown("a\nb\x1b[0m\u202ec") == "a?b?[0m?c"
    long = shown("y" * 500)
    assert len(long) == MAX_SHOWN_CHARS and long.endswith("\u2026")
    assert shown("layer/dense_1") == "layer/dense_1"
    op = OpInfo(0, "GELU", (), (TensorInfo(1, "bad\nname" * 40, (1, 3), "int8", False),))
    model = tflite_model.TfliteModel(data=b"", io=None, ops=(op,))  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"^op GELU \(layer bad\?namebad") as err:
        tflite_model.check_tflm_ops(model)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


def test_a_fixed_batch_of_two_is_a_model_error() -> None:
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    inp = keras.Input(batch_shape=(2, *SHAPE))
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(inp)))

    def representative():  # the converter's generator protocol: one list of arrays per sample
        for _ in range(5):
            yield [np.random.default_rng(0).random((2, *SHAPE), dtype=np.float32)]

    with silenced_stderr(), captured_stdout_fd():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
        data = bytes(converter.convert())
    with pytest.raises(ModelError, match=r"^m\.tflite: input tensor .* shape \[2, 8, 8, 1\]; a batch of 1"):
        tflite_model.load(data, "m.tflite")


def test_an_op_tflm_cannot_prepare_is_named_not_blamed_on_the_arena() -> None:
    """keras 'exponential' converts to an int8 EXP, which TFLM lists but runs in float only."""
    import keras

    data = _keras_int8(keras.layers.Dense(3), keras.layers.Activation("exponential"))
    _check(data)  # the static checks cannot know
    with pytest.raises(ModelError) as err:
        arena.measure_arena(data)
    pattern = r"TFLM failed to prepare the model: op EXP \(node \d+\): \S+\.cc:\d+ .+"
    assert re.fullmatch(pattern, str(err.value))
    assert "arena" not in str(err.value)


def _probe_reply(stderr: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(cmd: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 3, '{"error": "TFLM failed to allocate tensors"}\n', stderr)

    return run


def test_running_out_of_the_probe_arena_reports_the_size_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arena.subprocess, "run", _probe_reply(
        "Failed to resize buffer. Requested: 2162688, available 1047112, missing: 1115576\n"))
    with pytest.raises(arena.ArenaTooLarge) as err:
        arena.measure_arena(b"model")
    assert err.value.at_least == arena.PROBE_ARENA_BYTES - 1047112 + 2162688
    assert f"at least {err.value.at_least} bytes" in str(err.value)


def test_an_unexplained_probe_failure_keeps_the_childs_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arena.subprocess, "run", _probe_reply(""))
    with pytest.raises(ModelError, match=r"^TFLM cannot run the model with a 1024 KB arena: TFLM failed to "
                                         r"allocate tensors$"):
        arena.measure_arena(b"model")


@pytest.mark.parametrize(("value", "expected"), [
    (0.5, 1), (1.5, 2), (2.5, 3), (-0.5, -1), (-1.5, -2), (-2.5, -3),
    (0.49999997, 0), (-0.49999997, 0), (126.5, 127), (-127.5, -128), (1000.0, 127), (-1000.0, -128),
])
def test_input_quantization_rounds_half_away_from_zero(value: float, expected: int) -> None:
    spec = TensorSpec("x", (1, 1), "int8", scale=1.0, zero_point=0)
    assert spec.quantize(np.array([value], dtype=np.float32)).tolist() == [expected]


def test_input_quantization_ties_with_scale_and_zero_point() -> None:
    spec = TensorSpec("x", (1, 4), "int8", scale=0.5, zero_point=-3)
    # x / 0.5 = 1.5, 2.5, -1.5, -2.5 -> 2, 3, -2, -3, then + zero point
    assert spec.quantize(np.array([0.75, 1.25, -0.75, -1.25])).tolist() == [-1, 0, -5, -6]
