"""A conversation with one device: handshake, model check, windowed streaming with retransmission.

Implements docs/protocol.md section 6. The device answers strictly in order, so the host can
tell a lost request from a slow one: a RESULT for a later request means every earlier
unanswered one was lost. Retransmits are idempotent on the device, and here the first
RESULT for a sequence number wins, so no sample is lost or counted twice.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import DeviceError
from common.quant import IoSpec, TensorSpec
from host_tools import timing
from host_tools.framing import DELIMITER, PROTOCOL_VERSION, FrameError, StreamDecoder, parse_frame, wire_size
from host_tools.link import SerialLink
from host_tools.messages import (
    Code,
    ErrorReply,
    Info,
    MessageError,
    Nack,
    ProfileResult,
    Result,
    decode_reply,
    encode_hello,
    encode_infer,
    encode_profile,
)

# Sequence numbers wrap below this value; 0xFFFF is reserved for replies to damaged frames.
SEQ_MODULUS = 0xFFFF
# ERROR codes answered by resending (a lost delimiter can merge two frames into one too large).
RESEND_CODES = frozenset({Code.FRAME_TOO_LARGE})
FLASH_HINT = (
    "install its model and flash it with `make flash RUN=<run folder>`"
)


class ProfileNotSupported(DeviceError):
    """The firmware cannot time ops (too old, or its engine does not profile)."""


@dataclass(frozen=True)
class ExpectedModel:
    """The model of the run folder, which the device must be running."""

    path: Path
    model_hash: str
    io: IoSpec
    # Estimated Invoke() time on the device (convert's fitted estimate at one cycle per
    # instruction), so a slow model's first replies are not mistaken for losses before any
    # invoke time is measured.
    invoke_estimate_s: float = 0.0


@dataclass
class LinkStats:
    retransmissions: int = 0
    nacks: int = 0
    resyncs: int = 0
    timeouts: int = 0
    handshakes: int = 0
    replayed: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _same_f32(a: float, b: float) -> bool:
    return bool(np.float32(a) == np.float32(b))


def _tensor_mismatch(
    kind: str, spec: TensorSpec, dtype: str, shape: tuple[int, ...], scale: float, zero_point: int
) -> str | None:
    if dtype != spec.dtype:
        return f"{kind} dtype {dtype} (model: {spec.dtype})"
    if tuple(shape) != tuple(spec.shape):
        return f"{kind} shape {list(shape)} (model: {list(spec.shape)})"
    if not _same_f32(scale, spec.scale) or zero_point != spec.zero_point:
        return (
            f"{kind} quantization scale {scale:.6g} zero point {zero_point} "
            f"(model: {spec.scale:.6g}, {spec.zero_point})"
        )
    return None


def check_info(info: Info, expected: ExpectedModel, flash_hint: str = FLASH_HINT) -> None:
    """Raise a one-line ``DeviceError`` unless the device runs the run folder's model, ready."""
    if info.model_hash != expected.model_hash:
        raise DeviceError(
            f"device runs model {info.model_hash}, run folder has {expected.model_hash} "
            f"({expected.path}): {flash_hint}"
        )
    if info.startup_status != 0:
        detail = f": {info.startup_error}" if info.startup_error else ""
        raise DeviceError(f"device failed to start the model ({info.startup_name}){detail}")
    io = expected.io
    for problem in (
        _tensor_mismatch(
            "input", io.input, info.input_dtype, info.input_shape, info.input_scale, info.input_zero_point
        ),
        _tensor_mismatch(
            "output",
            io.output,
            info.output_dtype,
            info.output_shape,
            info.output_scale,
            info.output_zero_point,
        ),
    ):
        if problem:
            raise DeviceError(
                f"device reports {problem} although the model hash matches {expected.path}: "
                f"the firmware settings are stale; {flash_hint}"
            )
    if info.window < 1:
        raise DeviceError("device advertises a window of 0 requests: firmware bug")


@dataclass
class _Pending:
    index: int
    frame: bytes
    stamp: int  # send order of the last transmission
    first_stamp: int  # send order of the first transmission
    retries: int = 0


