"""Every timeout and retry count of the host, each with the reason for its value.

Values follow docs/protocol.md section 7; change them there first.
"""

from __future__ import annotations

# Handshake: a HELLO needs no inference, so a live device answers well within a second.
HELLO_TIMEOUT_S = 1.0
# Handshake attempts before the device is declared silent (a reset board needs a moment,
# and a HELLO or its INFO can be damaged on a noisy link).
HELLO_ATTEMPTS = 5
# Floor of the reply timeout: USB scheduling and one Invoke() of a small model fit in it.
REPLY_TIMEOUT_BASE_S = 0.5
# A slow link (e.g. a UART bridge at 115200 baud, ~10 kB/s) must not cause false timeouts.
REPLY_TIMEOUT_BYTES_PER_S = 10_000.0
# Resends of one request before the host suspects a reset device and handshakes again.
MAX_RETRIES = 5
# New handshakes in a row without a single RESULT in between before giving up: a device that
# keeps resetting is broken (rare glitches over a long run are each recovered).
MAX_REHANDSHAKES = 5
# Reply gaps and handshakes also allow this many times the longest Invoke() seen (or
# convert's estimate before the first result): a slow model is not a lost request.
INVOKE_TIMEOUT_FACTOR = 2.0
# A device's own timing claims scale the waits above, so they are bounded first. No model
# that fits the board (1 MB flash, 256 KB RAM) needs longer per Invoke() even with reference
# kernels; a RESULT that claims more comes from a faulty device and ends the run (exit 5).
MAX_INVOKE_S = 10.0
# Work queued on the device before a new HELLO (window x Invoke() time) is counted up to this
# much, so one handshake attempt waits at most HELLO_TIMEOUT_S + MAX_QUEUED_WORK_S.
MAX_QUEUED_WORK_S = 60.0
# Longest single blocking read: short enough to notice Ctrl-C and deadlines promptly.
READ_SLICE_S = 0.05
# Writes to a port that stops accepting bytes (USB NAK forever) fail after this long.
WRITE_TIMEOUT_S = 5.0
# The virtual board prints its port within this time (it compiles the core on first use).
VIRTUAL_BOARD_START_TIMEOUT_S = 180.0
# Journal flushes: at most this many samples or seconds are redone after a crash.
JOURNAL_FLUSH_SAMPLES = 256
JOURNAL_FLUSH_S = 0.5


def reply_timeout(request_bytes: int) -> float:
    """Seconds to wait for a reply to a request of ``request_bytes`` wire bytes."""
    return REPLY_TIMEOUT_BASE_S + request_bytes / REPLY_TIMEOUT_BYTES_PER_S
