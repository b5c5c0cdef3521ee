"""An independent Python model of the device side of docs/protocol.md, and the vectors built from it.

The golden vectors in ``tests/vectors/protocol_v1.json`` come from this module, never from the
C++ core: the tests then check the C++ (host library and sanitizer runner) against them.
It shares no code with ``host_tools/framing.py`` on purpose, so a mistake in one is caught
by the other. Regenerate after a deliberate protocol change with
``python tests/core_reference.py --write``.
"""

from __future__ import annotations

import random
import struct
import sys
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

VECTORS_PATH = Path(__file__).resolve().parent / "vectors" / "protocol_v1.json"

HELLO, INFO, INFER, RESULT, NACK, ERROR, PROFILE, PROFILE_RESULT = 1, 2, 3, 4, 5, 6, 7, 8
BAD_CRC, BAD_COBS, TOO_SHORT, BAD_LENGTH = 1, 2, 3, 4
FRAME_TOO_LARGE, BAD_VERSION, UNKNOWN_TYPE, BAD_PAYLOAD, NOT_READY, INVOKE_FAILED = 16, 17, 18, 19, 20, 21
SEQ_UNKNOWN = 0xFFFF
WINDOW = 32
INFO_PAYLOAD_MAX = 70 + 32 + 64
ERROR_MESSAGE_MAX = 48
# Start-up status codes (INFO byte 5), docs/protocol.md section 5.
READY, SCHEMA_MISMATCH, OP_REGISTRATION_FAILED = 0, 1, 2
ALLOCATE_TENSORS_FAILED, INPUT_MISMATCH, OUTPUT_MISMATCH = 3, 4, 5
DTYPE_INT8 = 1
FLAG_CYCLES_VALID, FLAG_REPLAYED, FLAG_TRUNCATED = 0x01, 0x02, 0x04
# The host shim's engine has no ops of its own: a PROFILE times the whole mock invoke as one.
PROFILE_WHOLE_INVOKE = b"invoke"
CLOCK_START_US = 1000
CLOCK_STEP_US = 25


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Block by block: a code byte = 1 + the non-zero bytes that follow it (at most 254)."""
    out = bytearray()
    block = bytearray()
    for i, byte in enumerate(data):
        if byte == 0:
            out += bytes([len(block) + 1]) + block
            block.clear()
            continue
        block.append(byte)
        if len(block) == 254:
            out += b"\xff" + block
            block.clear()
            if i == len(data) - 1:
                return bytes(out)  # a full last block is not followed by an empty one
    out += bytes([len(block) + 1]) + block
    return bytes(out)


def cobs_decode_stream(encoded: bytes, capacity: int) -> tuple[str, bytes]:
    """What a streaming decoder makes of the bytes between two delimiters.

    Returns ("frame", raw), ("bad_cobs", b"") or ("too_large", b""): too large wins, because
    the device counts decoded bytes as they arrive, before it can see a truncated block.
    """
    out = bytearray()
    pos = 0
    zero_pending = False
    truncated = False
    while pos < len(encoded):
        code = encoded[pos]
        pos += 1
        if zero_pending:
            out.append(0)
        chunk = encoded[pos:pos + code - 1]
        truncated = len(chunk) < code - 1
        out += chunk
        pos += code - 1
        zero_pending = code != 0xFF
    if len(out) > capacity:
        return "too_large", b""
    if truncated:
        return "bad_cobs", b""
    return "frame", bytes(out)


def raw_frame(msg_type: int, seq: int, payload: bytes = b"", version: int = 1,
              length: int | None = None) -> bytes:
    """A raw frame; ``length`` overrides the `len` field (the CRC still covers the bytes sent)."""
    n = len(payload) if length is None else length
    body = bytes([(version << 4) | msg_type]) + struct.pack("<HH", seq, n) + payload
    return body + struct.pack("<I", crc32(body))


def wire(raw: bytes) -> bytes:
    return cobs_encode(raw) + b"\x00"


def frame(msg_type: int, seq: int, payload: bytes = b"", version: int = 1) -> bytes:
    return wire(raw_frame(msg_type, seq, payload, version))


@dataclass(frozen=True)
class Tensor:
    dims: tuple[int, ...]
    scale: float
    zero_point: int
    dtype: int = 1

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "dims": list(self.dims), "scale": self.scale,
                "zero_point": self.zero_point}


@dataclass(frozen=True)
class Info:
    input: Tensor
    output: Tensor
    firmware_version: tuple[int, int, int] = (0, 1, 0)
    startup_status: int = 0
    clock_hz: int = 0
    arena_size: int = 0
    arena_used: int = 0
    model_hash: bytes = bytes(8)
    model_size: int = 0
    board_name: str = ""
    startup_message: str = ""

    @property
    def max_payload(self) -> int:
        return max(self.input.nbytes, INFO_PAYLOAD_MAX)

    def payload(self) -> bytes:
        def tensor_shape(t: Tensor) -> bytes:
            dims = list(t.dims) + [0] * (4 - len(t.dims))
            return struct.pack("<BB4H", t.dtype, len(t.dims), *dims)

        board = self.board_name.encode("ascii")[:32]
        message = self.startup_message.encode("ascii")[:64]
        return (struct.pack("<B3BBBHIII", 1, *self.firmware_version, WINDOW, self.startup_status,
                            self.max_payload, self.clock_hz, self.arena_size, self.arena_used)
                + self.model_hash + tensor_shape(self.input) + tensor_shape(self.output)
                + struct.pack("<fifiI", self.input.scale, self.input.zero_point, self.output.scale,
                              self.output.zero_point, self.model_size)
                + bytes([len(board)]) + board + bytes([len(message)]) + message)

    def to_json(self) -> dict[str, Any]:
        return {"firmware_version": list(self.firmware_version), "startup_status": self.startup_status,
                "clock_hz": self.clock_hz, "arena_size": self.arena_size, "arena_used": self.arena_used,
                "model_hash": self.model_hash.hex(), "input": self.input.to_json(),
                "output": self.output.to_json(), "model_size": self.model_size,
                "board_name": self.board_name, "startup_message": self.startup_message}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Info:
        def tensor(t: dict[str, Any]) -> Tensor:
            return Tensor(tuple(t["dims"]), t["scale"], t["zero_point"], t["dtype"])

        return Info(tensor(d["input"]), tensor(d["output"]), tuple(d["firmware_version"]),
                    d["startup_status"], d["clock_hz"], d["arena_size"], d["arena_used"],
                    bytes.fromhex(d["model_hash"]), d["model_size"], d["board_name"], d["startup_message"])


def mock_invoke(inputs: bytes, output_bytes: int) -> bytes | None:
    """The vectors' engine: output[j] = int8(sum of inputs as int8 + 3*j); fails if input[0] == -128."""
    values = struct.unpack(f"<{len(inputs)}b", inputs)
    if not values or values[0] == -128:
        return None
    total = sum(values)
    return bytes((total + 3 * j) & 0xFF for j in range(output_bytes))


