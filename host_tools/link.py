"""The byte transport: a serial port opened exclusively, with bounded reads and writes.

Errors a user can fix (missing port, busy port, no permission) become one-line
``DeviceError``s here, so no layer above ever sees a ``SerialException``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
from types import TracebackType

import serial

from common.errors import DeviceError
from host_tools import timing

# One read takes whatever the OS holds, up to this much: few syscalls per frame.
READ_CHUNK = 1 << 16


def _open_error(port: str, exc: serial.SerialException) -> DeviceError:
    code = exc.errno
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text or "FileNotFoundError" in text:
        return DeviceError(f"port {port} not found (see `python -m host_tools ports`)")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return DeviceError(f"port {port} is busy (another program has it open: close the serial monitor)")
    if code in (errno.EACCES, errno.EPERM):
        return DeviceError(f"no permission to open {port} (on Linux add yourself to the dialout group)")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return DeviceError(f"cannot open port {port}: {first}")


class SerialLink:
    """A serial port carrying frames; counts the bytes it moves."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.bytes_sent = 0
        self.bytes_received = 0
        try:
            # exclusive=True: two programs on one board would steal each other's replies.
            self._ser = serial.Serial(
                port, baudrate=115200, timeout=0, write_timeout=timing.WRITE_TIMEOUT_S, exclusive=True
            )
        except serial.SerialException as exc:
            raise _open_error(port, exc) from None
        except OSError as exc:  # pyserial lets some open failures through unwrapped
            raise _open_error(port, serial.SerialException(exc.errno, str(exc))) from None
        self._fd: int | None = None
        try:
            self._fd = self._ser.fileno()
        except (AttributeError, serial.SerialException):
            self._fd = None  # not a POSIX port: fall back to pyserial's own reads
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

    def read(self, timeout: float) -> bytes:
        """Whatever arrives within ``timeout`` seconds (b"" if nothing), without waiting for more."""
        try:
            if self._fd is not None:
                ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
                data = os.read(self._fd, READ_CHUNK) if ready else b""
            else:
                data = self._read_portable(timeout)
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"reading from {self.port} failed: {exc} (was the board unplugged?)") from None
        self.bytes_received += len(data)
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
