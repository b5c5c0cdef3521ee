"""The wire protocol's facts on the Python side (docs/protocol.md): message types, codes,
start-up status codes, dtype codes, result flags, header sizes, limits and the INFO layout.

The host tools (``host_tools.framing``, ``host_tools.messages``) and convert's code
generator read them from here. The firmware states the same facts once, in
``firmware/lib/core/protocol.h``; ``tests/test_protocol_facts.py`` compares the two
(through the host library's ``tm_protocol_constants`` table), the test oracle and the
tables of docs/protocol.md. To add a message type or an INFO field, add it to both files;
that test fails until they agree.
"""

from __future__ import annotations

import struct
from enum import IntEnum

PROTOCOL_VERSION = 1


class MsgType(IntEnum):
    HELLO = 0x1
    INFO = 0x2
    INFER = 0x3
    RESULT = 0x4
    NACK = 0x5
    ERROR = 0x6
    PROFILE = 0x7
    PROFILE_RESULT = 0x8


class Code(IntEnum):
    """NACK codes (1..4) and ERROR codes (16..21)."""

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
    """INFO byte 5: 0 ready, else why the model cannot run."""

    READY = 0
    SCHEMA_MISMATCH = 1
    OP_REGISTRATION_FAILED = 2
    ALLOCATE_TENSORS_FAILED = 3
    INPUT_MISMATCH = 4
    OUTPUT_MISMATCH = 5


class Dtype(IntEnum):
    """Tensor dtype codes of INFO and of the generated settings."""

    INT8 = 1


# Dtype code -> numpy dtype name, and back.
DTYPE_NAMES: dict[int, str] = {Dtype.INT8: "int8"}
DTYPE_CODES: dict[str, int] = {name: int(code) for code, name in DTYPE_NAMES.items()}


class ResultFlag(IntEnum):
    """Bits of RESULT and PROFILE_RESULT byte 0."""

    CYCLES_VALID = 0x01
    REPLAYED = 0x02
    TRUNCATED = 0x04  # PROFILE_RESULT: more ops ran than the device could record


# The sequence number of a reply whose request header could not be trusted.
SEQ_UNKNOWN = 0xFFFF

HEADER = struct.Struct("<BHH")  # ver_type, seq, len
CRC = struct.Struct("<I")
HEADER_BYTES = HEADER.size
CRC_BYTES = CRC.size
MAX_PAYLOAD_FIELD = 0xFFFF  # `len` is a u16

BOARD_NAME_MAX = 32
STARTUP_MESSAGE_MAX = 64
ERROR_MESSAGE_MAX = 48

# The fixed part of INFO, in wire order: (field, struct format). The board name and the
# start-up message follow, each as a length byte and ASCII; ``board_name_length`` is the
# first of those length bytes.
INFO_FIELDS: tuple[tuple[str, str], ...] = (
    ("protocol_version", "B"),
    ("firmware_version", "3B"),
    ("window", "B"),
    ("startup_status", "B"),
    ("max_payload", "H"),
    ("clock_hz", "I"),
    ("arena_size", "I"),
    ("arena_used", "I"),
    ("model_hash", "8s"),
    ("input_dtype", "B"),
    ("input_rank", "B"),
    ("input_dims", "4H"),
    ("output_dtype", "B"),
    ("output_rank", "B"),
    ("output_dims", "4H"),
    ("input_scale", "f"),
    ("input_zero_point", "i"),
    ("output_scale", "f"),
    ("output_zero_point", "i"),
    ("model_size", "I"),
)
INFO_FIXED = struct.Struct("<" + "".join(fmt for _, fmt in INFO_FIELDS))
# The fixed fields and the two string length bytes.
INFO_FIXED_BYTES = INFO_FIXED.size + 2
INFO_PAYLOAD_MAX = INFO_FIXED_BYTES + BOARD_NAME_MAX + STARTUP_MESSAGE_MAX

RESULT_HEADER = struct.Struct("<BII")  # flags, invoke micros, cycles
RESULT_HEADER_BYTES = RESULT_HEADER.size

# PROFILE_RESULT: flags, op count, the whole Invoke()'s ticks; then per op its ticks and its
# name (length byte and ASCII, at most PROFILE_NAME_MAX).
PROFILE_HEADER = struct.Struct("<BBI")
PROFILE_HEADER_BYTES = PROFILE_HEADER.size
PROFILE_ENTRY_HEADER = struct.Struct("<IB")
PROFILE_ENTRY_HEADER_BYTES = PROFILE_ENTRY_HEADER.size
PROFILE_NAME_MAX = 32
PROFILE_OPS_MAX = 255

COBS_BLOCK = 254


def info_layout() -> dict[str, tuple[int, int]]:
    """INFO field -> (offset, size) in bytes, the string length bytes included."""
    layout: dict[str, tuple[int, int]] = {}
    offset = 0
    for name, fmt in INFO_FIELDS:
        size = struct.calcsize("<" + fmt)
        layout[name] = (offset, size)
        offset += size
    layout["board_name_length"] = (offset, 1)
    return layout


def cobs_max_overhead(raw_bytes: int) -> int:
    """Most bytes COBS adds to ``raw_bytes`` of data: one code byte per started 254-byte block
    (a zero costs nothing: its code byte takes its place) and one for empty data."""
    return max(1, -(-raw_bytes // COBS_BLOCK))


def encoded_frame_size(raw_bytes: int) -> int:
    """Most bytes on the wire for a raw frame of ``raw_bytes``, delimiter included."""
    return raw_bytes + cobs_max_overhead(raw_bytes) + 1


def facts() -> dict[str, int]:
    """The facts under the names of the firmware's ``tm_protocol_constants`` table (the
    device-only window and the host shim's struct layout excepted)."""
    table: dict[str, int] = {
        "PROTOCOL_VERSION": PROTOCOL_VERSION,
        "SEQ_UNKNOWN": SEQ_UNKNOWN,
        "HEADER_BYTES": HEADER_BYTES,
        "CRC_BYTES": CRC_BYTES,
        "MAX_PAYLOAD_FIELD": MAX_PAYLOAD_FIELD,
        "BOARD_NAME_MAX": BOARD_NAME_MAX,
        "STARTUP_MESSAGE_MAX": STARTUP_MESSAGE_MAX,
        "ERROR_MESSAGE_MAX": ERROR_MESSAGE_MAX,
        "INFO_FIXED_BYTES": INFO_FIXED_BYTES,
        "INFO_PAYLOAD_MAX": INFO_PAYLOAD_MAX,
        "RESULT_HEADER_BYTES": RESULT_HEADER_BYTES,
        "PROFILE_HEADER_BYTES": PROFILE_HEADER_BYTES,
        "PROFILE_ENTRY_HEADER_BYTES": PROFILE_ENTRY_HEADER_BYTES,
        "PROFILE_NAME_MAX": PROFILE_NAME_MAX,
        "PROFILE_OPS_MAX": PROFILE_OPS_MAX,
    }
    enums: tuple[type[IntEnum], ...] = (MsgType, Code, StartupStatus, Dtype, ResultFlag)
    for enum in enums:
        table.update({f"{enum.__name__}.{member.name}": int(member) for member in enum})
    for name, (offset, size) in info_layout().items():
        table[f"InfoField.{name}.offset"] = offset
        table[f"InfoField.{name}.size"] = size
    return table
