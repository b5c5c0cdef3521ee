"""Shared fixtures: one small trained + converted run folder, and virtual boards on real ptys.

The run folder is built once per test session by the real stages (`python -m train`,
`python -m convert`) so every host test and the benchmarks exercise what a user runs.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common import board_sources
from common.childenv import python_env

ROOT = Path(__file__).resolve().parents[1]
# CI sets this so that a test skipped for a missing cross compiler, QEMU or board sources fails
# instead: there, everything must run.
REQUIRE_ALL_ENV = "TINYML_REQUIRE_ALL"
CROSS_CXX = "arm-none-eabi-g++"
QEMU = "qemu-system-arm"
# Few epochs: the tests need a real int8 model, not a good one.
FIXTURE_EPOCHS = 2
BOARD_START_TIMEOUT_S = 180.0


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; with ``TINYML_REQUIRE_ALL=1`` (CI) fail instead."""
    if os.environ.get(REQUIRE_ALL_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL_ENV}=1 requires it)")
    pytest.skip(reason)


@pytest.fixture
def cross_compiler() -> str:
    """The Cortex-M cross compiler's name; skips (CI: fails) without it."""
    if shutil.which(CROSS_CXX) is None:
        skip_or_fail(f"needs the cross compiler: {CROSS_CXX} not found (Debian: gcc-arm-none-eabi "
                     "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib)")
    return CROSS_CXX


@pytest.fixture
def qemu() -> str:
    """The Cortex-M4 emulator's name; skips (CI: fails) without it."""
    if shutil.which(QEMU) is None:
        skip_or_fail(f"needs {QEMU} (Debian: qemu-system-arm)")
    return QEMU


@pytest.fixture
def board_library() -> Path:
    """The board's TFLM library root; skips (CI: fails) when it is not on this machine."""
    found = board_sources.find_library()
    if found is None:
        skip_or_fail(f"needs the board's sources: {board_sources.FETCH_HINT}")
    assert found is not None
    return found


@pytest.fixture
def board_core() -> Path:
    """The Arduino Mbed core root; skips (CI: fails) when it is not on this machine."""
    found = board_sources.find_core()
    if found is None:
        skip_or_fail(f"needs the board's sources: {board_sources.FETCH_HINT}")
    assert found is not None
    return found


def tool_env() -> dict[str, str]:
    return python_env()


def run_tool(*args: str, timeout: float = 600.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the repository root, output captured."""
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc


def build_run(run: Path, epochs: int = FIXTURE_EPOCHS) -> Path:
    run_tool("train", "--run", str(run), "--dataset", "mnist5k", "--model", "dnn", "--epochs", str(epochs))
    run_tool("convert", "--run", str(run), "--firmware-dir", str(run / "generated"))
    return run


@pytest.fixture(scope="session")
def host_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a trained dnn, its int8 model and generated firmware files (read-only)."""
    return build_run(tmp_path_factory.mktemp("host_run") / "run")


@pytest.fixture
def run_copy(host_run: Path, tmp_path: Path) -> Path:
    """A private copy of the shared run folder, for tests that write results into it."""
    dst = tmp_path / "run"
    dst.mkdir()
    for item in host_run.iterdir():
        if item.is_file():
            (dst / item.name).write_bytes(item.read_bytes())
        elif item.is_dir():  # the generated firmware files belong to the run folder
            shutil.copytree(item, dst / item.name)
    return dst


class BoardProcess:
    """A `python -m host_tools virtual-board` child; ``port`` is its pty."""

    def __init__(self, run: Path, args: tuple[str, ...]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host_tools", "virtual-board", "--run", str(run), *args],
            cwd=ROOT,
            env=tool_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        self.port = self._first_line()

    def _first_line(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + BOARD_START_TIMEOUT_S
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                byte = os.read(self.proc.stdout.fileno(), 1)
                if not byte:
                    break
                line += byte
        if not line.strip():
            self.stop()
            raise AssertionError(f"virtual board did not start: {self.stderr()}")
        return line.decode().strip()

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def start_board() -> Iterator[Callable[..., BoardProcess]]:
    """Start virtual boards (``start_board(run, *args)``); all are stopped after the test."""
    boards: list[BoardProcess] = []

    def start(run: Path, *args: str) -> BoardProcess:
        board = BoardProcess(run, args)
        boards.append(board)
        return board

    yield start
    for board in boards:
        board.stop()
