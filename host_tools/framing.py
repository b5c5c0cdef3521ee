"""Frames on the wire (docs/protocol.md section 1): COBS, CRC-32, header, 0x00 delimiter.

Everything works on whole byte strings: COBS splits on zero bytes with ``bytes.split``
instead of looping over bytes in Python, because the host encodes a frame per image and
the evaluation rate depends on it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import IntEnum

from common.protocol import (
    COBS_BLOCK,
    CRC,
    CRC_BYTES,
    HEADER,
    HEADER_BYTES,
    PROTOCOL_VERSION,
    SEQ_UNKNOWN,
    Code,
    encoded_frame_size,
)

# The protocol constants the layers above use are re-exported from here.
__all__ = [
    "CRC_BYTES", "DELIMITER", "HEADER_BYTES", "MIN_RAW_FRAME", "PROTOCOL_VERSION", "SEQ_UNKNOWN", "Frame",
    "FrameError", "FrameFault", "StreamDecoder", "build_frame", "build_raw", "cobs_decode", "cobs_encode",
    "parse_frame", "parse_raw", "wire_size",
]

DELIMITER = b"\x00"
MIN_RAW_FRAME = HEADER_BYTES + CRC_BYTES
# COBS code byte for a full 254-byte block (no zero follows it).
_COBS_FULL = 0xFF
_COBS_BLOCK = COBS_BLOCK
# Code bytes 1..255 as one-byte strings, so encoding does not build them per block.
_CODE = [bytes([i]) for i in range(256)]


class FrameFault(IntEnum):
    """Why a received frame was rejected; values are the protocol's NACK codes."""

    BAD_CRC = Code.BAD_CRC
    BAD_COBS = Code.BAD_COBS
    TOO_SHORT = Code.TOO_SHORT
    BAD_LENGTH = Code.BAD_LENGTH


class FrameError(Exception):
    def __init__(self, fault: FrameFault) -> None:
        super().__init__(fault.name)
        self.fault = fault


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``; the result has no zero byte (delimiter not included)."""
    parts: list[bytes] = []
    chunks = data.split(DELIMITER)
    last = len(chunks) - 1
    for i, chunk in enumerate(chunks):
        while len(chunk) >= _COBS_BLOCK:
            parts.append(_CODE[_COBS_FULL])
            parts.append(chunk[:_COBS_BLOCK])
            chunk = chunk[_COBS_BLOCK:]
            # A last chunk that ends exactly on a full block needs no final (empty) block.
            if i == last and not chunk:
                return b"".join(parts)
        parts.append(_CODE[len(chunk) + 1])
        parts.append(chunk)
    return b"".join(parts)


def cobs_decode(data: bytes) -> bytes:
    """Invert ``cobs_encode``; raises ``FrameError(BAD_COBS)`` on malformed input."""
    if DELIMITER in data:
        raise FrameError(FrameFault.BAD_COBS)
    # Walk the code bytes only: each one (but the first) stands for a zero of the output when
    # the block before it was shorter than 254 bytes, so overwrite them with zeros in place.
    buf = bytearray(data)
    pos, end, full_blocks = 0, len(buf), False
    while pos < end:
        code = buf[pos]
        full_blocks |= code == _COBS_FULL
        buf[pos] = 0
        pos += code
    if pos != end:
        raise FrameError(FrameFault.BAD_COBS)
    if not full_blocks:
        return bytes(buf[1:])
    return _cobs_decode_blocks(data)


def _cobs_decode_blocks(data: bytes) -> bytes:
    """Block-by-block decoding, for frames with 254-byte blocks (no implied zero after them)."""
    parts: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        code = data[pos]
        nxt = pos + code
        parts.append(data[pos + 1 : nxt])
        # A block shorter than 254 bytes stands for a zero, except at the very end.
        if code != _COBS_FULL and nxt < end:
            parts.append(DELIMITER)
        pos = nxt
    return b"".join(parts)


@dataclass(slots=True)
class Frame:
    version: int
    msg_type: int
    seq: int
    payload: bytes


def build_raw(msg_type: int, seq: int, payload: bytes = b"", version: int = PROTOCOL_VERSION) -> bytes:
    """Header + payload + CRC, before COBS."""
    body = HEADER.pack(((version & 0xF) << 4) | (msg_type & 0xF), seq, len(payload)) + payload
    return body + CRC.pack(zlib.crc32(body))


def build_frame(msg_type: int, seq: int, payload: bytes = b"", version: int = PROTOCOL_VERSION) -> bytes:
    """The complete wire bytes of one frame, delimiter included."""
    return cobs_encode(build_raw(msg_type, seq, payload, version)) + DELIMITER


def parse_raw(raw: bytes) -> Frame:
    """Check size, length field and CRC of a decoded frame."""
    if len(raw) < MIN_RAW_FRAME:
        raise FrameError(FrameFault.TOO_SHORT)
    ver_type, seq, length = HEADER.unpack_from(raw)
    if HEADER_BYTES + length + CRC_BYTES != len(raw):
        raise FrameError(FrameFault.BAD_LENGTH)
    (crc,) = CRC.unpack_from(raw, HEADER_BYTES + length)
    if zlib.crc32(memoryview(raw)[: HEADER_BYTES + length]) != crc:
        raise FrameError(FrameFault.BAD_CRC)
    return Frame(
        version=ver_type >> 4,
        msg_type=ver_type & 0xF,
        seq=seq,
        payload=raw[HEADER_BYTES : HEADER_BYTES + length],
    )


def parse_frame(encoded: bytes) -> Frame:
    """One frame as received between delimiters (COBS-encoded, without the 0x00)."""
    return parse_raw(cobs_decode(encoded))


def wire_size(payload_bytes: int) -> int:
    """Bytes on the wire for a frame with ``payload_bytes`` of payload (worst case of COBS)."""
    return encoded_frame_size(MIN_RAW_FRAME + payload_bytes)


class StreamDecoder:
    """Split a byte stream into encoded frames at 0x00, never returning a partial frame.

    ``max_encoded`` bounds the bytes kept for one frame: a stream of garbage without a
    delimiter is dropped instead of growing without limit (``oversized`` counts such drops).
    """

    def __init__(self, max_encoded: int = 1 << 16) -> None:
        self._pending = b""
        self._max = max_encoded
        self.oversized = 0

    def feed(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        pieces = (self._pending + data).split(DELIMITER) if self._pending else data.split(DELIMITER)
        self._pending = pieces.pop()
        if len(self._pending) > self._max:
            self._pending = b""
            self.oversized += 1
        # Empty pieces are the empty frames between two delimiters: ignored by the protocol.
        return [p for p in pieces if p]

    def reset(self) -> None:
        self._pending = b""
