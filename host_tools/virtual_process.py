"""``--port virtual``: a virtual board in a child process, alive for one command."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from common.childenv import python_env
from common.errors import DeviceError
from host_tools import timing

# A stopped board exits at once; a hung one is killed after this long.
STOP_TIMEOUT_S = 5.0
# prctl(2) option: the signal a child receives when its parent exits.
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the evaluating process dies, even by SIGKILL (Linux), so a
    killed evaluation leaves no virtual board behind."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@contextlib.contextmanager
def virtual_board(run: Path, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """Start ``python -m host_tools virtual-board --run RUN``; yield its pty path; stop it."""
    _prebuild(run, extra_args)
    env = python_env()
    # --run=PATH is one argument: a run folder whose name starts with "-" stays a value.
    cmd = [sys.executable, "-m", "host_tools", "virtual-board", f"--run={run}", *extra_args]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=_die_with_parent)
        try:
            yield _read_port(proc, err)
        finally:
            _stop(proc)


def _prebuild(run: Path, extra_args: Sequence[str]) -> None:
    """The first build of the board's TFLM for the host takes minutes: do it here, with its
    progress line and its own errors, so the child only loads the cached library and its start
    stays within VIRTUAL_BOARD_START_TIMEOUT_S."""
    from host_tools import hostlib
    from host_tools.virtual_board import default_engine, generated_dir_for

    engine = next((a.split("=", 1)[1] for a in extra_args if a.startswith("--engine=")), default_engine())
    generated = generated_dir_for(run, None)
    if engine == "board" and (generated / "model_settings.h").is_file():
        hostlib.build_board_library(generated)


def _read_port(proc: subprocess.Popen[bytes], err: object) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timing.VIRTUAL_BOARD_START_TIMEOUT_S
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeviceError(
                f"the virtual board did not start within {timing.VIRTUAL_BOARD_START_TIMEOUT_S:.0f} s"
            )
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            byte = os.read(proc.stdout.fileno(), 1)
            if not byte:
                break
            line += byte
        elif proc.poll() is not None:
            break
    port = line.decode("utf-8", "replace").strip()
    if not port:
        proc.wait(timeout=STOP_TIMEOUT_S)
        err.seek(0)  # type: ignore[attr-defined]
        reason = _last_line(err.read().decode("utf-8", "replace"))  # type: ignore[attr-defined]
        reason = reason.removeprefix("error: ") or f"exit code {proc.returncode}"
        raise DeviceError(f"the virtual board failed to start: {reason}")
    return port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
