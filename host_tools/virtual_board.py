"""The virtual board: the firmware core on the host, behind a pseudo-terminal.

The core (framing, dispatcher, result cache) is the firmware's own C++ built into a shared
library by ``host_tools.hostlib``; the engine is the firmware's own TFLM adapter over the
board's TFLM library, both built for the host (``--engine board``), or the ``tflite-micro``
Python runtime on the model bytes compiled from the generated header (``--engine python``).
Bytes move between the pty and the core in whole chunks; an optional ``linksim`` layer adds
bandwidth, latency and faults.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import board_sources, runfolder
from common.errors import ModelError, first_line
from host_tools import hostlib
from host_tools.linksim import Corrupter, DelayLine, FaultConfig

# Longest wait in the serving loop: bounds how late a stop request is noticed.
POLL_S = 0.1
READ_CHUNK = 1 << 16
# The Python runtime lays tensors out for x86-64, which needs more arena than the 32-bit
# board the generated size was chosen for; a too-small arena crashes the process.
HOST_ARENA_FACTOR = 2
HOST_ARENA_MIN = 16 * 1024
# How far into the frame after the N-th a simulated reset strikes.
RESET_INTO_FRAME_BYTES = 100


class TflmEngine:
    """Runs one inference on bytes handed over by the core's engine callback."""

    def __init__(self, model: bytes, arena_size: int, min_invoke_s: float = 0.0) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self._model = model
        # Simulates a slower board: every Invoke() takes at least this long.
        self._min_invoke_s = min_invoke_s
        self.arena_size = max(HOST_ARENA_MIN, HOST_ARENA_FACTOR * arena_size)
        try:
            self._interp = runtime.Interpreter.from_bytes(model, arena_size=self.arena_size)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(
                f"TFLM cannot load the generated model: {first_line(exc)}"
            ) from None
        detail = self._interp.get_input_details(0)
        self._shape = tuple(int(d) for d in detail["shape"])
        self.input_bytes = int(np.prod(self._shape))
        # The pybind object directly: the Python wrappers only re-check arguments per call.
        self._raw = self._interp._interpreter
        self._ptrs: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._in_view = np.zeros(self._shape, dtype=np.int8)
        self._out_view = np.zeros(0, dtype=np.int8)

    def _views(self, in_ptr: int, in_len: int, out_ptr: int, out_len: int) -> None:
        """numpy views on the core's static buffers; rebuilt only if the core hands other ones."""
        in_buffer = memoryview((ctypes.c_int8 * in_len).from_address(in_ptr))
        self._in_view = np.frombuffer(in_buffer, dtype=np.int8).reshape(self._shape)
        out_buffer = memoryview((ctypes.c_int8 * out_len).from_address(out_ptr))
        self._out_view = np.frombuffer(out_buffer, dtype=np.int8)
        self._ptrs = (in_ptr, in_len, out_ptr, out_len)

    def invoke(self, in_ptr: int, in_len: int, out_ptr: int, out_len: int) -> int:
        """The core's engine callback: 0 on success, like TFLM's ``kTfLiteOk``.

        Runs per sample on the virtual board's hot path, so it reads and writes the core's
        buffers in place instead of copying them through Python bytes.
        """
        if in_len != self.input_bytes:
            return 1
        if (in_ptr, in_len, out_ptr, out_len) != self._ptrs:
            self._views(in_ptr, in_len, out_ptr, out_len)
        started = time.monotonic() if self._min_invoke_s else 0.0
        try:
            self._raw.SetInputTensor(self._in_view, 0)
            self._raw.Invoke()
            out = self._raw.GetOutputTensor(0)
        except RuntimeError:
            return 1
        if self._min_invoke_s:
            time.sleep(max(0.0, started + self._min_invoke_s - time.monotonic()))
        if out.size != out_len:
            return 1
        self._out_view[:] = out.reshape(-1)
        return 0


@dataclass(frozen=True)
class LinkConfig:
    bandwidth: float | None = None  # bytes per second, each direction; None = unlimited
    latency_ms: float = 0.0  # one way

    @property
    def simulated(self) -> bool:
        return bool(self.bandwidth) or self.latency_ms > 0


