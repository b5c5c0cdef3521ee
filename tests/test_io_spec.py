"""Input / output parameters come from the flatbuffer, and convert refuses for the right reason.

Oracle for the parameters: LiteRT's own ``get_input_details`` on a model it accepts. Two
models LiteRT mishandles are made from it by editing the flatbuffer: one with a
``quantized_dimension`` LiteRT refuses but TFLM runs (as in TFLM's person_detect), and one
whose first op is an NPU's custom op with uint8 weights (the op must be named, not the type).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_tool

from common.errors import ModelError
from common.quant import read_io_spec


@pytest.fixture(scope="module")
def int8_model() -> bytes:
    from common.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras

    from convert.quantize import quantize_int8

    x = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)
    inputs = keras.Input((12,))
    outputs = keras.layers.Dense(5)(keras.layers.Dense(8, activation="relu")(inputs))
    return quantize_int8(keras.Model(inputs, outputs), x)


def _edited(data: bytes, edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(model, schema)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _litert_details(data: bytes) -> list[dict]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data)
    return [interp.get_input_details()[0], interp.get_output_details()[0]]


def test_io_parameters_match_litert_on_a_model_it_accepts(int8_model: bytes) -> None:
    io = read_io_spec(int8_model)
    for spec, detail in zip((io.input, io.output), _litert_details(int8_model), strict=True):
        assert spec.name == detail["name"]
        assert spec.shape == tuple(int(d) for d in detail["shape"])
        assert spec.dtype == np.dtype(detail["dtype"]).name == "int8"
        assert (spec.scale, spec.zero_point) == (pytest.approx(detail["quantization"][0]),
                                                 detail["quantization"][1])


def test_a_quantization_layout_litert_refuses_is_still_read(int8_model: bytes) -> None:
    def odd_dimension(model, schema) -> None:
        for t in model.subgraphs[0].tensors:
            if t.quantization is not None and t.quantization.scale is not None:
                t.quantization.quantizedDimension = 5  # per-tensor: TFLM ignores it

    odd = _edited(int8_model, odd_dimension)
    with pytest.raises(ValueError, match="quantized_dimension"):
        _litert_details(odd)
    assert read_io_spec(odd) == read_io_spec(int8_model)
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(odd, arena_size=16384)
    interp.set_input(np.zeros((1, 12), np.int8), 0)
    interp.invoke()  # TFLM runs what LiteRT refused


def test_truncated_model_is_one_line_model_error(int8_model: bytes) -> None:
    with pytest.raises(ModelError, match="not a valid TFLite model"):
        read_io_spec(int8_model[: len(int8_model) // 2])


def test_custom_npu_op_is_named_before_its_tensor_types(int8_model: bytes, tmp_path: Path) -> None:
    def npu(model, schema) -> None:
        code = model.operatorCodes[model.subgraphs[0].operators[0].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = b"ethos-u"
        weights = model.subgraphs[0].operators[0].inputs[1]
        model.subgraphs[0].tensors[weights].type = schema.TensorType.UINT8

    (tmp_path / "npu.tflite").write_bytes(_edited(int8_model, npu))
    proc = run_tool("convert", "--run", str(tmp_path / "run"), "--from-tflite", str(tmp_path / "npu.tflite"),
                    check=False, timeout=300)
    assert proc.returncode == 4
    assert proc.stderr.count("\n") == 1 and "CUSTOM:ethos-u" in proc.stderr and "uint8" not in proc.stderr
