"""The link opens pyserial URLs (a board on another machine) and traces every frame.

A TCP server in the test stands for a lab machine that serves a board's port (ser2net,
esp-link): in front of the C++ core through the host library, and, in the slow test, in
front of a virtual board's pty for a whole evaluation over ``socket://``.
"""

from __future__ import annotations

import io
import json
import os
import select
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import serial
from conftest import run_tool
from core_harness import MockBoard, write_fake_generated
from core_reference import MNIST_LIKE, RefDevice, frame
from serial.rfc2217 import PortManager

from common.errors import DeviceError, UsageError
from host_tools.framing import StreamDecoder, build_frame, build_raw, cobs_encode, parse_frame
from host_tools.hostlib import HostCore
from host_tools.link import SerialLink, describe_frame, open_trace
from host_tools.messages import Info, MsgType, decode_reply

# How long the bridges wait in one select() before they look at the stop flag again.
BRIDGE_POLL_S = 0.05
# Upper bound for a reply to arrive over the local socket (a bound, not an expected time).
REPLY_WAIT_S = 10.0
# Bound for a bridge thread to finish after the test.
BRIDGE_JOIN_S = 5.0


class TcpBridge:
    """Serves one client at a time on 127.0.0.1; ``pump(conn)`` moves the bytes."""

    def __init__(self, pump: Callable[[socket.socket, threading.Event], None]) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._pump = pump
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._server], [], [], BRIDGE_POLL_S)
            if ready:
                conn, _ = self._server.accept()
                with conn:
                    self._pump(conn, self._stop)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(BRIDGE_JOIN_S)
        self._server.close()


@pytest.fixture
def bridges() -> Iterator[Callable[[Callable[[socket.socket, threading.Event], None]], TcpBridge]]:
    started: list[TcpBridge] = []

    def start(pump: Callable[[socket.socket, threading.Event], None]) -> TcpBridge:
        started.append(TcpBridge(pump))
        return started[-1]

    yield start
    for bridge in started:
        bridge.close()


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> HostCore:
    root = tmp_path_factory.mktemp("link")
    return HostCore.load(write_fake_generated(root / "model"), root / "build")


def core_pump(core: HostCore) -> Callable[[socket.socket, threading.Event], None]:
    """Bytes from the client go into the C++ core; its replies go back."""

    def pump(conn: socket.socket, stop: threading.Event) -> None:
        board = MockBoard(core, MNIST_LIKE)
        while not stop.is_set():
            ready, _, _ = select.select([conn], [], [], BRIDGE_POLL_S)
            if ready:
                data = conn.recv(1 << 16)
                if not data:
                    return
                conn.sendall(board.feed(data))

    return pump


def read_frames(link: SerialLink, count: int) -> list[bytes]:
    decoder = StreamDecoder()
    frames: list[bytes] = []
    while len(frames) < count:
        chunk = link.read(REPLY_WAIT_S)
        assert chunk, f"no reply within {REPLY_WAIT_S} s"
        frames += decoder.feed(chunk)
    return frames


def test_socket_url_reaches_the_core_and_the_trace_logs_both_directions(core: HostCore, bridges) -> None:
    bridge = bridges(core_pump(core))
    trace = io.StringIO()
    hello = frame(MsgType.HELLO, 1)
    with SerialLink(bridge.url, trace) as link:
        link.write(hello)
        (reply,) = read_frames(link, 1)
    # The reference device answers the same HELLO with the same bytes.
    assert reply + b"\x00" == RefDevice(MNIST_LIKE).feed(hello)
    info = decode_reply(parse_frame(reply))
    assert isinstance(info, Info) and info.board == MNIST_LIKE.board_name
    lines = trace.getvalue().splitlines()
    assert [line.split()[1:5] for line in lines] == [["->", "HELLO", "seq", "1"], ["<-", "INFO", "seq", "1"]]
    assert lines[1].endswith(reply.hex(" "))


