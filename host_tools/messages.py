"""Message payloads (docs/protocol.md sections 2-5): HELLO/INFER/PROFILE out,
INFO/RESULT/PROFILE_RESULT/NACK/ERROR in."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from common.protocol import (
    DTYPE_NAMES,
    INFO_FIELDS,
    INFO_FIXED,
    INFO_FIXED_BYTES,
    PROFILE_ENTRY_HEADER,
    PROFILE_HEADER,
    PROTOCOL_VERSION,
    RESULT_HEADER,
    Code,
    MsgType,
    ResultFlag,
    StartupStatus,
)
from host_tools.framing import Frame, build_frame

# Re-exported: the layers above name the protocol's enums through this module.
__all__ = ["Code", "ErrorReply", "Info", "MessageError", "MsgType", "Nack", "OpTicks", "ProfileResult",
           "Reply", "Result", "StartupStatus", "decode_info", "decode_profile", "decode_reply",
           "decode_result", "encode_hello", "encode_infer", "encode_profile"]


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
class OpTicks:
    name: str
    ticks: int


@dataclass(frozen=True)
class ProfileResult:
    """One inference timed per op: ticks are cycles when ``cycles_valid`` (the Nano's DWT
    cycles, the emulator's instructions), else microseconds."""

    seq: int
    cycles_valid: bool
    truncated: bool  # more ops ran than the device could record
    total_ticks: int  # the whole Invoke(), profiler included
    ops: tuple[OpTicks, ...]


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


Reply = Info | Result | ProfileResult | Nack | ErrorReply


def encode_hello(seq: int) -> bytes:
    return build_frame(MsgType.HELLO, seq)


def encode_infer(seq: int, tensor: bytes) -> bytes:
    return build_frame(MsgType.INFER, seq, tensor)


def encode_profile(seq: int, tensor: bytes) -> bytes:
    return build_frame(MsgType.PROFILE, seq, tensor)


def _dtype(code: int) -> str:
    return DTYPE_NAMES.get(code, f"dtype{code}")


def _shape(rank: int, dims: tuple[int, ...]) -> tuple[int, ...]:
    if not 1 <= rank <= 4:
        raise MessageError(f"INFO has tensor rank {rank} (must be 1..4)")
    return tuple(int(d) for d in dims[:rank])


def _value_counts() -> tuple[tuple[str, int], ...]:
    """How many values ``struct`` gives for each INFO field ("3B" gives 3, "8s" gives 1)."""
    counts = []
    for name, fmt in INFO_FIELDS:
        one = struct.Struct("<" + fmt)
        counts.append((name, len(one.unpack(bytes(one.size)))))
    return tuple(counts)


_INFO_VALUE_COUNTS = _value_counts()


def _info_fields(payload: bytes) -> dict[str, tuple[Any, ...]]:
    values = iter(INFO_FIXED.unpack_from(payload))
    return {name: tuple(next(values) for _ in range(count)) for name, count in _INFO_VALUE_COUNTS}


def decode_info(seq: int, payload: bytes) -> Info:
    if len(payload) < INFO_FIXED_BYTES:
        raise MessageError(f"INFO payload is {len(payload)} bytes, at least {INFO_FIXED_BYTES} expected")
    f = _info_fields(payload)
    pos = INFO_FIXED.size
    n = payload[pos]
    board = payload[pos + 1 : pos + 1 + n]
    pos += 1 + n
    if len(board) != n or pos >= len(payload):
        raise MessageError("INFO payload truncated in the board name")
    m = payload[pos]
    error = payload[pos + 1 : pos + 1 + m]
    if len(error) != m:
        raise MessageError("INFO payload truncated in the start-up message")
    major, minor, patch = f["firmware_version"]
    return Info(
        seq=seq,
        protocol_version=f["protocol_version"][0],
        firmware_version=(major, minor, patch),
        window=f["window"][0],
        startup_status=f["startup_status"][0],
        max_payload=f["max_payload"][0],
        clock_hz=f["clock_hz"][0],
        arena_size=f["arena_size"][0],
        arena_used=f["arena_used"][0],
        model_hash=f["model_hash"][0].hex(),
        input_dtype=_dtype(f["input_dtype"][0]),
        input_shape=_shape(f["input_rank"][0], f["input_dims"]),
        output_dtype=_dtype(f["output_dtype"][0]),
        output_shape=_shape(f["output_rank"][0], f["output_dims"]),
        input_scale=f["input_scale"][0],
        input_zero_point=f["input_zero_point"][0],
        output_scale=f["output_scale"][0],
        output_zero_point=f["output_zero_point"][0],
        model_bytes=f["model_size"][0],
        board=board.decode("ascii", "replace"),
        startup_error=error.decode("ascii", "replace"),
    )


def decode_result(seq: int, payload: bytes) -> Result:
    if len(payload) < RESULT_HEADER.size:
        raise MessageError(f"RESULT payload is {len(payload)} bytes, at least {RESULT_HEADER.size} expected")
    flags, invoke_us, cycles = RESULT_HEADER.unpack_from(payload)
    return Result(
        seq=seq,
        invoke_us=invoke_us,
        cycles=cycles if flags & ResultFlag.CYCLES_VALID else None,
        replayed=bool(flags & ResultFlag.REPLAYED),
        output=payload[RESULT_HEADER.size :],
    )


def decode_profile(seq: int, payload: bytes) -> ProfileResult:
    if len(payload) < PROFILE_HEADER.size:
        raise MessageError(f"PROFILE_RESULT payload is {len(payload)} bytes, "
                           f"at least {PROFILE_HEADER.size} expected")
    flags, count, total = PROFILE_HEADER.unpack_from(payload)
    ops = []
    offset = PROFILE_HEADER.size
    for index in range(count):
        if offset + PROFILE_ENTRY_HEADER.size > len(payload):
            raise MessageError(f"PROFILE_RESULT ends inside op {index} of {count}")
        ticks, name_len = PROFILE_ENTRY_HEADER.unpack_from(payload, offset)
        offset += PROFILE_ENTRY_HEADER.size
        if offset + name_len > len(payload):
            raise MessageError(f"PROFILE_RESULT ends inside the name of op {index} of {count}")
        ops.append(OpTicks(payload[offset:offset + name_len].decode("ascii", "replace"), ticks))
        offset += name_len
    if offset != len(payload):
        raise MessageError(f"PROFILE_RESULT has {len(payload) - offset} bytes after its {count} ops")
    return ProfileResult(seq=seq, cycles_valid=bool(flags & ResultFlag.CYCLES_VALID),
                         truncated=bool(flags & ResultFlag.TRUNCATED), total_ticks=total, ops=tuple(ops))


def decode_reply(frame: Frame) -> Reply:
    """A device -> host frame as a message; ``MessageError`` when it breaks the protocol."""
    if frame.version != PROTOCOL_VERSION:
        raise MessageError(f"device speaks protocol version {frame.version}, host speaks {PROTOCOL_VERSION}")
    t, p = frame.msg_type, frame.payload
    if t == MsgType.RESULT:
        return decode_result(frame.seq, p)
    if t == MsgType.INFO:
        return decode_info(frame.seq, p)
    if t == MsgType.PROFILE_RESULT:
        return decode_profile(frame.seq, p)
    if t == MsgType.NACK:
        if len(p) != 1:
            raise MessageError(f"NACK payload is {len(p)} bytes, 1 expected")
        return Nack(seq=frame.seq, code=p[0])
    if t == MsgType.ERROR:
        if not p:
            raise MessageError("ERROR payload is empty")
        return ErrorReply(seq=frame.seq, code=p[0], message=p[1:].decode("ascii", "replace"))
    raise MessageError(f"device sent message type {t}, which a device never sends")