def _frame_ends(data: bytes, previous_was_delimiter: bool) -> np.ndarray:
    """Offsets just past each 0x00 that ends a frame: a delimiter right after another one (the
    host's flush before a handshake or a retransmission) ends an empty frame, which the
    device ignores, so it is not counted."""
    raw = np.frombuffer(data, dtype=np.uint8)
    zero = raw == 0
    before = np.concatenate(([previous_was_delimiter], zero[:-1]))
    return np.flatnonzero(zero & ~before) + 1


class BoardLoop:
    """Moves bytes between a pty master and the core; injects the configured faults.

    ``feed`` and ``reset`` are the core's; replies arrive through ``on_reply`` (the core's
    write callback), which only appends to a list so the C++ side returns at once.
    """

    def __init__(
        self,
        feed: Callable[[bytes], None],
        reset: Callable[[], None],
        link: LinkConfig | None = None,
        faults: FaultConfig | None = None,
    ) -> None:
        link = link or LinkConfig()
        faults = faults or FaultConfig()
        self._feed = feed
        self._reset = reset
        self._faults = faults
        self._replies: list[bytes] = []
        rng = np.random.default_rng(faults.seed)
        self._to_device = Corrupter(faults, rng) if faults.corrupts else None
        self._to_host = Corrupter(faults, rng) if faults.corrupts else None
        latency = link.latency_ms / 1000.0
        self._in_line = DelayLine(link.bandwidth, latency) if link.simulated else None
        self._out_line = DelayLine(link.bandwidth, latency) if link.simulated else None
        self.frames_in = 0
        self._last_was_delimiter = True
        self._fd: int | None = None  # the pty while serving
        self._out = bytearray()  # bytes for the host not yet accepted by the pty
        self.resets = 0
        self._reset_pending = False
        self.stalls = 0

    def on_reply(self, data: bytes) -> None:
        self._replies.append(data)
        if self._fd is not None:
            # Send at once, as a board would: the core may still be busy with queued requests.
            self._send_replies(self._fd)

    def _send_replies(self, fd: int) -> None:
        """Replies so far -> host-bound corruption -> link delay (if simulated) -> the pty."""
        if self._replies:
            reply = b"".join(self._replies)
            self._replies.clear()
            if self._to_host is not None:
                reply = self._to_host.apply(reply)
            if self._out_line is not None:
                self._out_line.push(reply, time.monotonic())
            else:
                self._out += reply
        if self._out_line is not None:
            self._out += self._out_line.pop_due(time.monotonic())
        if self._out:
            with contextlib.suppress(BlockingIOError):
                del self._out[: os.write(fd, self._out)]

    def _deliver(self, data: bytes) -> None:
        if self._to_device is not None:
            data = self._to_device.apply(data)
        f = self._faults
        if self._reset_pending and data:
            # The frame that triggers the reset ended a chunk: the power cycle strikes in the
            # next frame as soon as its first bytes arrive, as it would on a board.
            part = data[:RESET_INTO_FRAME_BYTES]
            cut = part.find(0) if 0 in part else len(part)
            self._feed(data[:cut])
            self._reset_pending = False
            self.resets += 1
            self._reset()
            data = data[cut:]
            if not data:
                return
        if not (f.reset_after or f.stall_after):
            self._feed(data)
            return
        # Split at the frame that triggers a reset or stall, so it happens between frames.
        while data:
            ends = _frame_ends(data, self._last_was_delimiter)
            last = self.frames_in + len(ends)
            events = [n for n in (f.reset_after, f.stall_after) if n and self.frames_in < n <= last]
            if not events:
                self.frames_in += len(ends)
                self._last_was_delimiter = data[-1] == 0
                self._feed(data)
                return
            cut = int(ends[min(events) - self.frames_in - 1])
            self.frames_in = min(events)
            if self.frames_in == f.reset_after:
                # A real power cycle hits mid-frame: feed part of the next frame, which is then lost.
                part = data[cut : cut + RESET_INTO_FRAME_BYTES]
                cut += part.find(0) if 0 in part else len(part)
            self._feed(data[:cut])
            self._last_was_delimiter = data[cut - 1] == 0
            if self.frames_in == f.reset_after and cut == len(data):
                self._reset_pending = True  # struck by the next chunk's first bytes
            elif self.frames_in == f.reset_after:
                self.resets += 1
                self._reset()
            if self.frames_in == f.stall_after:
                self.stalls += 1
                time.sleep(f.stall_ms / 1000.0)
            data = data[cut:]

    def serve(self, fd: int, stop: Callable[[], bool]) -> None:
        os.set_blocking(fd, False)
        in_line, out_line = self._in_line, self._out_line
        self._fd = fd
        while not stop():
            timeout = POLL_S
            for line in (in_line, out_line):
                due = line.next_due() if line is not None else None
                if due is not None:
                    timeout = min(timeout, max(0.0, due - time.monotonic()))
            readable, _, _ = select.select([fd], [fd] if self._out else [], [], timeout)
            if readable:
                try:
                    data = os.read(fd, READ_CHUNK)
                except BlockingIOError:
                    data = b""
                except OSError:  # EIO: no client has the port open right now
                    data = b""
                    time.sleep(POLL_S)
                if data:
                    if in_line is not None:
                        in_line.push(data, time.monotonic())
                    else:
                        self._deliver(data)
            if in_line is not None and (due_in := in_line.pop_due(time.monotonic())):
                self._deliver(due_in)
            self._send_replies(fd)
        self._fd = None


