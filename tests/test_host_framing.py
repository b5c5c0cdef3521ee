"""Framing and message layer of the host tools: COBS edge cases, CRC, frame checks, vectors."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host_tools.framing import (
    FrameError,
    FrameFault,
    StreamDecoder,
    build_frame,
    build_raw,
    cobs_decode,
    cobs_encode,
    parse_frame,
    parse_raw,
    wire_size,
)
from host_tools.messages import (
    Code,
    ErrorReply,
    Info,
    MessageError,
    MsgType,
    Nack,
    Result,
    decode_reply,
    encode_hello,
    encode_infer,
)

VECTORS = Path(__file__).parent / "vectors" / "protocol_v1.json"


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", b"\x01"),
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    ],
)
def test_cobs_known_encodings(raw: bytes, encoded: bytes) -> None:
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


def test_cobs_block_boundaries() -> None:
    run = bytes(range(1, 255))  # 254 non-zero bytes: exactly one full block
    assert cobs_encode(run) == b"\xff" + run
    assert cobs_encode(run + b"\x00") == b"\xff" + run + b"\x01\x01"
    assert cobs_encode(run[:253]) == b"\xfe" + run[:253]
    assert cobs_encode(run + b"\x01") == b"\xff" + run + b"\x02\x01"
    assert cobs_encode(b"\x00" + run) == b"\x01\xff" + run
    for data in (run, run + b"\x00", run * 3, run[:253] + b"\x00" + run):
        assert cobs_decode(cobs_encode(data)) == data


@given(st.binary(max_size=2000))
def test_cobs_round_trip_has_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert b"\x00" not in encoded
    # At most one code byte per started 254-byte block, and one for empty data.
    assert len(encoded) <= len(data) + max(1, -(-len(data) // 254))
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize("bad", [b"\x05\x11\x22", b"\x03\x11\x00\x22", b"\x02"[:0] + b"\xff\x01"])
def test_cobs_decode_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(FrameError) as err:
        cobs_decode(bad)
    assert err.value.fault is FrameFault.BAD_COBS


def test_crc_is_ieee_crc32() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926
    raw = build_raw(MsgType.HELLO, 7)
    assert raw[:5] == bytes([0x11, 7, 0, 0, 0])
    assert struct.unpack("<I", raw[5:])[0] == zlib.crc32(raw[:5])


def test_frame_sizes_match_protocol_example() -> None:
    frame = encode_infer(1, bytes(range(1, 256)) * 3 + b"\x01" * 19)  # 784 non-zero payload bytes
    assert len(frame) == 798 == wire_size(784)
    assert frame.endswith(b"\x00") and frame.count(0) == 1


def test_parse_frame_round_trip_and_faults() -> None:
    wire = build_frame(MsgType.RESULT, 0xABCD, b"\x01payload")
    frame = parse_frame(wire[:-1])
    assert (frame.version, frame.msg_type, frame.seq, frame.payload) == (
        1,
        MsgType.RESULT,
        0xABCD,
        b"\x01payload",
    )
    raw = build_raw(MsgType.RESULT, 3, b"abc")
    cases = {
        FrameFault.TOO_SHORT: raw[:8],
        FrameFault.BAD_LENGTH: raw[:-1],
        FrameFault.BAD_CRC: raw[:6] + bytes([raw[6] ^ 0x40]) + raw[7:],
    }
    for fault, bad in cases.items():
        with pytest.raises(FrameError) as err:
            parse_raw(bad)
        assert err.value.fault is fault


def test_stream_decoder_splits_on_delimiters_across_chunks() -> None:
    a, b = encode_hello(1), encode_infer(2, b"\x05\x00\x07")
    stream = b"\x00" + a + b"\x00\x00" + b
    decoder = StreamDecoder()
    frames = []
    for i in range(len(stream)):  # one byte at a time: the worst chunking
        frames += decoder.feed(stream[i : i + 1])
    assert [parse_frame(f).seq for f in frames] == [1, 2]
    # A whole stream in one chunk gives the same frames; a trailing partial frame is kept.
    decoder = StreamDecoder()
    assert decoder.feed(stream + a[:3]) == frames
    assert decoder.feed(a[3:]) == [a[:-1]]


def test_stream_decoder_drops_runaway_garbage() -> None:
    decoder = StreamDecoder(max_encoded=100)
    assert decoder.feed(b"\x01" * 500) == []
    assert decoder.oversized == 1
    assert decoder.feed(b"\x00" + encode_hello(9)) == [encode_hello(9)[:-1]]


def _le(value: int, size: int, signed: bool = False) -> bytes:
    return value.to_bytes(size, "little", signed=signed)


def _info_payload(board: bytes = b"nano33ble", message: bytes = b"") -> bytes:
    """An INFO payload laid out by hand at the offsets of docs/protocol.md section 3 (not with
    the host's own struct format)."""
    p = bytearray(68)
    p[0] = 1  # protocol version
    p[1:4] = bytes([0, 1, 2])  # firmware 0.1.2
    p[4] = 8  # window
    p[5] = 0  # ready
    p[6:8] = _le(784, 2)
    p[8:12] = _le(64_000_000, 4)
    p[12:16] = _le(4400, 4)
    p[16:20] = _le(3376, 4)
    p[20:28] = bytes.fromhex("0123456789abcdef")
    p[28:38] = bytes([1, 4]) + b"".join(_le(d, 2) for d in (1, 28, 28, 1))
    p[38:48] = bytes([1, 2]) + b"".join(_le(d, 2) for d in (1, 10, 0, 0))
    p[48:52] = bytes.fromhex("0000003f")  # 0.5 as IEEE-754 single, little-endian
    p[52:56] = _le(-128, 4, signed=True)
    p[56:60] = bytes.fromhex("0000803e")  # 0.25
    p[60:64] = _le(-100, 4, signed=True)
    p[64:68] = _le(19040, 4)
    return bytes(p) + bytes([len(board)]) + board + bytes([len(message)]) + message


def test_decode_info_fields() -> None:
    frame = parse_frame(build_frame(MsgType.INFO, 42, _info_payload(message=b"boom"))[:-1])
    info = decode_reply(frame)
    assert isinstance(info, Info)
    assert info.seq == 42 and info.window == 8 and info.max_payload == 784
    assert info.firmware == "0.1.2" and info.clock_hz == 64_000_000
    assert info.model_hash == "0123456789abcdef"
    assert info.input_shape == (1, 28, 28, 1) and info.output_shape == (1, 10)
    assert (info.input_scale, info.input_zero_point, info.output_zero_point) == (0.5, -128, -100)
    assert info.board == "nano33ble" and info.startup_error == "boom" and info.model_bytes == 19040
    assert (info.arena_size, info.arena_used, info.output_scale) == (4400, 3376, 0.25)
    assert info.input_dtype == info.output_dtype == "int8" and info.startup_status == 0


def test_decode_info_rejects_truncation() -> None:
    payload = _info_payload()
    for cut in (10, 68, len(payload) - 1):
        with pytest.raises(MessageError):
            decode_reply(parse_frame(build_frame(MsgType.INFO, 1, payload[:cut])[:-1]))


def test_decode_result_nack_error() -> None:
    res = decode_reply(
        parse_frame(build_frame(MsgType.RESULT, 5, struct.pack("<BII", 3, 120, 7000) + b"\xff\x01")[:-1])
    )
    assert res == Result(seq=5, invoke_us=120, cycles=7000, replayed=True, output=b"\xff\x01")
    res = decode_reply(parse_frame(build_frame(MsgType.RESULT, 5, struct.pack("<BII", 0, 1, 99))[:-1]))
    assert isinstance(res, Result) and res.cycles is None and not res.replayed
    nack = decode_reply(parse_frame(build_frame(MsgType.NACK, 0xFFFF, b"\x01")[:-1]))
    assert nack == Nack(seq=0xFFFF, code=Code.BAD_CRC)
    err = decode_reply(parse_frame(build_frame(MsgType.ERROR, 3, b"\x14not ready")[:-1]))
    assert isinstance(err, ErrorReply) and err.name == "NOT_READY" and err.message == "not ready"
    with pytest.raises(MessageError):
        decode_reply(parse_frame(build_frame(MsgType.INFER, 1, b"")[:-1]))  # a host -> device type
    with pytest.raises(MessageError):
        decode_reply(parse_frame(build_frame(MsgType.RESULT, 1, b"", version=2)[:-1]))


def _vectors() -> dict:
    if not VECTORS.is_file():
        pytest.skip(f"{VECTORS.name} not written yet")
    return json.loads(VECTORS.read_text())


def test_vectors_crc_and_cobs() -> None:
    vectors = _vectors()
    for case in vectors["crc32"]:
        assert zlib.crc32(bytes.fromhex(case["data"])) == int(case["crc"], 16)
    for case in vectors["cobs"]:
        raw, encoded = bytes.fromhex(case["raw"]), bytes.fromhex(case["encoded"])
        assert cobs_encode(raw) == encoded, case["name"]
        assert cobs_decode(encoded) == raw, case["name"]


def test_vectors_request_frames() -> None:
    frames = _vectors()["frames"]
    encoders = {MsgType.HELLO: lambda seq, _p: encode_hello(seq), MsgType.INFER: encode_infer}
    for case in frames:
        encode = encoders[MsgType(case["type"])]
        assert encode(case["seq"], bytes.fromhex(case["payload"])) == bytes.fromhex(case["wire"]), case[
            "name"
        ]


def _frames_of(hex_wire: str) -> list[bytes]:
    return [f for f in bytes.fromhex(hex_wire).split(b"\x00") if f]


def test_vectors_device_replies_decode() -> None:
    """Every reply the reference device sends decodes; INFO carries the vector's device info."""
    vectors = _vectors()
    decoded = 0
    for exchange in vectors["exchanges"]:
        want = vectors["device_infos"][exchange["device_info"]]
        for step in exchange["steps"]:
            for encoded in _frames_of(step.get("expect", "")):
                reply = decode_reply(parse_frame(encoded))
                decoded += 1
                if isinstance(reply, Info):
                    assert reply.model_hash == want["model_hash"], exchange["name"]
                    assert list(reply.input_shape) == want["input"]["dims"], exchange["name"]
                    assert list(reply.output_shape) == want["output"]["dims"], exchange["name"]
                    assert reply.input_scale == pytest.approx(want["input"]["scale"], rel=1e-7)
                    assert reply.input_zero_point == want["input"]["zero_point"]
                    assert reply.output_zero_point == want["output"]["zero_point"]
                    # The protocol caps the board name at 32 bytes and the start-up message at 64.
                    assert (reply.board, reply.startup_error) == (
                        want["board_name"][:32],
                        want["startup_message"][:64],
                    )
                    assert reply.startup_status == want["startup_status"]
                    assert reply.arena_used == want["arena_used"] and reply.model_bytes == want["model_size"]
                elif isinstance(reply, Result):
                    requests = [parse_frame(f) for f in _frames_of(step["send"])]
                    sent = {r.seq: r.payload for r in requests}
                    assert reply.seq in sent, exchange["name"]
                    # The vectors' mock engine: output[j] = int8(sum of the input as int8 + 3 j).
                    total = sum(b - 256 if b > 127 else b for b in sent[reply.seq])
                    expected = bytes(((total + 3 * j) & 0xFF) for j in range(len(reply.output)))
                    assert reply.output == expected, exchange["name"]
                    # A device that reports a clock counts cycles (RESULT flag bit 0).
                    assert (reply.cycles is not None) == (want["clock_hz"] != 0), exchange["name"]
    assert decoded >= len(vectors["exchanges"])
