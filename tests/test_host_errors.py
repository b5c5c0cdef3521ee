"""Port trouble through real ptys: missing, busy and silent ports give one line and a non-zero exit fast."""

from __future__ import annotations

import os
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from conftest import run_tool

from common.errors import DeviceError
from host_tools.ports import ARDUINO_VID, PortEntry, auto_port

# A failing command must give up well within this (the handshake alone takes ~3 s).
BOUND_S = 15.0


@pytest.fixture
def silent_pty() -> Iterator[str]:
    """A pty nobody answers: what a board without firmware looks like."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def _one_line_error(args: list[str]) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = run_tool("host_tools", *args, timeout=60, check=False)
    elapsed = time.monotonic() - start
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.returncode, lines[0], elapsed


def test_missing_port(tmp_path: Path) -> None:
    code, line, elapsed = _one_line_error(
        ["info", "--port", str(tmp_path / "ttyNOPE"), "--run", str(tmp_path)]
    )
    assert code == 5
    assert "not found" in line and "python -m host_tools ports" in line
    assert elapsed < BOUND_S


def test_busy_port(silent_pty: str, tmp_path: Path) -> None:
    holder = serial.Serial(silent_pty, exclusive=True)
    try:
        code, line, elapsed = _one_line_error(["info", "--port", silent_pty, "--run", str(tmp_path)])
    finally:
        holder.close()
    assert code == 5
    assert "is busy" in line and "serial monitor" in line
    assert elapsed < BOUND_S


def test_silent_device_info(silent_pty: str, tmp_path: Path) -> None:
    code, line, elapsed = _one_line_error(["info", "--port", silent_pty, "--run", str(tmp_path)])
    assert code == 5
    assert "no answer" in line
    assert elapsed < BOUND_S


@pytest.mark.slow
def test_silent_device_evaluate(silent_pty: str, host_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for item in host_run.iterdir():  # a complete converted run folder: only the device is missing
        if item.is_file():
            (run / item.name).write_bytes(item.read_bytes())
    code, line, elapsed = _one_line_error(
        ["evaluate", "--port", silent_pty, "--run", str(run), "--no-progress"]
    )
    assert code == 5 and "no answer" in line
    assert elapsed < BOUND_S
    assert not (run / "device_eval.json").exists()


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    proc = run_tool("host_tools", "virtual-board", "--run", str(tmp_path), "--flip-rate", "2", check=False)
    assert proc.returncode == 2 and "must lie in 0..1" in proc.stderr


def test_auto_port_picks_the_only_board() -> None:
    other = PortEntry("/dev/ttyS0", "serial", None, None, None)
    board = PortEntry("/dev/ttyACM0", "Nano 33 BLE", ARDUINO_VID, 0x805A, "X")
    assert auto_port([other, board]) == "/dev/ttyACM0"
    with pytest.raises(DeviceError, match=r"no Arduino board found.*ttyS0"):
        auto_port([other])
    with pytest.raises(DeviceError, match=r"2 Arduino boards attached.*ttyACM0.*ttyACM1"):
        auto_port([board, PortEntry("/dev/ttyACM1", "Nano", ARDUINO_VID, 0x805A, "Y")])


def test_ports_command_lists_or_says_none() -> None:
    proc = run_tool("host_tools", "ports", timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip()


def test_ports_listing_marks_nano_33_ble_boards() -> None:
    from host_tools.ports import describe

    nano = PortEntry("/dev/ttyACM0", "Nano 33 BLE", ARDUINO_VID, 0x805A, "X")
    boot = PortEntry("/dev/ttyACM1", "Nano 33 BLE", ARDUINO_VID, 0x005A, "X")
    other = PortEntry("/dev/ttyUSB0", "CP2102", 0x10C4, 0xEA60, None)
    assert describe(nano).endswith("<- Arduino Nano 33 BLE")
    assert describe(boot).endswith("<- Arduino Nano 33 BLE (bootloader)")
    assert "<-" not in describe(other) and "10c4:ea60" in describe(other)
