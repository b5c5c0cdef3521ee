"""Per-op cost of one inference, measured on the device (PROFILE, docs/protocol.md section 4).

The firmware times each op of one ``Invoke()`` with its own clock: DWT cycles on the Nano,
instructions on the emulated Cortex-M4 (QEMU ``-icount shift=0``), host microseconds on the
virtual board. ``Profile`` says which, and ``layer_rows`` puts the measurement next to
convert's estimate for the same op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from host_tools.messages import Info, ProfileResult
from host_tools.session import Session

__all__ = ["OpTicks", "Profile", "from_json", "layer_rows", "profile_emulated", "profile_session",
           "render_table", "unit_of", "zero_input"]

# What the ticks count, by where they come from.
UNIT_CYCLES = "cycles"
UNIT_INSTRUCTIONS = "instructions"
UNIT_MICROSECONDS = "us"


@dataclass(frozen=True)
class OpTicks:
    index: int  # position in the execution order (the .tflite's operator order of subgraph 0)
    name: str
    ticks: int


@dataclass(frozen=True)
class Profile:
    board: str
    unit: str  # UNIT_CYCLES, UNIT_INSTRUCTIONS or UNIT_MICROSECONDS
    clock_hz: int
    truncated: bool
    total: int  # the whole Invoke() as the device timed it (profiler included)
    ops: tuple[OpTicks, ...]

    @property
    def op_sum(self) -> int:
        return sum(op.ticks for op in self.ops)

    def as_json(self) -> dict[str, Any]:
        return {"board": self.board, "unit": self.unit, "clock_hz": self.clock_hz,
                "truncated": self.truncated, "total": self.total,
                "ops": [{"index": op.index, "name": op.name, "ticks": op.ticks} for op in self.ops]}


def from_json(record: dict[str, Any]) -> Profile:
    return Profile(board=str(record["board"]), unit=str(record["unit"]), clock_hz=int(record["clock_hz"]),
                   truncated=bool(record["truncated"]), total=int(record["total"]),
                   ops=tuple(OpTicks(int(o["index"]), str(o["name"]), int(o["ticks"]))
                             for o in record["ops"]))


def unit_of(info: Info, cycles_valid: bool) -> str:
    from host_tools.emulator import is_emulated

    if not cycles_valid:
        return UNIT_MICROSECONDS
    return UNIT_INSTRUCTIONS if is_emulated(info.board) else UNIT_CYCLES


def zero_input(info: Info) -> bytes:
    """An input of the model's size holding the real value 0 (the input zero point)."""
    count = int(np.prod(info.input_shape)) if info.input_shape else 1
    return np.full(count, info.input_zero_point, dtype=np.int8).tobytes()


def profile_session(session: Session, tensor: bytes | None = None) -> Profile:
    """One PROFILE over an open session (handshaking first if needed)."""
    info = session.info if session.info is not None else session.handshake()
    reply: ProfileResult = session.profile(zero_input(info) if tensor is None else tensor)
    return Profile(board=info.board, unit=unit_of(info, reply.cycles_valid), clock_hz=info.clock_hz,
                   truncated=reply.truncated, total=reply.total_ticks,
                   ops=tuple(OpTicks(i, op.name, op.ticks) for i, op in enumerate(reply.ops)))


def profile_emulated(generated_dir: Path, payload: bytes | None = None) -> Profile:
    """Build (cached) and start the emulated board for ``generated_dir``, profile one inference
    of ``payload`` (default: the input zero point everywhere), stop it."""
    from host_tools.emulator import emulated_board
    from host_tools.link import SerialLink

    with emulated_board(Path(generated_dir)) as port, SerialLink(port) as link:
        return profile_session(Session(link), payload)


def _estimate(layer: dict[str, Any]) -> float | None:
    """convert's estimate for one layer, in instructions (cycles at one per instruction)."""
    for key in ("est_instructions", "est_cycles_cmsis_nn"):
        value = layer.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


def layer_rows(profile: Profile, layers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per op: measured ticks, share of the ops' sum, and convert's estimate with the ratio
    estimate / measured where both count the same thing (cycles or instructions)."""
    comparable = profile.unit in (UNIT_CYCLES, UNIT_INSTRUCTIONS)
    by_index = {int(layer.get("index", -1)): layer for layer in layers}
    total = profile.op_sum or 1
    rows = []
    for op in profile.ops:
        layer = by_index.get(op.index, {})
        same_op = layer.get("op") == op.name
        estimate = _estimate(layer) if comparable and same_op else None
        rows.append({
            "index": op.index, "op": op.name, "layer": str(layer.get("layer", "")) if same_op else "",
            "measured": op.ticks, "share": op.ticks / total, "estimate": estimate,
            "ratio": estimate / op.ticks if estimate is not None and op.ticks > 0 else None,
        })
    return rows


def unit_label(profile: Profile) -> str:
    micro = "host µs" if profile.board == "virtual" else "µs"
    return {UNIT_CYCLES: "cycles", UNIT_INSTRUCTIONS: "instructions",
            UNIT_MICROSECONDS: micro}.get(profile.unit, profile.unit)


def render_table(profile: Profile, layers: Sequence[dict[str, Any]]) -> list[str]:
    unit = unit_label(profile)
    rows = layer_rows(profile, layers)
    lines = [f"{'#':>3}  {'op':<24} {unit:>14} {'share':>7} {'estimate':>12} {'est/meas':>8}"]
    for r in rows:
        est = f"{r['estimate']:,.0f}" if r["estimate"] is not None else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        lines.append(f"{r['index']:>3}  {r['op'][:24]:<24} {r['measured']:>14,} {r['share']:>7.1%} "
                     f"{est:>12} {ratio:>8}")
    estimates = [r["estimate"] for r in rows if r["estimate"] is not None]
    est_total = f"{sum(estimates):,.0f}" if len(estimates) == len(rows) and rows else "-"
    lines.append(f"{'':>3}  {'ops total':<24} {profile.op_sum:>14,} {'':>7} {est_total:>12}")
    lines.append(f"{'':>3}  {'Invoke() as timed':<24} {profile.total:>14,}")
    if profile.clock_hz and profile.unit in (UNIT_CYCLES, UNIT_INSTRUCTIONS):
        at = profile.op_sum / profile.clock_hz * 1e6
        what = "at one cycle per instruction" if profile.unit == UNIT_INSTRUCTIONS else ""
        lines.append(f"     = {at:,.1f} µs at {profile.clock_hz / 1e6:g} MHz {what}".rstrip())
    if profile.truncated:
        lines.append("     (more ops ran than the device could record: the table is cut)")
    return lines
