"""Robustness of the C++ core (host library): random and damaged byte streams never crash it,
every reply is a well-formed frame, the answers equal the Python reference device's, and a
0x00 followed by a clean frame always gets that frame's correct answer."""

from __future__ import annotations

import struct

import pytest
from core_harness import MockBoard, write_fake_generated
from core_reference import (
    ERROR,
    HELLO,
    INFER,
    INFO,
    MNIST_LIKE,
    NACK,
    RESULT,
    SEQ_UNKNOWN,
    TINY,
    Info,
    RefDevice,
    cobs_decode_stream,
    crc32,
    frame,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_tools.hostlib import HostCore

INFOS = {"mnist_like": MNIST_LIKE, "tiny": TINY}
FUZZ_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> HostCore:
    root = tmp_path_factory.mktemp("hostlib")
    return HostCore.load(write_fake_generated(root / "model"), root / "build")


def reply_frames(stream: bytes) -> list[tuple[int, int, bytes]]:
    """Split device output into (type, seq, payload); fails the test on any malformed frame."""
    assert stream == b"" or stream.endswith(b"\x00"), "replies end with a delimiter"
    frames = []
    for encoded in stream.split(b"\x00")[:-1]:
        assert encoded, "no empty frames in replies"
        event, raw = cobs_decode_stream(encoded, 1 << 17)
        assert event == "frame"
        assert len(raw) >= 9
        ver_type, seq, length = struct.unpack_from("<BHH", raw)
        assert length + 9 == len(raw)
        assert crc32(raw[:-4]) == struct.unpack_from("<I", raw, len(raw) - 4)[0]
        assert ver_type >> 4 == 1
        assert ver_type & 0xF in (INFO, RESULT, NACK, ERROR)
        frames.append((ver_type & 0xF, seq, raw[5:-4]))
    return frames


def payload_for(info: Info, data: st.DataObject) -> bytes:
    n = info.input.nbytes
    return data.draw(st.binary(min_size=n, max_size=n))


@st.composite
def valid_frame(draw: st.DrawFn, info: Info) -> bytes:
    seq = draw(st.integers(0, 0xFFFE))
    if draw(st.booleans()):
        return frame(HELLO, seq)
    n = info.input.nbytes
    return frame(INFER, seq, draw(st.binary(min_size=n, max_size=n)))


@st.composite
def damaged(draw: st.DrawFn, info: Info) -> bytes:
    """A valid frame with one kind of damage, as a lossy USB link would deliver it."""
    wire = bytearray(draw(valid_frame(info)))
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "drop", "burst", "none"]))
    pos = draw(st.integers(0, len(wire) - 1))
    if kind == "flip":
        wire[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del wire[pos:]
    elif kind == "insert":
        wire[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    elif kind == "drop":
        del wire[pos:pos + draw(st.integers(1, 64))]
    elif kind == "burst":
        wire[pos:pos] = draw(st.binary(min_size=16, max_size=1200))
    return bytes(wire)


def chunks(info: Info) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), valid_frame(info), damaged(info), st.just(b"\x00"))


@FUZZ_SETTINGS
@given(data=st.data(), name=st.sampled_from(sorted(INFOS)))
def test_any_stream_is_answered_like_the_reference(core: HostCore, data: st.DataObject, name: str) -> None:
    info = INFOS[name]
    board, reference = MockBoard(core, info), RefDevice(info)
    for chunk in data.draw(st.lists(chunks(info), max_size=12)):
        got = board.feed(chunk)
        reply_frames(got)
        assert got == reference.feed(chunk)
    assert board.runs == reference.runs


@FUZZ_SETTINGS
@given(data=st.data(), name=st.sampled_from(sorted(INFOS)))
def test_a_delimiter_and_a_clean_frame_resynchronise(core: HostCore, data: st.DataObject, name: str) -> None:
    info = INFOS[name]
    board = MockBoard(core, info)
    noise = st.one_of(st.binary(max_size=400), damaged(info))
    for chunk in data.draw(st.lists(noise, min_size=1, max_size=6)):
        board.feed(chunk)
    board.feed(b"\x00")
    seq = data.draw(st.integers(0, 0xFFFE))
    # HELLO's answer does not depend on what came before, so it is known exactly.
    assert reply_frames(board.feed(frame(HELLO, seq))) == [(INFO, seq, info.payload())]
    request = frame(INFER, (seq + 1) % 0xFFFF, payload_for(info, data))
    assert board.feed(request) == RefDevice(info).feed(request)


@pytest.mark.parametrize("name", sorted(INFOS))
def test_truncation_at_every_offset_then_recovery(core: HostCore, name: str) -> None:
    info = INFOS[name]
    request = frame(INFER, 77, bytes((i * 7 + 1) & 0xFF for i in range(info.input.nbytes)))
    hello = frame(HELLO, 5)
    board = MockBoard(core, info)
    assert board.feed(b"\x00") == b""  # cut 0: only an empty frame
    for cut in range(1, len(request) - 1):  # the last byte is the delimiter
        board.core.reset()
        partial = reply_frames(board.feed(request[:cut] + b"\x00"))
        assert [(kind, seq) for kind, seq, _ in partial] == [(NACK, SEQ_UNKNOWN)], f"cut at {cut}"
        assert reply_frames(board.feed(hello)) == [(INFO, 5, info.payload())], f"cut at {cut}"
    assert [f[:2] for f in reply_frames(board.feed(request))] == [(RESULT, 77)]