@dataclass
class RefDevice:
    """The device as the protocol describes it, with the mock engine and the fake clock."""

    info: Info
    now: int = CLOCK_START_US
    pending: bytearray = field(default_factory=bytearray)
    cache: list[tuple[int, bytes] | None] = field(default_factory=lambda: [None] * WINDOW)
    next_slot: int = 0
    runs: int = 0  # invocations of the engine (a replay must not add one)

    def reset(self) -> None:
        self.pending.clear()
        self.clear_cache()

    def clear_cache(self) -> None:
        self.cache = [None] * WINDOW
        self.next_slot = 0

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for part_index, part in enumerate(data.split(b"\x00")):
            if part_index > 0:
                out += self._delimiter()
            self.pending += part
        return bytes(out)

    def _clock(self) -> int:
        now = self.now
        self.now += CLOCK_STEP_US
        return now

    def _cycles(self) -> int:
        """A device with a clock_hz counts cycles; the host shim has no counter and reads the
        clock again, scaled to clock_hz."""
        return (self._clock() * self.info.clock_hz // 1_000_000) & 0xFFFFFFFF

    def _delimiter(self) -> bytes:
        encoded = bytes(self.pending)
        self.pending.clear()
        if not encoded:
            return b""  # empty frame
        event, raw = cobs_decode_stream(encoded, 9 + self.info.max_payload)
        if event == "too_large":
            return self._reply(ERROR, SEQ_UNKNOWN, bytes([FRAME_TOO_LARGE]))
        if event == "bad_cobs":
            return self._reply(NACK, SEQ_UNKNOWN, bytes([BAD_COBS]))
        return self._handle(raw)

    def _reply(self, msg_type: int, seq: int, payload: bytes) -> bytes:
        return frame(msg_type, seq, payload)

    def _error(self, seq: int, code: int, message: str = "") -> bytes:
        return self._reply(ERROR, seq, bytes([code]) + message.encode("ascii")[:ERROR_MESSAGE_MAX])

    def _handle(self, raw: bytes) -> bytes:
        if len(raw) < 9:
            return self._reply(NACK, SEQ_UNKNOWN, bytes([TOO_SHORT]))
        ver_type, seq, length = struct.unpack_from("<BHH", raw)
        if length + 9 != len(raw):
            return self._reply(NACK, SEQ_UNKNOWN, bytes([BAD_LENGTH]))
        if crc32(raw[:-4]) != struct.unpack_from("<I", raw, len(raw) - 4)[0]:
            return self._reply(NACK, SEQ_UNKNOWN, bytes([BAD_CRC]))
        version, msg_type, payload = ver_type >> 4, ver_type & 0xF, raw[5:-4]
        if version != 1:
            return self._error(seq, BAD_VERSION)
        if msg_type == HELLO:
            if payload:
                return self._error(seq, BAD_PAYLOAD)
            self.clear_cache()
            return self._reply(INFO, seq, self.info.payload())
        if msg_type not in (INFER, PROFILE):
            return self._error(seq, UNKNOWN_TYPE)
        if self.info.startup_status != 0:
            return self._error(seq, NOT_READY, self.info.startup_message)
        if len(payload) != self.info.input.nbytes:
            return self._error(seq, BAD_PAYLOAD)
        if msg_type == PROFILE:
            return self._profile(seq, payload)
        for entry in self.cache:
            if entry is not None and entry[0] == seq:
                result = bytearray(entry[1])
                result[0] |= FLAG_REPLAYED
                return self._reply(RESULT, seq, bytes(result))
        counts_cycles = self.info.clock_hz != 0
        t0 = self._clock()
        c0 = self._cycles() if counts_cycles else 0
        outputs = mock_invoke(payload, self.info.output.nbytes)
        c1 = self._cycles() if counts_cycles else 0
        t1 = self._clock()
        self.runs += 1
        if outputs is None:
            return self._error(seq, INVOKE_FAILED)
        flags = FLAG_CYCLES_VALID if counts_cycles else 0
        result = struct.pack("<BII", flags, (t1 - t0) & 0xFFFFFFFF, (c1 - c0) & 0xFFFFFFFF) + outputs
        self.cache[self.next_slot] = (seq, result)
        self.next_slot = (self.next_slot + 1) % WINDOW
        return self._reply(RESULT, seq, result)


    def _ticks(self) -> int:
        """What a profile counts: cycles when the device has a counter, else microseconds."""
        return self._cycles() if self.info.clock_hz != 0 else self._clock()

    def _profile(self, seq: int, payload: bytes) -> bytes:
        """Never cached: each PROFILE runs the engine, timed as a whole and as its one op."""
        start = self._ticks()
        op_start = self._ticks()
        outputs = mock_invoke(payload, self.info.output.nbytes)
        op_ticks = (self._ticks() - op_start) & 0xFFFFFFFF
        total = (self._ticks() - start) & 0xFFFFFFFF
        self.runs += 1
        if outputs is None:
            return self._error(seq, INVOKE_FAILED)
        flags = FLAG_CYCLES_VALID if self.info.clock_hz != 0 else 0
        body = struct.pack("<BBI", flags, 1, total)
        body += struct.pack("<IB", op_ticks, len(PROFILE_WHOLE_INVOKE)) + PROFILE_WHOLE_INVOKE
        return self._reply(PROFILE_RESULT, seq, body)


# --- the vectors --------------------------------------------------------------------------
MNIST_LIKE = Info(
    input=Tensor((1, 28, 28, 1), 0.003921568859368563, -128),
    output=Tensor((1, 10), 0.00390625, -128),
    firmware_version=(0, 1, 0), arena_size=4096, arena_used=2852,
    model_hash=bytes.fromhex("0123456789abcdef"), model_size=19456, board_name="vector-board",
)
NOT_READY_INFO = replace(MNIST_LIKE, startup_status=ALLOCATE_TENSORS_FAILED, arena_used=0,
                         startup_message="AllocateTensors() failed: arena of 4096 bytes is too small "
                                         "for this model (needs 5120)")
TINY = Info(input=Tensor((8,), 0.5, -3), output=Tensor((3,), 0.25, 7), clock_hz=64_000_000,
            arena_size=2048, arena_used=1234, model_hash=bytes(range(1, 9)), model_size=4321,
            board_name="b" * 40)  # a board name past the 32-byte limit: sent truncated
# A board with a cycle counter (RESULT flag bit 0), at the Nano 33 BLE's 64 MHz.
CYCLES_INFO = replace(MNIST_LIKE, clock_hz=64_000_000)
# Every other start-up status, with the message a board sends for it.
STARTUP_FAILURES = {
    SCHEMA_MISMATCH: "model schema version 2 differs from the supported 3",
    OP_REGISTRATION_FAILED: "op resolver registration failed",
    INPUT_MISMATCH: "input tensor differs from model_settings.h",
    OUTPUT_MISMATCH: "output tensor differs from model_settings.h",
}
STARTUP_FAILURE_INFOS = {
    status: replace(MNIST_LIKE, startup_status=status, arena_used=0, startup_message=text)
    for status, text in STARTUP_FAILURES.items()
}


def _nonzero_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(1, 256) for _ in range(n))


