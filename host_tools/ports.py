"""Finding the board: serial port listing and ``--port auto``."""

from __future__ import annotations

from dataclasses import dataclass

from serial.tools import list_ports

from common.errors import DeviceError

# Arduino's USB vendor ID; the Nano 33 BLE (Sense) enumerates with it (PID 0x805A, or
# 0x005A in the bootloader).
ARDUINO_VID = 0x2341
NANO33_PIDS = {0x805A: "Arduino Nano 33 BLE", 0x005A: "Arduino Nano 33 BLE (bootloader)"}


@dataclass(frozen=True)
class PortEntry:
    device: str
    description: str
    vid: int | None
    pid: int | None
    serial_number: str | None

    @property
    def is_board(self) -> bool:
        return self.vid == ARDUINO_VID

    @property
    def board_name(self) -> str:
        if self.pid is not None and self.pid in NANO33_PIDS:
            return NANO33_PIDS[self.pid]
        return "Arduino board" if self.is_board else ""


def scan() -> list[PortEntry]:
    return [
        PortEntry(p.device, p.description or "", p.vid, p.pid, p.serial_number)
        for p in sorted(list_ports.comports(), key=lambda p: p.device)
    ]


def describe(entry: PortEntry) -> str:
    ids = f"{entry.vid:04x}:{entry.pid:04x}" if entry.vid is not None and entry.pid is not None else "-"
    mark = f"  <- {entry.board_name}" if entry.is_board else ""
    return f"{entry.device:<20} {ids:<10} {entry.description}{mark}"


def auto_port(entries: list[PortEntry] | None = None) -> str:
    """The only Arduino board attached, or a one-line error listing what is there."""
    entries = scan() if entries is None else entries
    boards = [e for e in entries if e.is_board]
    if len(boards) == 1:
        return boards[0].device
    if not boards:
        others = ", ".join(e.device for e in entries) or "no serial ports at all"
        raise DeviceError(
            f"no Arduino board found (USB VID {ARDUINO_VID:04x}; ports: {others}): plug it in "
            "or pass --port PORT (or --port virtual)"
        )
    raise DeviceError(
        f"{len(boards)} Arduino boards attached ({', '.join(b.device for b in boards)}): "
        "choose one with --port PORT"
    )