@dataclass
class _Stream:
    """State of one streaming run; kept on the session so a re-handshake can hand results over."""

    inflight: OrderedDict[int, _Pending] = field(default_factory=OrderedDict)
    early: list[Result] = field(default_factory=list)


class Session:
    """Handshake and stream INFER requests over one link."""

    def __init__(
        self,
        link: SerialLink,
        expected: ExpectedModel | None = None,
        flash_hint: str = FLASH_HINT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.link = link
        self.expected = expected
        self.flash_hint = flash_hint
        self.stats = LinkStats()
        self.info: Info | None = None
        self._clock = clock
        self._decoder = StreamDecoder()
        self._seq = 0
        self._stream: _Stream | None = None
        self._stamp = 0
        # Longest Invoke() the device has reported: replies may be that far apart.
        self._invoke_max_s = 0.0
        # New handshakes since the last accepted RESULT (a long run may meet many glitches;
        # only a device that never recovers in between is given up on).
        self._rehandshakes = 0
        # Called whenever the host is about to wait on a silent device (e.g. to flush a
        # journal, so a kill during a long silence loses nothing already received).
        self.on_idle: Callable[[], None] | None = None

    def _idle(self) -> None:
        if self.on_idle is not None:
            self.on_idle()

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % SEQ_MODULUS
        return seq

    def _frames(self, timeout: float) -> list[bytes]:
        chunk = self.link.read(timeout)
        frames = self._decoder.feed(chunk)
        self.stats.resyncs += self._decoder.oversized
        self._decoder.oversized = 0
        return frames

    def _decode(self, encoded: bytes) -> Info | Result | ProfileResult | Nack | ErrorReply | None:
        """A reply, or None for a damaged one (the host resynchronises at the next delimiter)."""
        try:
            frame = parse_frame(encoded)
        except FrameError:
            self.stats.resyncs += 1
            return None
        if frame.version != PROTOCOL_VERSION:
            raise DeviceError(
                f"device speaks protocol version {frame.version}, this host speaks {PROTOCOL_VERSION}: "
                "update the firmware or the host tools"
            )
        try:
            return decode_reply(frame)
        except MessageError:
            self.stats.resyncs += 1
            return None

    # -- handshake ---------------------------------------------------------------------------

    def handshake(self) -> Info:
        """HELLO until INFO answers (checked against the expected model), or a ``DeviceError``."""
        self.stats.handshakes += 1
        self._idle()
        started = self._clock()
        for _ in range(timing.HELLO_ATTEMPTS):
            seq = self._next_seq()
            # The leading 0x00 flushes whatever partial frame the device holds.
            self.link.write(DELIMITER + encode_hello(seq))
            deadline = self._clock() + timing.HELLO_TIMEOUT_S + self._queued_work_s()
            while (left := deadline - self._clock()) > 0:
                for encoded in self._frames(min(left, timing.READ_SLICE_S)):
                    reply = self._decode(encoded)
                    if isinstance(reply, Info) and reply.seq == seq:
                        return self._accept(reply)
                    if isinstance(reply, Result) and self._stream is not None:
                        # Answers to requests sent before the HELLO are still valid results.
                        self._stream.early.append(reply)
        raise DeviceError(
            f"no answer from {self.link.port} after {timing.HELLO_ATTEMPTS} handshakes "
            f"({self._clock() - started:.1f} s): is the firmware flashed and is this "
            "the board's port? (see `python -m host_tools ports`)"
        )

    def _accept(self, info: Info) -> Info:
        if info.protocol_version != PROTOCOL_VERSION:
            raise DeviceError(
                f"device speaks protocol version {info.protocol_version}, this host speaks "
                f"{PROTOCOL_VERSION}: update the firmware or the host tools"
            )
        self.info = info
        if self.expected is not None:
            check_info(info, self.expected, self.flash_hint)
        return info

    # -- timing ------------------------------------------------------------------------------

    def _invoke_s(self) -> float:
        """Longest Invoke() to allow for: convert's estimate or the longest the device reported,
        never above ``timing.MAX_INVOKE_S`` (reports above it are refused in ``stream``)."""
        expected = self.expected.invoke_estimate_s if self.expected is not None else 0.0
        return min(max(expected, self._invoke_max_s), timing.MAX_INVOKE_S)

    def _queued_work_s(self) -> float:
        """Time the device may still spend on requests queued before a new HELLO."""
        window = self.info.window if self.info is not None else 1
        return min(window * timing.INVOKE_TIMEOUT_FACTOR * self._invoke_s(), timing.MAX_QUEUED_WORK_S)

    def _reply_timeout(self, info: Info) -> float:
        """Longest silence between replies before requests count as lost (protocol.md section 7)."""
        transfer = timing.reply_timeout(wire_size(info.max_payload))
        return transfer + timing.INVOKE_TIMEOUT_FACTOR * self._invoke_s()

    def _limit(self, window: int | None) -> int:
        # Read on every round: a new handshake may have met a reflashed device with another window.
        assert self.info is not None
        return self.info.window if window is None else max(1, min(window, self.info.window))

    # -- streaming ---------------------------------------------------------------------------

    def stream(
        self, items: Iterable[tuple[int, bytes]], window: int | None = None
    ) -> Iterator[tuple[int, Result]]:
        """Send each (index, input tensor bytes) as INFER; yield (index, RESULT) as they arrive.

        A new request goes out as soon as a credit returns, so the link never idles while
        the window is open; all replies already received are handled before sending.
        Results come in request order as long as nothing is lost; after a retransmission the
        order may differ. Each index is yielded exactly once.
        """
        info = self.info or self.handshake()
        out_bytes = int(np.prod(info.output_shape))
        source = iter(items)
        state = self._stream = _Stream()
        inflight = state.inflight
        exhausted = False
        last_progress = self._clock()
        try:
            while True:
                limit = self._limit(window)
                if not exhausted and len(inflight) < limit:
                    batch: list[bytes] = []
                    while len(inflight) < limit:
                        item = next(source, None)
                        if item is None:
                            exhausted = True
                            break
                        seq = self._next_seq()
                        frame = encode_infer(seq, item[1])
                        self._stamp += 1
                        inflight[seq] = _Pending(item[0], frame, self._stamp, self._stamp)
                        batch.append(frame)
                    if batch:
                        self.link.write(b"".join(batch))
                        last_progress = self._clock()
                if not inflight:
                    return
                replies: list[Info | Result | ProfileResult | Nack | ErrorReply | None] = list(state.early)
                state.early.clear()
                timeout = self._reply_timeout(self.info or info)
                wait = last_progress + timeout - self._clock()
                if not replies:
                    frames = self._frames(max(0.0, min(wait, timing.READ_SLICE_S)))
                    if not frames:
                        self._idle()
                    replies = [self._decode(f) for f in frames]
                for reply in replies:
                    if reply is None:
                        continue
                    last_progress = self._clock()
                    if isinstance(reply, Result):
                        pending = inflight.pop(reply.seq, None)
                        if pending is None:
                            self.stats.duplicates += 1
                            continue
                        if len(reply.output) != out_bytes:
                            raise DeviceError(
                                f"device sent {len(reply.output)} output bytes, "
                                f"{out_bytes} expected: firmware bug"
                            )
                        if reply.replayed:
                            self.stats.replayed += 1
                        if reply.invoke_us / 1e6 > timing.MAX_INVOKE_S:
                            raise DeviceError(
                                f"device claims an Invoke() of {reply.invoke_us / 1e6:,.1f} s, more than "
                                f"the {timing.MAX_INVOKE_S:g} s any model that fits the board needs: "
                                "faulty device or firmware; reset or reflash it"
                            )
                        self._rehandshakes = 0
                        self._invoke_max_s = max(self._invoke_max_s, reply.invoke_us / 1e6)
                        self._resend_older(inflight, pending)
                        yield pending.index, reply
                    elif isinstance(reply, Nack) or (
                        isinstance(reply, ErrorReply) and reply.code in RESEND_CODES
                    ):
                        self.stats.nacks += 1
                        if inflight:
                            self._resend(inflight, [next(iter(inflight))])
                    elif isinstance(reply, ErrorReply):
                        self._fatal(reply)
                # Damaged replies (None) are no progress: a stream of garbage must still time out.
                if self._clock() - last_progress >= timeout:
                    self.stats.timeouts += 1
                    self._recover(inflight)
                    last_progress = self._clock()
        finally:
            self._stream = None

    def _resend_older(self, inflight: OrderedDict[int, _Pending], answered: _Pending) -> None:
        """Rule 2: the device answers in order, so requests whose latest copy went out before
        the answered request's first copy were lost.

        The RESULT may answer any copy of ``answered``, so only its first send is a safe
        boundary: comparing with its latest send would declare every request sent between
        its copies lost and resend the whole window after each NACK. ``inflight`` is ordered
        by last send, so the lost ones are the leading entries.
        """
        older = []
        for seq, pending in inflight.items():
            if pending.stamp >= answered.first_stamp:
                break
            older.append(seq)
        if older:
            self._resend(inflight, older)

    def _resend(self, inflight: OrderedDict[int, _Pending], seqs: list[int]) -> None:
        parts = []
        needs_handshake = False
        for seq in seqs:
            pending = inflight[seq]
            pending.retries += 1
            needs_handshake |= pending.retries > timing.MAX_RETRIES
            inflight.move_to_end(seq)
            self._stamp += 1
            pending.stamp = self._stamp
            parts.append(DELIMITER + pending.frame)
        self.stats.retransmissions += len(seqs)
        if needs_handshake:
            self._rehandshake(inflight)
            return
        self.link.write(b"".join(parts))

    def _recover(self, inflight: OrderedDict[int, _Pending]) -> None:
        """Rule 3: silence for a whole reply timeout; resend everything unanswered."""
        self._resend(inflight, list(inflight))

    def _rehandshake(self, inflight: OrderedDict[int, _Pending]) -> None:
        self._rehandshakes += 1
        if self._rehandshakes > timing.MAX_REHANDSHAKES:
            raise DeviceError(
                f"device on {self.link.port} keeps losing requests after "
                f"{timing.MAX_REHANDSHAKES} new handshakes: check the cable and reset the board"
            )
        self._decoder.reset()
        self.handshake()
        for pending in inflight.values():
            pending.retries = 0
            self._stamp += 1
            pending.stamp = self._stamp
        self.link.write(b"".join(DELIMITER + p.frame for p in inflight.values()))

    # -- profiling ---------------------------------------------------------------------------

    def profile(self, tensor: bytes) -> ProfileResult:
        """One inference of ``tensor`` with each op timed (PROFILE, protocol.md section 4).

        Sent alone, after any stream: a damaged request or reply is resent (a PROFILE is a
        measurement, so running it twice is harmless) up to ``timing.HELLO_ATTEMPTS`` times."""
        if self.info is None:
            self.handshake()
        assert self.info is not None
        timeout = self._reply_timeout(self.info)
        for attempt in range(timing.HELLO_ATTEMPTS):
            if attempt:
                self.stats.retransmissions += 1
            seq = self._next_seq()
            self.link.write(DELIMITER + encode_profile(seq, tensor))
            deadline = self._clock() + timeout
            resend = False
            while not resend and (left := deadline - self._clock()) > 0:
                for encoded in self._frames(min(left, timing.READ_SLICE_S)):
                    reply = self._decode(encoded)
                    if isinstance(reply, ProfileResult) and reply.seq == seq:
                        return reply
                    if isinstance(reply, Nack):
                        self.stats.nacks += 1
                        resend = True
                    elif isinstance(reply, ErrorReply) and reply.seq == seq:
                        if reply.code == Code.UNKNOWN_TYPE:
                            detail = reply.message or "its firmware predates PROFILE: update it"
                            raise ProfileNotSupported(f"{self.link.port} cannot profile: {detail}")
                        if reply.code in RESEND_CODES:
                            resend = True
                        else:
                            self._fatal(reply)
        raise DeviceError(f"no profile from {self.link.port} after {timing.HELLO_ATTEMPTS} requests")

    def _fatal(self, reply: ErrorReply) -> None:
        detail = f": {reply.message}" if reply.message else ""
        if reply.code == Code.NOT_READY:
            raise DeviceError(f"device is not ready (the model failed at start-up){detail}")
        raise DeviceError(f"device refused request {reply.seq} with {reply.name}{detail}")
