"""The byte transport: a serial port opened exclusively, with bounded reads and writes.

``port`` is a device path or any pyserial URL (``socket://host:port`` for a board served
over TCP on a lab machine, ``rfc2217://host:port`` for a Telnet-COM-port server), opened
with ``serial.serial_for_url``. Errors a user can fix (missing port, busy port, no
permission, refused connection) become one-line ``DeviceError``s here, so no layer above
ever sees a ``SerialException``. With a trace stream, every frame in both directions is
logged there, decoded (``FrameTrace``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import sys
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TextIO

import serial

from common.errors import DeviceError, UsageError, first_line
from host_tools import timing
from host_tools.framing import PROTOCOL_VERSION, FrameError, StreamDecoder, parse_frame
from host_tools.messages import Code, MsgType

# One read takes whatever the OS holds, up to this much: few syscalls per frame.
READ_CHUNK = 1 << 16
# A frame longer than this is traced as too long (the decoder drops it, see StreamDecoder).
TRACE_MAX_FRAME = 1 << 17


def is_url(port: str) -> bool:
    """A pyserial URL (``socket://``, ``rfc2217://``, ``loop://``...) rather than a device path."""
    return "://" in port


class FrameTrace:
    """Logs every frame written or read, one line each: seconds since the link opened,
    direction (``->`` host to device, ``<-`` device to host), the decoded header (type, seq,
    payload length, the code of a NACK or ERROR) or why it does not decode, and the wire
    bytes in hex (without the delimiter)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._start = time.monotonic()
        self._decoders = {"->": StreamDecoder(TRACE_MAX_FRAME), "<-": StreamDecoder(TRACE_MAX_FRAME)}

    def sent(self, data: bytes) -> None:
        self._log("->", data)

    def received(self, data: bytes) -> None:
        self._log("<-", data)

    def _log(self, direction: str, data: bytes) -> None:
        decoder = self._decoders[direction]
        before = decoder.oversized
        frames = decoder.feed(data)
        stamp = time.monotonic() - self._start
        lines = [f"{stamp:10.6f} {direction} {describe_frame(f)} | {f.hex(' ')}\n" for f in frames]
        if decoder.oversized != before:
            lines.append(f"{stamp:10.6f} {direction} over {TRACE_MAX_FRAME} bytes without a delimiter: "
                         "dropped from the trace\n")
        if lines:
            self._stream.write("".join(lines))
            self._stream.flush()


def describe_frame(encoded: bytes) -> str:
    """A frame between delimiters in words: ``INFER seq 12 len 784`` or why it is bad."""
    try:
        frame = parse_frame(encoded)
    except FrameError as exc:
        return f"bad frame ({exc.fault.name}, {len(encoded)} bytes)"
    try:
        name = MsgType(frame.msg_type).name
    except ValueError:
        name = f"type {frame.msg_type}"
    text = f"{name} seq {frame.seq} len {len(frame.payload)}"
    if frame.version != PROTOCOL_VERSION:
        text += f" version {frame.version}"
    if frame.msg_type in (MsgType.NACK, MsgType.ERROR) and frame.payload:
        try:
            text += f" code {Code(frame.payload[0]).name}"
        except ValueError:
            text += f" code {frame.payload[0]}"
    return text


# --trace without a file name: the trace goes to stderr.
TRACE_TO_STDERR = "-"


@contextlib.contextmanager
def open_trace(target: str | None) -> Iterator[TextIO | None]:
    """The stream for ``--trace [FILE]``: None without it, stderr for ``-``, else FILE
    (overwritten)."""
    if target is None:
        yield None
        return
    if target == TRACE_TO_STDERR:
        yield sys.stderr
        return
    try:
        stream = open(target, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise UsageError(f"cannot write the trace to {target}: {exc.strerror or exc}") from None
    with stream:
        yield stream


def _open_error(port: str, exc: serial.SerialException) -> DeviceError:
    code = exc.errno
    text = str(exc)
    if is_url(port):
        # pyserial puts the URL and the socket error in one message: keep its first line.
        return DeviceError(f"cannot open {port}: {first_line(exc)}")
    if code == errno.ENOENT or "No such file" in text or "FileNotFoundError" in text:
        return DeviceError(f"port {port} not found (see `python -m host_tools ports`)")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return DeviceError(f"port {port} is busy (another program has it open: close the serial monitor)")
    if code in (errno.EACCES, errno.EPERM):
        return DeviceError(f"no permission to open {port} (on Linux add yourself to the dialout group)")
    return DeviceError(f"cannot open port {port}: {first_line(exc)}")


def _open(port: str) -> serial.Serial:
    # exclusive=True: two programs on one board would steal each other's replies (URL
    # handlers without a lock ignore it; the server side owns the port then).
    if port.lower().startswith("rfc2217://"):
        # pyserial's RFC 2217 client refuses a write timeout; its socket has its own (5 s
        # without progress), so its writes are bounded all the same.
        return serial.serial_for_url(port, baudrate=115200, timeout=0, exclusive=True)
    return serial.serial_for_url(port, baudrate=115200, timeout=0, exclusive=True,
                                 write_timeout=timing.WRITE_TIMEOUT_S)


class SerialLink:
    """A serial port (or a pyserial URL) carrying frames; counts the bytes it moves."""

    def __init__(self, port: str, trace: TextIO | None = None) -> None:
        self.port = port
        self.bytes_sent = 0
        self.bytes_received = 0
        self._trace = FrameTrace(trace) if trace is not None else None
        try:
            self._ser = _open(port)
        except serial.SerialException as exc:
            raise _open_error(port, exc) from None
        except ValueError as exc:  # an unknown URL scheme
            raise DeviceError(f"cannot open {port}: {exc}") from None
        except OSError as exc:  # pyserial lets some open failures through unwrapped
            raise _open_error(port, serial.SerialException(exc.errno, str(exc))) from None
        self._fd: int | None = None
        try:
            self._fd = self._ser.fileno()
        except (AttributeError, serial.SerialException, OSError):
            self._fd = None  # no selectable descriptor: fall back to pyserial's own reads
        # A socket's descriptor is only waited on: pyserial's read then tells a closed
        # connection from an empty one, which a plain os.read cannot.
        self._raw_reads = self._fd is not None and not is_url(port)
        self._ser.reset_input_buffer()

    def write(self, data: bytes) -> None:
        try:
            self._ser.write(data)
        except serial.SerialTimeoutException:
            raise DeviceError(
                f"port {self.port} stopped accepting data for {timing.WRITE_TIMEOUT_S:.0f} s "
                "(the device hangs: reset it)"
            ) from None
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"writing to {self.port} failed: {exc} (was the board unplugged?)") from None
        self.bytes_sent += len(data)
        if self._trace is not None:
            self._trace.sent(data)

    def read(self, timeout: float) -> bytes:
        """Whatever arrives within ``timeout`` seconds (b"" if nothing), without waiting for more."""
        try:
            if self._fd is not None:
                ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
                if not ready:
                    data = b""
                elif self._raw_reads:
                    data = os.read(self._fd, READ_CHUNK)
                else:
                    data = self._ser.read(READ_CHUNK)
            else:
                data = self._read_portable(timeout)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"reading from {self.port} failed: {exc} (was the board unplugged?)") from None
        self.bytes_received += len(data)
        if self._trace is not None and data:
            self._trace.received(data)
        return data

    def _read_portable(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            waiting = self._ser.in_waiting
            if waiting:
                return self._ser.read(waiting)
            if time.monotonic() >= deadline:
                return b""
            time.sleep(0.001)

    def close(self) -> None:
        # Closing a vanished port: nothing left to release.
        with contextlib.suppress(serial.SerialException, OSError):
            self._ser.close()

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