class _SocketWriter:
    """What pyserial's RFC 2217 server side writes its Telnet answers to."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn

    def write(self, data: bytes) -> None:
        self._conn.sendall(data)


def rfc2217_core_pump(core: HostCore) -> Callable[[socket.socket, threading.Event], None]:
    """An RFC 2217 server (pyserial's own PortManager) in front of the C++ core."""

    def pump(conn: socket.socket, stop: threading.Event) -> None:
        board = MockBoard(core, MNIST_LIKE)
        # The manager applies the client's port settings to a serial object: a loopback one,
        # since the core has no settings; the data itself goes to the core.
        manager = PortManager(serial.serial_for_url("loop://"), _SocketWriter(conn))
        while not stop.is_set():
            ready, _, _ = select.select([conn], [], [], BRIDGE_POLL_S)
            if ready:
                data = conn.recv(1 << 16)
                if not data:
                    return
                replies = board.feed(b"".join(manager.filter(data)))
                if replies:
                    conn.sendall(b"".join(manager.escape(replies)))

    return pump


def test_rfc2217_url_reaches_the_core(core: HostCore, bridges) -> None:
    bridge = bridges(rfc2217_core_pump(core))
    url = bridge.url.replace("socket://", "rfc2217://")
    hello = frame(MsgType.HELLO, 2)
    with SerialLink(url) as link:
        link.write(hello)
        (reply,) = read_frames(link, 1)
    assert reply + b"\x00" == RefDevice(MNIST_LIKE).feed(hello)


def test_a_closed_connection_is_a_one_line_device_error(bridges) -> None:
    def hang_up(conn: socket.socket, stop: threading.Event) -> None:
        conn.shutdown(socket.SHUT_RDWR)

    bridge = bridges(hang_up)
    with SerialLink(bridge.url) as link, pytest.raises(DeviceError, match=r"^reading from socket://.*failed"):
        link.read(REPLY_WAIT_S)


def test_unreachable_and_unknown_urls_are_one_line_device_errors() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed below: nothing listens there any more
    with pytest.raises(DeviceError, match=rf"^cannot open socket://127\.0\.0\.1:{port}: .*refused"):
        SerialLink(f"socket://127.0.0.1:{port}")
    with pytest.raises(DeviceError, match=r"^cannot open nosuch://x: .*protocol 'nosuch' not known"):
        SerialLink("nosuch://x")


def test_loop_url_echoes_and_traces_bad_frames() -> None:
    trace = io.StringIO()
    raw = bytearray(build_raw(MsgType.HELLO, 7))
    raw[-1] ^= 0x10  # inside the CRC
    damaged = cobs_encode(bytes(raw))
    with SerialLink("loop://", trace) as link:
        link.write(damaged + b"\x00" + build_frame(MsgType.NACK, 0xFFFF, b"\x01"))
        assert len(read_frames(link, 2)) == 2
    lines = trace.getvalue().splitlines()
    bad = f"bad frame (BAD_CRC, {len(damaged)} bytes)"
    assert [line.split(" | ")[0].split(maxsplit=1)[1] for line in lines] == [
        f"-> {bad}", "-> NACK seq 65535 len 1 code BAD_CRC",
        f"<- {bad}", "<- NACK seq 65535 len 1 code BAD_CRC"]
    assert lines[0].endswith(" | " + damaged.hex(" "))


def test_describe_frame_names_unknown_types_and_versions() -> None:
    assert describe_frame(build_frame(9, 3, b"ab", version=2)[:-1]) == "type 9 seq 3 len 2 version 2"
    assert describe_frame(build_frame(MsgType.ERROR, 4, b"\x63")[:-1]) == "ERROR seq 4 len 1 code 99"


def test_trace_targets(tmp_path: Path) -> None:
    with open_trace(None) as none:
        assert none is None
    with open_trace("-") as err:
        assert err is sys.stderr
    with open_trace(str(tmp_path / "t.log")) as stream:
        assert stream is not None
        stream.write("x")
    assert (tmp_path / "t.log").read_text() == "x"
    with pytest.raises(UsageError, match=r"^cannot write the trace to .*missing"), \
            open_trace(str(tmp_path / "missing" / "t.log")):
        pass


def pty_pump(pty_path: str) -> Callable[[socket.socket, threading.Event], None]:
    """Bytes between the client and the virtual board's pty, as ser2net would move them."""
    port = serial.Serial(pty_path, timeout=0)

    def pump(conn: socket.socket, stop: threading.Event) -> None:
        fd = port.fileno()
        while not stop.is_set():
            ready, _, _ = select.select([conn, fd], [], [], BRIDGE_POLL_S)
            if conn in ready:
                data = conn.recv(1 << 16)
                if not data:
                    return
                port.write(data)
            if fd in ready:
                conn.sendall(os.read(fd, 1 << 16))

    return pump


@pytest.mark.slow
def test_evaluation_over_socket_matches_tflm_and_traces_every_frame(
    run_copy: Path, start_board, bridges, tmp_path: Path
) -> None:
    board = start_board(run_copy)
    bridge = bridges(pty_pump(board.port))
    limit = 100
    info = run_tool("host_tools", "info", "--port", bridge.url, "--run", str(run_copy), "--trace",
                    timeout=300)
    assert " -> HELLO seq " in info.stderr and " <- INFO seq " in info.stderr
    trace = tmp_path / "trace.log"
    run_tool("host_tools", "evaluate", "--port", bridge.url, "--run", str(run_copy), "--no-progress",
             "--limit", str(limit), "--trace", str(trace), timeout=300)
    data = json.loads((run_copy / "device_eval.json").read_text())
    outputs = np.array([s["output"] for s in data["samples"]], dtype=np.int8)
    with np.load(run_copy / "desktop_outputs.npz") as npz:
        np.testing.assert_array_equal(outputs, npz["tflm_int8"][:limit])
    assert [s["index"] for s in data["samples"]] == list(range(limit))
    kinds = [line.split()[1] + " " + line.split()[2] for line in trace.read_text().splitlines()]
    summary = data["summary"]
    assert kinds.count("-> HELLO") == kinds.count("<- INFO") == summary["handshakes"]
    assert kinds.count("-> INFER") == limit + summary["retransmissions"]
    assert kinds.count("<- RESULT") >= limit
