"""The emulated Cortex-M4 board: the firmware image under QEMU's ``mps2-an386``, served on a pty.

``emulated_board(generated_dir)`` builds the image (``common.emulated_image``, cached),
starts ``qemu-system-arm -M mps2-an386 -icount shift=0 -nographic -chardev pty,id=link
-semihosting-config enable=on,chardev=link ...`` and yields the pty QEMU reports; the host
then talks to it over the same protocol and pyserial as to a board. ``-icount shift=0`` makes
QEMU retire one instruction per nanosecond of virtual time, so the board's SysTick counts
instructions (the board layer says how).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common import runfolder
from common.emulated_image import QEMU, EmulatedImage, QemuMissing, build_image, require_qemu
from common.errors import DataError, DeviceError, ToolError

__all__ = ["BOARD_NAME", "QEMU", "Emulator", "QemuMissing", "emulated_board", "generated_dir_for",
           "is_emulated", "qemu_command", "serve_forever", "start_emulator"]

MACHINE = "mps2-an386"
# What firmware/boards/mps2_an386/board.cpp reports as its board name.
BOARD_NAME = "emulated Cortex-M4 (QEMU)"
# The clock the emulated board scales its instruction counts to (INFO clock_hz): the Nano's.
REPORTED_HZ = 64_000_000
# QEMU prints the pty it opened within a second; a loaded machine may need longer.
QEMU_START_TIMEOUT_S = 30.0
# QEMU exits at once on SIGTERM; a hung one is killed after this long.
QEMU_STOP_TIMEOUT_S = 5.0
# `emulate` checks this often whether QEMU is still running.
SERVE_POLL_S = 0.5
# A monitor command (reset, pause) answers at once.
MONITOR_TIMEOUT_S = 10.0
MONITOR_PROMPT = b"(qemu) "
# The chardev that carries the protocol: the board's semihosting console (board.cpp says why
# not its UART).
LINK_CHARDEV = "link"
PTY_LINE = re.compile(rb"char device redirected to (\S+) \(label " + LINK_CHARDEV.encode() + rb"\)")


def is_emulated(board: str) -> bool:
    return board == BOARD_NAME


def generated_dir_for(run: Path, generated: Path | None) -> Path:
    """--generated, else the run folder's own generated files."""
    directory = Path(generated) if generated is not None else Path(run) / runfolder.GENERATED_DIR
    if not (directory / "model_settings.h").is_file():
        raise DataError(f"{directory} holds no generated model files: "
                        f"run `python -m convert --run {run}` first")
    return directory


def qemu_command(elf: Path, monitor: Path | None = None) -> list[str]:
    # The semihosting console (the protocol) on a pty, both UARTs discarded (UART1 has TFLM's
    # log text); the QEMU monitor only on request (a unix socket for tests that reset or pause
    # the board), so nothing reads stdin.
    monitor_arg = f"unix:{monitor},server=on,wait=off" if monitor is not None else "none"
    return [QEMU, "-M", MACHINE, "-icount", "shift=0", "-nographic", "-monitor", monitor_arg,
            "-chardev", f"pty,id={LINK_CHARDEV}", "-semihosting-config", f"enable=on,chardev={LINK_CHARDEV}",
            "-serial", "null", "-serial", "null", "-kernel", str(elf)]


@dataclass
class Emulator:
    """A running QEMU: its pty, and its monitor when one was asked for."""

    proc: subprocess.Popen[bytes]
    port: str
    monitor_path: Path | None

    def monitor(self, command: str) -> str:
        """Run one QEMU monitor command (``system_reset``, ``stop``, ``cont``); its output."""
        if self.monitor_path is None:
            raise ToolError("this emulator was started without a monitor")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(MONITOR_TIMEOUT_S)
            sock.connect(str(self.monitor_path))
            _read_until_prompt(sock)
            sock.sendall(command.encode() + b"\n")
            return _read_until_prompt(sock)


def _read_until_prompt(sock: socket.socket) -> str:
    seen = b""
    while not seen.endswith(MONITOR_PROMPT):
        chunk = sock.recv(4096)  # bounded by the socket timeout
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


@contextlib.contextmanager
def emulated_board(generated_dir: Path, image: EmulatedImage | None = None) -> Iterator[str]:
    """Build the image for ``generated_dir`` (unless given), start QEMU, yield its pty, stop it."""
    with start_emulator(generated_dir, image) as emulator:
        yield emulator.port


@contextlib.contextmanager
def start_emulator(generated_dir: Path, image: EmulatedImage | None = None,
                   monitor: Path | None = None) -> Iterator[Emulator]:
    """Like ``emulated_board``, with the running QEMU (and a monitor socket at ``monitor``)."""
    require_qemu()
    image = image if image is not None else build_image(generated_dir)
    proc = subprocess.Popen(qemu_command(image.elf, monitor), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        port = _read_pty(proc)
        # Later output (warnings) must not fill the pipe and block QEMU.
        threading.Thread(target=_drain, args=(proc,), daemon=True).start()
        yield Emulator(proc, port, monitor)
    finally:
        stop(proc)


def _drain(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while proc.stdout is not None and proc.stdout.read(4096):
            pass


def _read_pty(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + QEMU_START_TIMEOUT_S
    seen = b""
    while True:
        match = PTY_LINE.search(seen)
        if match:
            return match.group(1).decode()
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeviceError(f"{QEMU} did not open its serial pty within {QEMU_START_TIMEOUT_S:.0f} s")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
        if ready and not chunk:
            proc.wait(timeout=QEMU_STOP_TIMEOUT_S)
            lines = seen.decode(errors="replace").strip().splitlines()
            last = lines[-1] if lines else f"exit code {proc.returncode}"
            raise DeviceError(f"{QEMU} failed to start: {last}")
        seen += chunk


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=QEMU_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def serve_forever(run: Path, generated: Path | None, announce: Callable[[str], None]) -> None:
    """``emulate``: serve until SIGTERM / Ctrl-C (QEMU is stopped on the way out), or until QEMU exits."""
    directory = generated_dir_for(run, generated)
    stopping = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with start_emulator(directory) as emulator:
            announce(emulator.port)
            while not stopping and emulator.proc.poll() is None:
                time.sleep(SERVE_POLL_S)
            if emulator.proc.poll() is not None:
                raise DeviceError(f"{QEMU} exited with code {emulator.proc.returncode}")
    finally:
        signal.signal(signal.SIGTERM, previous)
