"""Which builtin ops the board's TFLM library can register, and the resolver method for each.

Derived from the library's own ``tensorflow/lite/micro/micro_mutable_op_resolver.h``: every
``Add<Op>()`` method of ``MicroMutableOpResolver`` that registers a ``BuiltinOperator_<OP>``.
The generated ``model_op_resolver.h`` calls exactly these methods, so the firmware registers
only what the board's library has. When the library is on this machine its header is read;
otherwise the snapshot ``board_ops.json`` (written from that header by
``python -m convert.tflm_ops``, checked against it by the tests) stands in. Custom ops
(CIRCULAR_BUFFER, TFLite_Detection_PostProcess, Ethos-U) are left out on purpose: the
firmware registers builtins only.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

from common import board_sources

__all__ = ["RESOLVER_HEADER", "parse_resolver_header", "resolver_method", "resolver_methods"]

RESOLVER_HEADER = "src/tensorflow/lite/micro/micro_mutable_op_resolver.h"
SNAPSHOT = Path(__file__).resolve().parent / "board_ops.json"
# Methods that take an op by argument rather than registering one.
_GENERIC_METHODS = {"AddBuiltin", "AddCustom"}


def parse_resolver_header(text: str) -> dict[str, str]:
    """``{"CONV_2D": "AddConv2D", ...}`` from the text of ``micro_mutable_op_resolver.h``."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"TfLiteStatus\s+(Add\w+)\s*\(", text)]
    ends = [pos for pos, _ in starts[1:]] + [len(text)]
    methods: dict[str, str] = {}
    for (pos, name), end in zip(starts, ends, strict=True):
        if name in _GENERIC_METHODS:
            continue
        op = re.search(r"BuiltinOperator_(\w+)", text[pos:end])
        if op is not None:  # AddCircularBuffer, AddEthosU...: custom ops
            methods[op.group(1)] = name
    return dict(sorted(methods.items()))


@functools.cache
def resolver_methods() -> dict[str, str]:
    library = board_sources.find_library()
    if library is not None and (library / RESOLVER_HEADER).is_file():
        return parse_resolver_header((library / RESOLVER_HEADER).read_text(errors="replace"))
    snapshot: dict[str, str] = json.loads(SNAPSHOT.read_text())["methods"]
    return snapshot


def resolver_method(op_name: str) -> str | None:
    """The ``MicroMutableOpResolver`` method for a builtin op name, or None if the library lacks it."""
    return resolver_methods().get(op_name)


def write_snapshot() -> Path:
    library = board_sources.require_library()
    methods = parse_resolver_header((library / RESOLVER_HEADER).read_text(errors="replace"))
    snapshot = {"library": board_sources.library_version(library), "header": RESOLVER_HEADER,
                "methods": methods}
    SNAPSHOT.write_text(json.dumps(snapshot, indent=2) + "\n")
    return SNAPSHOT


if __name__ == "__main__":
    print(write_snapshot())
    sys.exit(0)
