"""Render the firmware's generated files (model data, settings, op resolver) from Jinja2 templates.

Output depends only on its inputs (no timestamps, sorted ops), so the same .tflite and labels
give byte-identical files and a rebuild is a no-op.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from common.protocol import DTYPE_CODES
from common.quant import TensorSpec, model_hash
from convert.tflite_model import TfliteModel
from convert.tflm_ops import resolver_method

GENERATED_FILES = ("model_data.h", "model_data.cpp", "model_settings.h", "model_op_resolver.h")
_BYTES_PER_LINE = 12
_TEMPLATE_DIR = Path(__file__).parent / "templates"
# Characters that may stand for themselves inside a C string literal. '?' is escaped too, so a
# label like "??=" can never form a trigraph under an old compiler.
_PLAIN = re.compile(r"[ !#-&(->@-\[\]-~]")


@dataclass(frozen=True)
class ArenaInfo:
    bytes: int
    measured: int
    rule: str


def c_string(text: str) -> str:
    """A C/C++ string literal for any text: non-printable, non-ASCII, quote, backslash and '?'
    become 3-digit octal escapes of the UTF-8 bytes (an octal escape stops after 3 digits, so it
    never swallows a following digit the way a hex escape would)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        out.append(ch if byte < 0x80 and _PLAIN.fullmatch(ch) else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_float(value: float) -> str:
    """A float literal that reads back as the same float32 ('%.9g' round-trips every float32)."""
    text = f"{float(np.float32(value)):.9g}"
    if not any(c in text for c in ".en"):
        text += ".0"
    return text + "f"


def comment_safe(text: str) -> str:
    """File names in comments: nothing that could close a comment or break a line."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text) or "_"


def _tensor_context(spec: TensorSpec) -> dict[str, object]:
    return {"rank": len(spec.shape), "dims": "{" + ", ".join(str(d) for d in spec.shape) + "}",
            "bytes": spec.size,
            "scale": c_float(spec.scale), "zero_point": int(spec.zero_point),
            "dtype_code": DTYPE_CODES[spec.dtype]}


def _data_lines(data: bytes) -> list[str]:
    return [" ".join(f"0x{b:02x}," for b in data[i : i + _BYTES_PER_LINE])
            for i in range(0, len(data), _BYTES_PER_LINE)]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATE_DIR), autoescape=False,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True)


def render(model: TfliteModel, labels: list[str], arena: ArenaInfo, source_name: str,
           model_source: str) -> dict[str, str]:
    """File name -> text for every generated file. ``source_name`` is shown in the header comment,
    ``model_source`` becomes kModelSource (the run-folder file the firmware was built from)."""
    methods = [resolver_method(op) for op in model.op_names]
    if any(m is None for m in methods):  # check_tflm_ops runs first; this guards direct callers
        raise ValueError("model has ops TFLM does not support")
    context = {
        "source_comment": comment_safe(source_name),
        "model_hash": model_hash(model.data),
        "model_source": c_string(model_source),
        "model_bytes": len(model.data),
        "data_lines": _data_lines(model.data),
        "input": _tensor_context(model.io.input),
        "output": _tensor_context(model.io.output),
        "labels": [c_string(label) for label in labels],
        "arena_bytes": arena.bytes,
        "arena_measured": arena.measured,
        "arena_rule": arena.rule,
        "op_count": len(methods),
        "operator_count": len(model.ops),
        "ops": model.op_names,
        "methods": methods,
    }
    env = _environment()
    return {name: env.get_template(f"{name}.j2").render(**context) for name in GENERATED_FILES}
