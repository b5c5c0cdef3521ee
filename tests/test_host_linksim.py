"""The virtual board's link simulation: delivery times and fault injection."""

from __future__ import annotations

import numpy as np
import pytest

from host_tools.linksim import Corrupter, DelayLine, FaultConfig


def test_delay_line_serialises_frames_and_adds_latency() -> None:
    line = DelayLine(bandwidth=1000.0, latency_s=0.5)  # 1 ms per byte
    line.push(b"\x01" * 99 + b"\x00" + b"\x02" * 49 + b"\x00", now=10.0)
    # The first frame is due once its own 100 bytes crossed, not after the whole burst.
    assert line.next_due() == pytest.approx(10.0 + 0.1 + 0.5)
    assert line.pop_due(10.59) == b""
    assert line.pop_due(10.61) == b"\x01" * 99 + b"\x00"
    assert line.next_due() == pytest.approx(10.0 + 0.15 + 0.5)
    # A push while the wire is still busy queues behind it.
    line.push(b"\x03\x00", now=10.05)
    assert line.pop_due(11.0) == b"\x02" * 49 + b"\x00" + b"\x03\x00"
    assert line.next_due() is None


def test_delay_line_without_bandwidth_is_latency_only() -> None:
    line = DelayLine(bandwidth=None, latency_s=0.001)
    line.push(b"abc", now=1.0)
    assert line.pop_due(1.0) == b"" and line.pop_due(1.001) == b"abc"


def test_flips_and_drops_follow_their_rates() -> None:
    data = bytes(range(1, 256)) * 400  # 102,000 bytes
    flipper = Corrupter(FaultConfig(flip_rate=1e-3), np.random.default_rng(1))
    flipped = flipper.apply(data)
    assert len(flipped) == len(data)
    changed = sum(a != b for a, b in zip(data, flipped, strict=True))
    assert 0 < changed <= flipper.flips and 60 < flipper.flips < 150
    dropper = Corrupter(FaultConfig(drop_rate=1e-3), np.random.default_rng(2))
    dropped = dropper.apply(data)
    assert len(dropped) == len(data) - dropper.drops and 60 < dropper.drops < 150


def test_garbage_bursts_follow_every_nth_frame_across_chunks() -> None:
    corrupter = Corrupter(FaultConfig(garbage_every=3), np.random.default_rng(3))
    frames = [bytes([i + 1]) * 5 + b"\x00" for i in range(7)]
    out = corrupter.apply(b"".join(frames[:2])) + corrupter.apply(b"".join(frames[2:]))
    assert corrupter.bursts == 2  # after frames 3 and 6
    after_third = out.index(frames[2]) + len(frames[2])
    burst_end = out.index(frames[3])
    assert burst_end > after_third  # a burst sits between frames 3 and 4
    assert out[: out.index(frames[2])] == b"".join(frames[:2])  # nothing before frame 3
    assert out.endswith(frames[6]) and len(out) > len(b"".join(frames)) + 2 * 3
