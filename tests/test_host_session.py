"""Session rules of docs/protocol.md section 6, against a scripted device with a fake clock.

The device here is a few lines of Python that answers in order like the firmware; each test
makes it lose or damage one specific thing, so every retransmission rule is hit exactly.
(The C++ core over a real pty is covered in test_host_virtual.py.)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from core_reference import Info as RefInfo
from core_reference import Tensor as RefTensor

from common.errors import DeviceError
from common.quant import IoSpec, TensorSpec
from host_tools import timing
from host_tools.framing import SEQ_UNKNOWN, StreamDecoder, build_frame, parse_frame
from host_tools.messages import Code, MsgType
from host_tools.session import ExpectedModel, ProfileNotSupported, Session

HASH = "0123456789abcdef"
IN_BYTES, OUT_BYTES = 6, 3
IO = IoSpec(
    input=TensorSpec("in", (1, IN_BYTES), "int8", 0.5, -1),
    output=TensorSpec("out", (1, OUT_BYTES), "int8", 0.25, 2),
)
EXPECTED = ExpectedModel(path=Path("model_int8.tflite"), model_hash=HASH, io=IO)


def info_payload(model_hash: str = HASH, window: int = 4) -> bytes:
    """The INFO of the device below as the test oracle (tests/core_reference.py) lays it out,
    not with the host's own decoder format; ``window`` replaces the firmware's window (byte 4)."""
    info = RefInfo(input=RefTensor((1, IN_BYTES), 0.5, -1), output=RefTensor((1, OUT_BYTES), 0.25, 2),
                   arena_size=4096, arena_used=1000, model_hash=bytes.fromhex(model_hash), model_size=1234,
                   board_name="fake")
    payload = bytearray(info.payload())
    payload[4] = window
    return bytes(payload)


def outputs_for(payload: bytes) -> bytes:
    return bytes((sum(payload) + j) & 0xFF for j in range(OUT_BYTES))


@dataclass
class FakeDevice:
    """Answers frames in order; ``lose``/``damage`` name INFER seqs whose first copy goes wrong.

    The handshake takes seq 0, so sample i travels with seq i + 1.
    """

    model_hash: str = HASH
    lose: set[int] = field(default_factory=set)
    damage: set[int] = field(default_factory=set)
    duplicate_results: bool = False
    silent_after: int | None = None  # infers answered before the device goes quiet until HELLO
    error_code: int | None = None
    profile_error: int | None = None  # ERROR code a PROFILE gets
    profiles_run: int = 0
    infers_run: int = 0
    hellos: int = 0
    received: list[int] = field(default_factory=list)  # INFER seqs in arrival order, copies included
    out: bytearray = field(default_factory=bytearray)
    decoder: StreamDecoder = field(default_factory=StreamDecoder)

    def receive(self, data: bytes) -> None:
        for encoded in self.decoder.feed(data):
            frame = parse_frame(encoded)
            if frame.msg_type == MsgType.HELLO:
                self.hellos += 1
                if self.hellos > 1:  # a new handshake wakes a device that went quiet
                    self.silent_after = None
                self.out += build_frame(MsgType.INFO, frame.seq, info_payload(self.model_hash))
                continue
            seq = frame.seq
            self.received.append(seq)
            if seq in self.lose:
                self.lose.discard(seq)
                continue
            if seq in self.damage:
                self.damage.discard(seq)
                self.out += build_frame(MsgType.NACK, SEQ_UNKNOWN, bytes([Code.BAD_CRC]))
                continue
            if self.silent_after is not None and self.infers_run >= self.silent_after:
                continue
            if self.error_code is not None:
                self.out += build_frame(MsgType.ERROR, seq, bytes([self.error_code]) + b"nope")
                continue
            if frame.msg_type == MsgType.PROFILE:
                if self.profile_error is not None:
                    self.out += build_frame(MsgType.ERROR, seq, bytes([self.profile_error]))
                    continue
                # Laid out as docs/protocol.md section 4 says, not with the host's structs.
                self.profiles_run += 1
                body = bytes([1, 2]) + (900).to_bytes(4, "little")
                for name, ticks in ((b"CONV_2D", 700), (b"SOFTMAX", 150)):
                    body += ticks.to_bytes(4, "little") + bytes([len(name)]) + name
                self.out += build_frame(MsgType.PROFILE_RESULT, seq, body)
                continue
            self.infers_run += 1
            reply = build_frame(
                MsgType.RESULT, seq, struct.pack("<BII", 0, 5, 0) + outputs_for(frame.payload)
            )
            self.out += reply * (2 if self.duplicate_results else 1)


class FakeLink:
    """The device on the other end of a wire; time passes only while the host waits."""

    port = "/dev/fake"

    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.now = 0.0
        self.bytes_sent = 0
        self.bytes_received = 0

    def clock(self) -> float:
        return self.now

    def write(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self.device.receive(data)

    def read(self, timeout: float) -> bytes:
        if not self.device.out:
            self.now += max(timeout, 0.001)  # a real clock always moves on
            return b""
        data, self.device.out[:] = bytes(self.device.out), b""
        self.bytes_received += len(data)
        return data


def run_session(device: FakeDevice, n: int = 20) -> tuple[dict[int, bytes], Session, FakeLink]:
    link = FakeLink(device)
    session = Session(link, EXPECTED, clock=link.clock)  # type: ignore[arg-type]
    items = [(i, bytes([i, 1, 2, 3, 4, 5])) for i in range(n)]
    results: dict[int, bytes] = {}
    for index, result in session.stream(items):
        assert index not in results, "an index was yielded twice"
        results[index] = result.output
    assert results == {i: outputs_for(p) for i, p in items}
    return results, session, link


def test_clean_run_needs_no_recovery() -> None:
    _, session, _ = run_session(FakeDevice())
    assert session.stats.retransmissions == 0 and session.stats.handshakes == 1


def test_lost_request_is_resent_when_a_later_result_arrives() -> None:
    device = FakeDevice(lose={3})
    _, session, link = run_session(device)
    assert session.stats.retransmissions == 1 and session.stats.timeouts == 0
    assert device.infers_run == 20  # the lost one ran once, nothing ran twice
    assert link.now < timing.REPLY_TIMEOUT_BASE_S  # recovered without waiting for a timeout


def test_nack_resends_the_oldest_unanswered() -> None:
    device = FakeDevice(damage={5})
    _, session, _ = run_session(device)
    assert session.stats.nacks == 1 and session.stats.retransmissions == 1
    # Seq 5 went out first among those unanswered when the NACK came: it alone is sent again.
    assert sorted(seq for seq in set(device.received) if device.received.count(seq) > 1) == [5]
    assert len(device.received) == 21


def test_lost_last_request_is_resent_after_the_reply_timeout() -> None:
    _, session, link = run_session(FakeDevice(lose={20}))
    assert session.stats.timeouts == 1 and session.stats.retransmissions == 1
    assert link.now >= timing.REPLY_TIMEOUT_BASE_S


def test_duplicate_results_count_once() -> None:
    _, session, _ = run_session(FakeDevice(duplicate_results=True))
    assert session.stats.duplicates == 20


def test_device_that_goes_quiet_gets_a_new_handshake() -> None:
    device = FakeDevice(silent_after=7)
    _, session, _ = run_session(device)
    assert device.hellos == 2 and session.stats.handshakes == 2
    assert session.stats.timeouts == timing.MAX_RETRIES + 1


def test_silent_device_fails_in_bounded_time() -> None:
    device = FakeDevice(silent_after=0)
    device.receive = lambda data: None  # type: ignore[method-assign]
    link = FakeLink(device)
    silent = f"no answer from /dev/fake after {timing.HELLO_ATTEMPTS} handshakes"
    with pytest.raises(DeviceError, match=silent):
        Session(link, EXPECTED, clock=link.clock).handshake()  # type: ignore[arg-type]
    assert link.now <= timing.HELLO_ATTEMPTS * timing.HELLO_TIMEOUT_S + 0.1


def test_wrong_model_names_the_file_to_flash() -> None:
    link = FakeLink(FakeDevice(model_hash="fedcba9876543210"))
    with pytest.raises(DeviceError) as err:
        Session(link, EXPECTED, clock=link.clock).handshake()  # type: ignore[arg-type]
    text = str(err.value)
    assert "device runs model fedcba9876543210, run folder has 0123456789abcdef" in text
    assert "model_int8.tflite" in text and "make flash" in text


def test_fatal_error_reply_stops_with_its_name() -> None:
    with pytest.raises(DeviceError, match="BAD_PAYLOAD: nope"):
        run_session(FakeDevice(error_code=Code.BAD_PAYLOAD))


def test_sequence_numbers_wrap_without_using_ffff() -> None:
    device = FakeDevice()
    link = FakeLink(device)
    session = Session(link, EXPECTED, clock=link.clock)  # type: ignore[arg-type]
    session._seq = 0xFFFD  # start just below the wrap
    seen = []
    original = device.receive

    def spy(data: bytes) -> None:
        seen.extend(parse_frame(f).seq for f in StreamDecoder().feed(data))
        original(data)

    device.receive = spy  # type: ignore[method-assign]
    outs = dict(session.stream([(i, bytes(IN_BYTES)) for i in range(6)]))
    assert len(outs) == 6
    assert SEQ_UNKNOWN not in seen and 0 in seen


def test_device_of_another_protocol_version_is_named() -> None:
    device = FakeDevice()
    link = FakeLink(device)
    device.receive = lambda data: device.out.extend(build_frame(MsgType.INFO, 0, info_payload(), version=2))  # type: ignore[method-assign]
    with pytest.raises(DeviceError, match="protocol version 2, this host speaks 1"):
        Session(link, EXPECTED, clock=link.clock).handshake()  # type: ignore[arg-type]


def test_garbage_instead_of_replies_still_times_out() -> None:
    """A device that only babbles (no valid frame) must not keep the host waiting forever."""
    device = FakeDevice()
    link = FakeLink(device)
    session = Session(link, EXPECTED, clock=link.clock)  # type: ignore[arg-type]
    session.handshake()
    device.receive = lambda data: device.out.extend(b"\x07garbage\x00")  # type: ignore[method-assign]
    with pytest.raises(DeviceError, match="no answer"):
        list(session.stream([(0, bytes(IN_BYTES))]))
    assert session.stats.resyncs > 0 and session.stats.timeouts >= timing.MAX_RETRIES


def test_profile_is_decoded_and_a_damaged_request_resent() -> None:
    device = FakeDevice(damage={1})  # the handshake takes seq 0: the first PROFILE is NACKed
    link = FakeLink(device)
    session = Session(link, EXPECTED, clock=link.clock)  # type: ignore[arg-type]
    reply = session.profile(bytes(IN_BYTES))
    assert device.profiles_run == 1 and session.stats.retransmissions == 1
    assert reply.cycles_valid and not reply.truncated and reply.total_ticks == 900
    assert [(op.name, op.ticks) for op in reply.ops] == [("CONV_2D", 700), ("SOFTMAX", 150)]


def test_a_firmware_that_cannot_profile_is_named_in_one_error() -> None:
    device = FakeDevice(profile_error=Code.UNKNOWN_TYPE)
    link = FakeLink(device)
    session = Session(link, EXPECTED, clock=link.clock)  # type: ignore[arg-type]
    with pytest.raises(ProfileNotSupported, match="cannot profile: its firmware predates PROFILE"):
        session.profile(bytes(IN_BYTES))


def test_a_silent_device_ends_a_profile_in_bounded_time() -> None:
    device = FakeDevice(silent_after=0)
    link = FakeLink(device)
    session = Session(link, EXPECTED, clock=link.clock)  # type: ignore[arg-type]
    session.handshake()
    device.lose = set(range(1, 100))
    with pytest.raises(DeviceError, match="no profile"):
        session.profile(bytes(IN_BYTES))
    assert link.now < 60
