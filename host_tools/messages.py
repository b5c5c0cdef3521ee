"""Message payloads (docs/protocol.md sections 2-5): HELLO/INFER out, INFO/RESULT/NACK/ERROR in."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from host_tools.framing import PROTOCOL_VERSION, Frame, build_frame


class MsgType(IntEnum):
    HELLO = 0x1
    INFO = 0x2
    INFER = 0x3
    RESULT = 0x4
    NACK = 0x5
    ERROR = 0x6


class Code(IntEnum):
    """NACK and ERROR codes."""

    BAD_CRC = 1
    BAD_COBS = 2
    TOO_SHORT = 3
    BAD_LENGTH = 4
    FRAME_TOO_LARGE = 16
    BAD_VERSION = 17
    UNKNOWN_TYPE = 18
    BAD_PAYLOAD = 19
    NOT_READY = 20
    INVOKE_FAILED = 21


class StartupStatus(IntEnum):
    READY = 0
    SCHEMA_MISMATCH = 1
    OP_REGISTRATION_FAILED = 2
    ALLOCATE_TENSORS_FAILED = 3
    INPUT_MISMATCH = 4
    OUTPUT_MISMATCH = 5


# Protocol dtype codes -> numpy dtype names.
DTYPES = {1: "int8"}
RESULT_FLAG_CYCLES = 0x01
RESULT_FLAG_REPLAYED = 0x02

_INFO_FIXED = struct.Struct("<B3BBBHIII8sBB4HBB4HfifiI")
_RESULT_HEAD = struct.Struct("<BII")


class MessageError(Exception):
    """A well-framed reply whose payload does not follow the protocol."""


@dataclass(frozen=True)
class Info:
    seq: int
    protocol_version: int
    firmware_version: tuple[int, int, int]
    window: int
    startup_status: int
    max_payload: int
    clock_hz: int
    arena_size: int
    arena_used: int
    model_hash: str  # 16 hex digits
    input_dtype: str
    input_shape: tuple[int, ...]
    output_dtype: str
    output_shape: tuple[int, ...]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    model_bytes: int
    board: str
    startup_error: str

    @property
    def firmware(self) -> str:
        return ".".join(str(v) for v in self.firmware_version)

    @property
    def startup_name(self) -> str:
        try:
            return StartupStatus(self.startup_status).name
        except ValueError:
            return f"status {self.startup_status}"


@dataclass(slots=True)
class Result:
    seq: int
    invoke_us: int
    cycles: int | None
    replayed: bool
    output: bytes


@dataclass(frozen=True)
class Nack:
    seq: int
    code: int


@dataclass(frozen=True)
class ErrorReply:
    seq: int
    code: int
    message: str

    @property
    def name(self) -> str:
        try:
            return Code(self.code).name
        except ValueError:
            return f"code {self.code}"


Reply = Info | Result | Nack | ErrorReply


def encode_hello(seq: int) -> bytes:
    return build_frame(MsgType.HELLO, seq)


def encode_infer(seq: int, tensor: bytes) -> bytes:
    return build_frame(MsgType.INFER, seq, tensor)


def _dtype(code: int) -> str:
    return DTYPES.get(code, f"dtype{code}")


def _shape(rank: int, dims: tuple[int, ...]) -> tuple[int, ...]:
    if not 1 <= rank <= 4:
        raise MessageError(f"INFO has tensor rank {rank} (must be 1..4)")
    return tuple(int(d) for d in dims[:rank])


def decode_info(seq: int, payload: bytes) -> Info:
    if len(payload) < _INFO_FIXED.size + 2:
        raise MessageError(f"INFO payload is {len(payload)} bytes, at least {_INFO_FIXED.size + 2} expected")
    f = _INFO_FIXED.unpack_from(payload)
    pos = _INFO_FIXED.size
    n = payload[pos]
    board = payload[pos + 1 : pos + 1 + n]
    pos += 1 + n
    if len(board) != n or pos >= len(payload):
        raise MessageError("INFO payload truncated in the board name")
    m = payload[pos]
    error = payload[pos + 1 : pos + 1 + m]
    if len(error) != m:
        raise MessageError("INFO payload truncated in the start-up message")
    return Info(
        seq=seq,
        protocol_version=f[0],
        firmware_version=(f[1], f[2], f[3]),
        window=f[4],
        startup_status=f[5],
        max_payload=f[6],
        clock_hz=f[7],
        arena_size=f[8],
        arena_used=f[9],
        model_hash=f[10].hex(),
        input_dtype=_dtype(f[11]),
        input_shape=_shape(f[12], f[13:17]),
        output_dtype=_dtype(f[17]),
        output_shape=_shape(f[18], f[19:23]),
        input_scale=f[23],
        input_zero_point=f[24],
        output_scale=f[25],
        output_zero_point=f[26],
        model_bytes=f[27],
        board=board.decode("ascii", "replace"),
        startup_error=error.decode("ascii", "replace"),
    )


def decode_result(seq: int, payload: bytes) -> Result:
    if len(payload) < _RESULT_HEAD.size:
        raise MessageError(f"RESULT payload is {len(payload)} bytes, at least {_RESULT_HEAD.size} expected")
    flags, invoke_us, cycles = _RESULT_HEAD.unpack_from(payload)
    return Result(
        seq=seq,
        invoke_us=invoke_us,
        cycles=cycles if flags & RESULT_FLAG_CYCLES else None,
        replayed=bool(flags & RESULT_FLAG_REPLAYED),
        output=payload[_RESULT_HEAD.size :],
    )


def decode_reply(frame: Frame) -> Reply:
    """A device -> host frame as a message; ``MessageError`` when it breaks the protocol."""
    if frame.version != PROTOCOL_VERSION:
        raise MessageError(f"device speaks protocol version {frame.version}, host speaks {PROTOCOL_VERSION}")
    t, p = frame.msg_type, frame.payload
    if t == MsgType.RESULT:
        return decode_result(frame.seq, p)
    if t == MsgType.INFO:
        return decode_info(frame.seq, p)
    if t == MsgType.NACK:
        if len(p) != 1:
            raise MessageError(f"NACK payload is {len(p)} bytes, 1 expected")
        return Nack(seq=frame.seq, code=p[0])
    if t == MsgType.ERROR:
        if not p:
            raise MessageError("ERROR payload is empty")
        return ErrorReply(seq=frame.seq, code=p[0], message=p[1:].decode("ascii", "replace"))
    raise MessageError(f"device sent message type {t}, which a device never sends")
