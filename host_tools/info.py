"""``info``: what the device runs, and whether it is the run folder's model."""

from __future__ import annotations

from pathlib import Path

from common import runfolder
from common.errors import DeviceError
from host_tools.evaluate import load_expected
from host_tools.link import SerialLink
from host_tools.messages import Info
from host_tools.session import FLASH_HINT, Session, check_info


def _tensor(info: Info, kind: str) -> str:
    dtype, shape = getattr(info, f"{kind}_dtype"), getattr(info, f"{kind}_shape")
    scale, zero_point = getattr(info, f"{kind}_scale"), getattr(info, f"{kind}_zero_point")
    return f"{dtype} {list(shape)}, scale {scale:.6g}, zero point {zero_point}"


def render(info: Info, port: str) -> list[str]:
    clock = f"{info.clock_hz / 1e6:g} MHz" if info.clock_hz else "no cycle counter"
    lines = [
        f"port          {port}",
        f"board         {info.board}",
        f"firmware      {info.firmware} (protocol {info.protocol_version})",
        f"clock         {clock}",
        f"model hash    {info.model_hash} ({info.model_bytes:,} bytes)",
        f"input         {_tensor(info, 'input')}",
        f"output        {_tensor(info, 'output')}",
        f"arena         {info.arena_used:,} of {info.arena_size:,} bytes used",
        f"window        {info.window} requests, max payload {info.max_payload} bytes",
        f"start-up      {info.startup_name}" + (f": {info.startup_error}" if info.startup_error else ""),
    ]
    return lines


def show_info(link: SerialLink, port: str, run: Path, virtual_hint: str | None = None) -> int:
    """Print the handshake; exit 0 when the device runs the run folder's model, else a DeviceError."""
    session = Session(link)  # no expected model: show INFO even when it does not match
    info = session.handshake()
    for line in render(info, port):
        print(line)
    if not (run / runfolder.MODEL_TFLITE).is_file():
        print(f"run folder    no {runfolder.MODEL_TFLITE} in {run} (run `python -m convert` to compare)")
        return 0
    expected = load_expected(run)
    try:
        check_info(info, expected, virtual_hint or FLASH_HINT)
    except DeviceError:
        print(f"run folder    {expected.model_hash} ({expected.path}): MISMATCH")
        raise
    print(f"run folder    {expected.model_hash} ({expected.path}): matches")
    return 0