def _image(rng: random.Random, first: int | None = None) -> bytes:
    data = bytearray(rng.randrange(256) for _ in range(784))
    if first is not None:
        data[0] = first
    elif data[0] == 0x80:
        data[0] = 0x7F  # keep the mock engine from failing on a "normal" request
    return bytes(data)


def _exchange(name: str, info: Info, sends: list[bytes | None], note: str) -> dict[str, Any]:
    """Run ``sends`` (bytes to feed, or None for a reset) through a fresh reference device."""
    device = RefDevice(info)
    steps: list[dict[str, Any]] = []
    for data in sends:
        if data is None:
            device.reset()
            steps.append({"reset": True})
        else:
            steps.append({"send": data.hex(), "expect": device.feed(data).hex()})
    return {"name": name, "note": note, "device_info": info_name(info), "steps": steps}


DEVICE_INFOS = {"mnist_like": MNIST_LIKE, "not_ready": NOT_READY_INFO, "tiny": TINY, "cycles": CYCLES_INFO,
                **{f"startup_status_{status}": info for status, info in STARTUP_FAILURE_INFOS.items()}}


def info_name(info: Info) -> str:
    return next(name for name, candidate in DEVICE_INFOS.items() if candidate == info)


def build_vectors() -> dict[str, Any]:
    rng = random.Random(20261125)
    img = [_image(rng) for _ in range(4)]
    hello1 = frame(HELLO, 1)
    infer2 = frame(INFER, 2, img[0])
    bad_crc = bytearray(raw_frame(INFER, 3, img[1]))
    bad_crc[100] ^= 0x01
    window = [frame(INFER, 10 + i, img[i % 4]) for i in range(WINDOW + 1)]
    garbage = _nonzero_bytes(rng, 40)
    half = len(infer2) // 2

    cobs_cases = [
        ("empty", b""), ("one zero", b"\x00"), ("two zeros", b"\x00\x00"),
        ("zero run", b"\x11\x00\x00\x00\x22"), ("no zero", b"\x11\x22\x33\x44"),
        ("trailing zero", b"\x11\x22\x00"), ("leading zero", b"\x00\x11"),
        ("253 non-zero", _nonzero_bytes(rng, 253)), ("254 non-zero", _nonzero_bytes(rng, 254)),
        ("255 non-zero", _nonzero_bytes(rng, 255)), ("508 non-zero", _nonzero_bytes(rng, 508)),
        ("254 non-zero then zero", _nonzero_bytes(rng, 254) + b"\x00"),
        ("zero then 254 non-zero", b"\x00" + _nonzero_bytes(rng, 254)),
        ("all byte values", bytes(range(256))),
    ]
    tiny_ok = bytes([1, 2, 3, 4, 5, 6, 7, 8])
    exchanges = [
        _exchange("hello", MNIST_LIKE, [hello1], "HELLO -> INFO with the same seq"),
        _exchange("infer", MNIST_LIKE, [hello1, infer2], "INFER -> RESULT, 25 us from the fake clock"),
        _exchange("infer repeated", MNIST_LIKE, [infer2, infer2],
                  "the second answer is replayed from the cache: flag bit 1, same timing"),
        _exchange("hello clears the cache", MNIST_LIKE, [infer2, hello1, infer2],
                  "after HELLO the same seq runs again (flags 0)"),
        _exchange("window eviction", MNIST_LIKE, [*window, window[0], window[-1]],
                  f"{WINDOW + 1} requests: the oldest is evicted and runs again, the newest is replayed"),
        _exchange("bad crc", MNIST_LIKE, [wire(bytes(bad_crc))], "one flipped payload bit -> NACK 1"),
        _exchange("bad cobs", MNIST_LIKE, [b"\x05\x11\x22\x00"], "block cut by the delimiter -> NACK 2"),
        _exchange("too short", MNIST_LIKE, [wire(raw_frame(HELLO, 1)[:5]), wire(raw_frame(HELLO, 1)[:8])],
                  "5 and 8 raw bytes -> NACK 3"),
        _exchange("bad length", MNIST_LIKE, [wire(raw_frame(HELLO, 1, length=3))],
                  "len says 3, no payload -> NACK 4"),
        _exchange("oversize frame", MNIST_LIKE, [frame(INFER, 4, img[1] + b"\x01")],
                  "794 raw bytes > 9 + max_payload -> ERROR 16, seq 0xFFFF"),
        _exchange("oversize garbage", MNIST_LIKE, [_nonzero_bytes(rng, 2000) + b"\x00", hello1],
                  "2000 bytes without a delimiter -> ERROR 16; the next frame is answered"),
        _exchange("unknown type", MNIST_LIKE, [frame(9, 5), frame(INFO, 6), frame(0, 7)],
                  "type 9, a device->host type and type 0 -> ERROR 18"),
        _exchange("profile", MNIST_LIKE, [hello1, frame(PROFILE, 14, img[2]), frame(PROFILE, 14, img[2])],
                  "PROFILE -> PROFILE_RESULT: flags 0, 1 op, the whole invoke 75 us (4 clock reads), "
                  "the op 'invoke' 25 us; the same seq runs again (never cached)"),
        _exchange("profile with cycles", CYCLES_INFO, [frame(PROFILE, 15, img[3])],
                  "clock_hz 64 MHz: flags 1, ticks are cycles (25 us x 64 per read)"),
        _exchange("profile refused", MNIST_LIKE,
                  [frame(PROFILE, 16, img[0][:783]), frame(PROFILE, 17, _image(rng, first=0x80))],
                  "PROFILE of 783 bytes -> ERROR 19; an input the mock engine fails on -> ERROR 21"),
        _exchange("profile not ready", NOT_READY_INFO, [frame(PROFILE, 18, img[0])],
                  "PROFILE before the model started -> ERROR 20 with the message"),
        _exchange("bad version", MNIST_LIKE, [frame(HELLO, 8, version=2), frame(INFER, 9, img[0], version=0)],
                  "version 2 and 0 -> ERROR 17 with the request's seq"),
        _exchange("wrong payload size", MNIST_LIKE,
                  [frame(INFER, 11, img[0][:783]), frame(HELLO, 12, b"\x01")],
                  "INFER of 783 bytes and HELLO with a payload -> ERROR 19"),
        _exchange("engine not ready", NOT_READY_INFO, [hello1, infer2],
                  "INFO reports status 3 and the message; INFER -> ERROR 20 with the message cut to 48"),
        _exchange("invoke failed", MNIST_LIKE, [frame(INFER, 13, _image(rng, first=0x80))] * 2,
                  "the mock engine fails on input[0] == -128 -> ERROR 21, not cached"),
        _exchange("resync after garbage", MNIST_LIKE, [garbage, b"\x00", infer2],
                  "garbage is answered at the 0x00 (with whatever it decodes to), then the clean frame"),
        _exchange("garbage glued to a frame", MNIST_LIKE, [garbage + infer2, b"\x00" + infer2],
                  "a frame glued to garbage is lost; after a 0x00 the same frame is answered"),
        _exchange("empty frames", MNIST_LIKE, [b"\x00\x00\x00", hello1 + b"\x00"],
                  "empty frames are ignored"),
        _exchange("byte by byte", MNIST_LIKE, [hello1[i:i + 1] for i in range(len(hello1))],
                  "a frame fed one byte at a time is answered at its delimiter"),
        _exchange("two frames in one chunk", MNIST_LIKE, [hello1 + infer2], "both are answered, in order"),
        _exchange("reset mid-frame", MNIST_LIKE, [infer2[:half], None, infer2],
                  "a reset drops the partial frame"),
        _exchange("reset clears the cache", MNIST_LIKE, [infer2, None, infer2],
                  "after a reset the seq runs again"),
        _exchange("cycle counter", CYCLES_INFO, [hello1, infer2, infer2],
                  "clock_hz 64 MHz: RESULT flags 1 with 25 us x 64 cycles; the replay keeps them "
                  "(flags 3)"),
        *(_exchange(f"startup status {status}", info, [hello1, infer2],
                    f"INFO reports start-up status {status} and its message; INFER -> ERROR 20")
          for status, info in STARTUP_FAILURE_INFOS.items()),
        _exchange("tiny model", TINY, [hello1, frame(INFER, 2, tiny_ok), frame(INFER, 3, bytes(9)),
                                       frame(INFER, 4, bytes(167))],
                  "8-byte input: max_payload is 166 (the INFO size), so 167 bytes is FRAME_TOO_LARGE"),
    ]
    return {
        "protocol_version": 1,
        "generated_by": "tests/core_reference.py (independent of the C++ core)",
        "crc32": [{"ascii": "123456789", "data": b"123456789".hex(), "crc": "cbf43926"},
                  {"ascii": "", "data": "", "crc": f"{crc32(b''):08x}"},
                  {"ascii": None, "data": bytes(range(256)).hex(), "crc": f"{crc32(bytes(range(256))):08x}"}],
        "cobs": [{"name": name, "raw": raw.hex(), "encoded": cobs_encode(raw).hex()}
                 for name, raw in cobs_cases],
        "frames": [
            {"name": "HELLO seq 1", "type": HELLO, "seq": 1, "payload": "", "wire": hello1.hex()},
            {"name": "INFER seq 2 (784 bytes)", "type": INFER, "seq": 2, "payload": img[0].hex(),
             "wire": infer2.hex()},
        ],
        "mock_engine": "output[j] = int8(sum of the input bytes read as int8 + 3*j) for j < output bytes; "
                       "invoke fails when input[0] == -128",
        "fake_clock": {"start_us": CLOCK_START_US, "step_us": CLOCK_STEP_US,
                       "note": "each read returns the time, then advances; read twice per fresh INFER, "
                               "four times when clock_hz is not 0 (micros, cycles, cycles, micros; "
                               "cycles = the read x clock_hz / 1e6); four times per PROFILE (start, "
                               "op start, op end, end), as cycles when clock_hz is not 0"},
        "device_infos": {name: info.to_json() for name, info in DEVICE_INFOS.items()},
        "exchanges": exchanges,
    }


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        print("usage: python tests/core_reference.py --write", file=sys.stderr)
        return 2
    import json

    from common.atomic import write_text

    write_text(VECTORS_PATH, json.dumps(build_vectors(), indent=1) + "\n")
    print(f"wrote {VECTORS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
