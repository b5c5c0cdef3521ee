"""The emulated Cortex-M4 (QEMU mps2-an386): the firmware image built from the Nano's objects,
evaluated over the protocol like a board, against the board library's host build as the oracle.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_tool, tool_env

from common import runfolder
from common.board_tflm import BoardTflm
from host_tools.cli import EMULATED_WINDOW
from host_tools.emulator import BOARD_NAME, REPORTED_HZ, start_emulator
from host_tools.evaluate import load_expected, load_inputs
from host_tools.link import SerialLink
from host_tools.session import Session

SHIPPED_MODEL = ROOT / "firmware" / "lib" / "model"
# `python -m host_tools emulate` prints its pty within this time once the image is cached.
EMULATE_START_TIMEOUT_S = 120.0
# The dnn's instructions per Invoke() on the Cortex-M4 with CMSIS-NN at -O2 (37,480 measured
# by an independent QEMU build of the same library); the bounds only catch a clock that counts
# something else (a wrong ticks-to-instructions factor is 40x off, a host clock 1000x).
DNN_INSTRUCTIONS_RANGE = (15_000, 150_000)
# micros() and cycles() are separate reads of one instruction counter, each truncated.
MICROS_SLACK = 3


@pytest.fixture
def image(cross_compiler: str, board_library: Path, board_core: Path) -> object:
    """The image for the shipped model (built once, then cached in build/cross/)."""
    from common.emulated_image import build_image

    return build_image(SHIPPED_MODEL)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cnn_run") / "run"
    run_tool("train", "--run", str(run), "--dataset", "mnist5k", "--model", "cnn", "--epochs", "1")
    run_tool("convert", "--run", str(run), "--firmware-dir", str(run / runfolder.GENERATED_DIR))
    return run


def _symbols(elf: Path) -> dict[str, str]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return {parts[-1]: parts[-2] for parts in (line.split() for line in out.splitlines()) if len(parts) >= 2}


def test_image_has_no_heap_and_differs_from_the_nano_only_in_the_board_layer(image: object) -> None:
    from common import cross_build
    from common.emulated_image import MAP_NAME

    elf = image.elf  # type: ignore[attr-defined]
    symbols = _symbols(elf)
    linked = (elf.parent / MAP_NAME).read_text()
    # No heap: newlib's printf code references malloc, but the memory it would ask for comes
    # from _sbrk, and that is startup.cpp's trap (nothing else defines it).
    sbrk = [line for line in linked.splitlines() if line.strip().startswith(".text._sbrk")]
    assert len(sbrk) == 1 and "board/startup.o" in linked[linked.index(sbrk[0]):][:400]
    assert "sbrk.o" not in linked  # libnosys's heap-growing _sbrk stayed out
    assert symbols.get("DebugLog") == "T"
    # No Arduino runtime: the library's Serial-based system_setup.cpp stayed out.
    assert not [name for name in symbols if "Serial" in name or "InitializeTarget" in name]
    library = cross_build.library_objects()
    firmware = cross_build.firmware_objects(SHIPPED_MODEL)
    # The very objects of the Nano build: adapter, core, model and the TFLM library members.
    for key in ("src/tflm_engine.cpp", "core/dispatcher.cpp", "model/model_data.cpp"):
        assert str(firmware.objects[key]) in linked, key
    assert str(firmware.objects["src/main.cpp"]) not in linked
    assert "micro_interpreter.o" in linked and library.directory.name not in ("",)
    assert "fully_connected.o" in linked and "arm_fully_connected_s8.o" in linked  # CMSIS-NN kernels
    assert image.sizes.ram < 256 * 1024 and image.sizes.flash < 0xF0000  # type: ignore[attr-defined]


def _oracle(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and the board library's host-build outputs (BoardTflm) for every test sample."""
    expected = load_expected(run)
    inputs = load_inputs(run, expected).inputs
    report = json.loads((run / runfolder.CONVERT_REPORT_JSON).read_text())
    arena = int(report["arena"]["size"]) if "arena" in report and "size" in report["arena"] else 64 * 1024
    runner = BoardTflm.open((run / runfolder.MODEL_TFLITE).read_bytes(), max(arena, 64 * 1024))
    return inputs, runner.run(inputs)