def open_pty() -> tuple[int, int, str]:
    """A raw pty: (master fd, slave fd, slave path).

    The caller keeps the slave fd open for the board's lifetime: otherwise the master sees
    EIO whenever the client closes the port, and bytes written meanwhile are lost.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def generated_dir_for(run: Path, generated: Path | None) -> Path:
    """--generated, else the run folder's own generated files (never a path read from a file)."""
    return generated if generated is not None else run / runfolder.GENERATED_DIR


ENGINES = ("board", "python")


def default_engine() -> str:
    """The board's own TFLM when its sources are on this machine, else the Python runtime."""
    return "board" if board_sources.find_library() is not None else "python"


def engine_label(engine: str) -> str:
    return ("the firmware's TFLM adapter on the board's TFLM library (host build)" if engine == "board"
            else "the tflite-micro Python runtime (not the board's library)")


def start_core(generated: Path, min_invoke_s: float = 0.0, engine: str = "board",
               write_cb: Callable[[bytes], None] | None = None) -> hostlib.HostCore:
    """Build/load the core for the generated model, wire an engine into it and start the device.

    ``board``: the firmware's own adapter (``tflm_engine.cpp``) over the board's TFLM library,
    both compiled for the host, so the virtual board computes what the board computes.
    ``python``: the ``tflite-micro`` runtime fed with the generated header's model bytes (a
    newer TFLM: a cross-check, not the reference).
    """
    replies = write_cb if write_cb is not None else (lambda _data: None)
    if engine == "board":
        core = hostlib.HostCore(hostlib.build_board_library(generated))
        core.init_board_engine(replies, min_invoke_s=min_invoke_s)
        return core
    core = hostlib.HostCore.load(generated)
    python = TflmEngine(core.model_data(), core.arena_size, min_invoke_s)
    if python.input_bytes != core.input_bytes:
        raise ModelError(
            f"generated settings say {core.input_bytes} input bytes, the model data has "
            f"{python.input_bytes}: re-run `python -m convert`"
        )
    core.init_model(python.invoke, replies, arena_used=0)  # 0: the Python runtime does not say
    return core


def serve(
    run: Path,
    generated: Path | None,
    link: LinkConfig,
    faults: FaultConfig,
    announce: Callable[[str], None],
    min_invoke_s: float = 0.0,
    engine: str | None = None,
) -> BoardLoop:
    """Run a virtual board until SIGINT or SIGTERM; ``announce`` gets the pty path first."""
    replies: list[Callable[[bytes], None]] = []
    core = start_core(generated_dir_for(run, generated), min_invoke_s, engine or default_engine(),
                      lambda data: replies[0](data))
    loop = BoardLoop(core.feed, core.reset, link, faults)
    replies.append(loop.on_reply)
    stopping = False

    def stop_handler(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    master, slave, path = open_pty()
    try:
        announce(path)
        loop.serve(master, lambda: stopping)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(master)
        os.close(slave)
    return loop
