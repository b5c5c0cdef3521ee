"""A simulated serial link for the virtual board: bandwidth, latency, faults.

Each direction is a ``DelayLine``: bytes enter at a time, leave when the wire has carried
them (serialised at the bandwidth) plus the one-way latency. The two directions are
independent, like the two pipes of a USB CDC link.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

# USB full speed: about 1.2 MB/s of payload after protocol overhead, about 1 ms per
# direction (one USB frame): 12 Mbit/s signalling less packet and protocol overhead.
LINK_PRESETS: dict[str, tuple[float, float]] = {"usb-fs": (1.2e6, 1.0)}
# Garbage bursts: lengths drawn in this range (bytes); long enough to span a frame header.
GARBAGE_MIN_BYTES = 4
GARBAGE_MAX_BYTES = 48


class DelayLine:
    """Bytes in at ``now``; out once serialised at ``bandwidth`` and delayed by ``latency_s``."""

    def __init__(self, bandwidth: float | None, latency_s: float) -> None:
        self._per_byte = 0.0 if not bandwidth else 1.0 / bandwidth
        self._latency = latency_s
        self._wire_free = 0.0
        self._queue: deque[tuple[float, bytes]] = deque()

    def push(self, data: bytes, now: float) -> None:
        # Each frame arrives when its own last byte has crossed the wire: a burst of frames
        # written at once must not reach the device as one late lump.
        self._wire_free = max(now, self._wire_free)
        pieces = data.split(b"\x00")
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
            chunk = piece if i == last else piece + b"\x00"
            if chunk:
                self._wire_free += len(chunk) * self._per_byte
                self._queue.append((self._wire_free + self._latency, chunk))

    def next_due(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def pop_due(self, now: float) -> bytes:
        out = []
        while self._queue and self._queue[0][0] <= now:
            out.append(self._queue.popleft()[1])
        return b"".join(out)


@dataclass(frozen=True)
class FaultConfig:
    flip_rate: float = 0.0  # probability per byte that one bit is flipped
    drop_rate: float = 0.0  # probability per byte that it is lost
    garbage_every: int = 0  # a burst of random bytes after every N-th frame (0 = never)
    reset_after: int = 0  # simulated power cycle after the N-th received frame (0 = never)
    stall_after: int = 0  # the device freezes once after the N-th received frame...
    stall_ms: float = 0.0  # ...for this long
    seed: int = 0

    @property
    def corrupts(self) -> bool:
        return self.flip_rate > 0 or self.drop_rate > 0 or self.garbage_every > 0


class Corrupter:
    """Bit flips, dropped bytes and garbage bursts on one direction of the link."""

    def __init__(self, config: FaultConfig, rng: np.random.Generator) -> None:
        self._c = config
        self._rng = rng
        self._frames = 0
        self.flips = 0
        self.drops = 0
        self.bursts = 0

    def garbage(self) -> bytes:
        n = int(self._rng.integers(GARBAGE_MIN_BYTES, GARBAGE_MAX_BYTES + 1))
        self.bursts += 1
        return self._rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()

    def apply(self, data: bytes) -> bytes:
        if not data:
            return data
        c, rng = self._c, self._rng
        if c.garbage_every:
            data = self._with_garbage(data)
        if c.flip_rate:
            k = int(rng.binomial(len(data), c.flip_rate))
            if k:
                buf = np.frombuffer(data, dtype=np.uint8).copy()
                where = rng.integers(0, len(buf), size=k)
                buf[where] ^= (1 << rng.integers(0, 8, size=k)).astype(np.uint8)
                data = buf.tobytes()
                self.flips += k
        if c.drop_rate:
            k = int(rng.binomial(len(data), c.drop_rate))
            if k:
                keep = np.ones(len(data), dtype=bool)
                keep[rng.integers(0, len(data), size=k)] = False
                self.drops += int((~keep).sum())
                data = np.frombuffer(data, dtype=np.uint8)[keep].tobytes()
        return data

    def _with_garbage(self, data: bytes) -> bytes:
        """Insert a burst after every ``garbage_every``-th delimiter."""
        every = self._c.garbage_every
        ends = data.count(0)
        if (self._frames % every) + ends < every:
            self._frames += ends
            return data
        parts, start = [], 0
        for _ in range(ends):
            pos = data.index(0, start) + 1
            parts.append(data[start:pos])
            self._frames += 1
            if self._frames % every == 0:
                parts.append(self.garbage())
            start = pos
        parts.append(data[start:])
        return b"".join(parts)