def _evaluated_outputs(run: Path) -> tuple[dict, np.ndarray]:
    result = json.loads((run / runfolder.DEVICE_EVAL_JSON).read_text())
    samples = sorted(result["samples"], key=lambda s: s["index"])
    return result, np.asarray([s["output"] for s in samples], dtype=np.int8)


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for item in src.iterdir():
        if item.is_file():
            (dst / item.name).write_bytes(item.read_bytes())
    (dst / runfolder.GENERATED_DIR).symlink_to(src / runfolder.GENERATED_DIR)
    return dst


@pytest.mark.parametrize("model", ["dnn", "cnn"])
def test_evaluate_emulated_equals_the_board_library_on_every_test_sample(
        model: str, qemu: str, cross_compiler: str, board_library: Path, board_core: Path,
        host_run: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    source = host_run if model == "dnn" else request.getfixturevalue("cnn_run")
    run = _copy_run(source, tmp_path / "run")
    proc = run_tool("host_tools", "evaluate", "--run", str(run), "--port", "emulated", "--no-progress",
                    timeout=1800)
    assert "accuracy" in proc.stdout
    result, outputs = _evaluated_outputs(run)
    inputs, expected = _oracle(run)
    assert len(outputs) == len(inputs)
    differing = np.flatnonzero((outputs != expected).any(axis=1))
    assert differing.size == 0, f"{differing.size} samples differ, first {differing[:10].tolist()}"
    device = result["header"]["device"]
    assert device["board"] == BOARD_NAME and device["clock_hz"] == REPORTED_HZ
    cycles = result["summary"]["cycles"]
    assert cycles is not None
    if model == "dnn":
        low, high = DNN_INSTRUCTIONS_RANGE
        assert low <= cycles["mean"] <= high, cycles
        # The report names the device column and labels its latency as instructions.
        run_tool("host_tools", "compare", "--run", str(run))
        report = (run / runfolder.REPORT_MD).read_text()
        assert f"| TFLM (host) | {BOARD_NAME} |" in report
        assert f"{BOARD_NAME}: instructions per Invoke() (QEMU -icount)" in report
        assert f"{BOARD_NAME}: instructions per Invoke() as time at 64 MHz, one cycle each" in report
        assert f"TFLM (host) -> {BOARD_NAME}: no sample differs." in report
        # The per-op profile: TFLM's op names in the .tflite's operator order (convert read them
        # from the flatbuffer), and op instructions that add up to what INFER measured around
        # the whole Invoke() (the profiler's own calls are the difference).
        profile = result["profile"]
        layers = json.loads((run / runfolder.CONVERT_REPORT_JSON).read_text())["layers"]
        assert [op["name"] for op in profile["ops"]] == [layer["op"] for layer in layers]
        assert profile["unit"] == "instructions" and not profile["truncated"]
        op_sum = sum(op["ticks"] for op in profile["ops"])
        assert all(op["ticks"] > 0 for op in profile["ops"])
        assert op_sum <= profile["total"]
        assert abs(op_sum - cycles["mean"]) <= 0.05 * cycles["mean"], (op_sum, cycles)
        assert "## Per-layer cost: measured" in report
        for index, op in enumerate(profile["ops"]):
            assert f"| {index} | {op['name']} | " in report and f"| {op['ticks']:,} |" in report
    # micros() is the instruction count at 64 MHz (one cycle each). The core reads the two
    # clocks one after the other and both truncate: they agree within a few microseconds.
    for sample in result["samples"][:50]:
        assert abs(sample["invoke_us"] - sample["cycles"] / (REPORTED_HZ / 1e6)) <= MICROS_SLACK


class _NoisyLink(SerialLink):
    """Flips one bit in every ``every``-th byte the host sends: the device must NACK those frames."""

    def __init__(self, port: str, every: int) -> None:
        super().__init__(port)
        self._every, self._count = every, 0

    def write(self, data: bytes) -> None:
        out = bytearray(data)
        for i in range(len(out)):
            self._count += 1
            if self._count % self._every == 0:
                out[i] ^= 0x10
        super().write(bytes(out))


# Enough samples for several faults, few enough to keep the tests short.
FAULT_SAMPLES = 300
# A noisy link: one flipped bit per this many bytes (about one INFER frame in six).
FLIP_EVERY_BYTES = 5000
# A pause longer than the reply timeout, so the host must resend.
PAUSE_S = 2.0


@pytest.fixture
def dnn_case(qemu: str, cross_compiler: str, board_library: Path, board_core: Path,
             host_run: Path) -> tuple[object, object, np.ndarray, np.ndarray]:
    """(image, expected model, inputs, oracle outputs) of the session's dnn run folder."""
    from common.emulated_image import build_image

    image = build_image(host_run / runfolder.GENERATED_DIR)
    inputs, outputs = _oracle(host_run)
    return image, load_expected(host_run), inputs, outputs


def _stream_and_check(session: Session, inputs: np.ndarray, outputs: np.ndarray,
                      on_result: Callable[[int], None] | None = None) -> None:
    got: dict[int, bytes] = {}
    requests = ((i, inputs[i].tobytes()) for i in range(FAULT_SAMPLES))
    for index, result in session.stream(requests, window=EMULATED_WINDOW):
        got[index] = result.output
        if on_result is not None:
            on_result(len(got))
    assert sorted(got) == list(range(FAULT_SAMPLES))
    wrong = [i for i in range(FAULT_SAMPLES)
             if np.frombuffer(got[i], np.int8).tolist() != outputs[i].tolist()]
    assert wrong == []


def test_bit_flips_on_the_way_in_are_nacked_and_resent(dnn_case: tuple, host_run: Path) -> None:
    image, expected, inputs, outputs = dnn_case
    with start_emulator(host_run / runfolder.GENERATED_DIR, image) as emulator, \
            _NoisyLink(emulator.port, FLIP_EVERY_BYTES) as link:
        session = Session(link, expected)
        session.handshake()
        _stream_and_check(session, inputs, outputs)
    assert session.stats.nacks > 0 and session.stats.retransmissions > 0


def test_a_board_reset_mid_run_is_recovered(dnn_case: tuple, host_run: Path, tmp_path: Path) -> None:
    image, expected, inputs, outputs = dnn_case
    monitor = tmp_path / "monitor.sock"
    resets: list[str] = []

    def reset_once(done: int) -> None:
        if done == FAULT_SAMPLES // 3 and not resets:
            resets.append(emulator.monitor("system_reset"))

    with start_emulator(host_run / runfolder.GENERATED_DIR, image, monitor) as emulator, \
            SerialLink(emulator.port) as link:
        session = Session(link, expected)
        session.handshake()
        _stream_and_check(session, inputs, outputs, reset_once)
    assert resets, "the reset was never injected"
    # The reset board lost its partial frame and result cache; whether that cost a request
    # depends on when it came: QEMU's semihosting console keeps the bytes it holds across a
    # reset, so requests not yet read survive it. Every sample still arrived once, correct
    # (_stream_and_check).


def test_a_paused_board_is_waited_for_and_resent_to(dnn_case: tuple, host_run: Path, tmp_path: Path) -> None:
    image, expected, inputs, outputs = dnn_case
    monitor = tmp_path / "monitor.sock"
    paused: list[float] = []

    def pause_once(done: int) -> None:
        if done == FAULT_SAMPLES // 2 and not paused:
            emulator.monitor("stop")
            time.sleep(PAUSE_S)
            emulator.monitor("cont")
            paused.append(PAUSE_S)

    with start_emulator(host_run / runfolder.GENERATED_DIR, image, monitor) as emulator, \
            SerialLink(emulator.port) as link:
        session = Session(link, expected)
        session.handshake()
        _stream_and_check(session, inputs, outputs, pause_once)
    assert paused


def test_emulate_command_serves_the_image_on_a_pty_until_sigterm(dnn_case: tuple, host_run: Path) -> None:
    _image, expected, _inputs, _outputs = dnn_case
    proc = subprocess.Popen([sys.executable, "-m", "host_tools", "emulate", "--run", str(host_run)], cwd=ROOT,
                            env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], EMULATE_START_TIMEOUT_S)
        assert ready, "emulate printed no port"
        port = proc.stdout.readline().decode().strip()
        assert port.startswith("/dev/")
        with SerialLink(port) as link:
            info = Session(link, expected).handshake()
        assert info.board == BOARD_NAME and info.clock_hz == REPORTED_HZ
        assert info.model_hash == expected.model_hash
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    assert not os.path.exists(port)  # QEMU stopped with it: its pty is gone


def test_emulate_without_generated_files_is_one_line_with_exit_code_3(tmp_path: Path) -> None:
    proc = run_tool("host_tools", "emulate", "--run", str(tmp_path), check=False, timeout=120)
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0 and "generated model files" in proc.stderr
