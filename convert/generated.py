"""The firmware's generated model files for an int8 ``.tflite`` without a run folder.

For the cost model's probes and for tests that put many small models on the emulated board:
the same checks, arena sizing and templates as ``python -m convert``, without the
verification against LiteRT and the run-folder bookkeeping.
"""

from __future__ import annotations

from pathlib import Path

from convert import arena as arena_mod
from convert import codegen, tflite_model, tflm_engines

__all__ = ["measured_arena", "write_generated"]


def measured_arena(data: bytes,
                   margin_percent: float = arena_mod.DEFAULT_MARGIN_PERCENT) -> codegen.ArenaInfo:
    """The arena the board's library measures for ``data``, plus the margin; sized from what
    really runs when the library under-reports (an LSTM's temporary tensors)."""
    measure = tflm_engines.measure_arena(data)
    arena_bytes = arena_mod.choose_arena(measure.measured, margin_percent)
    if not tflm_engines.arena_runs(data, arena_bytes):
        measure = tflm_engines.smallest_arena(data, arena_bytes)
        arena_bytes = arena_mod.choose_arena(measure.measured, margin_percent)
    return codegen.ArenaInfo(bytes=arena_bytes, measured=measure.measured,
                             rule=arena_mod.margin_rule(margin_percent, measure.how))


def write_generated(data: bytes, folder: Path, name: str) -> tflite_model.TfliteModel:
    """Check ``data`` (an int8 .tflite called ``name`` in messages), size its arena and write
    the generated files into ``folder``; the parsed model."""
    model = tflite_model.load(data, name)
    tflite_model.check_tflm_ops(model)
    tflite_model.check_int8(model, name)
    arena = measured_arena(data)
    labels = [str(i) for i in range(model.io.output.size)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in codegen.render(model, labels, arena, source_name=name, model_source=name).items():
        (folder / file_name).write_text(text, encoding="utf-8")
    return model
