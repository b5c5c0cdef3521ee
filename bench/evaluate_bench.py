"""How fast and how lean the host <-> device path is, measured over the virtual board.

(a) evaluation rate over the virtual board (no link simulation) vs an in-process loop over
    the TFLM Python runtime on the same samples (acceptance: ratio >= 0.25);
(b) the test split over a simulated USB full-speed link (1.2 MB/s, 1 ms each way) vs the
    time the request bytes alone need at that bandwidth (acceptance: ratio <= 1.5);
(c) bytes on the wire per image, host -> device, vs the input tensor (acceptance: within 3%),
    with the reply bytes and both directions reported too.

Run: ``python -m bench.evaluate_bench [--run DIR]``; writes bench/results/evaluate_bench.json.
Without --run it trains and converts a small dnn on mnist5k once, cached in build/bench_run/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common import runfolder
from common.atomic import write_json
from common.childenv import python_env
from common.errors import ToolError, run_cli

REPO = Path(__file__).resolve().parent.parent
RESULT_PATH = REPO / "bench" / "results" / "evaluate_bench.json"
CACHED_RUN = REPO / "build" / "bench_run"
# The streaming rate is measured over several passes of the test split: one pass of a dnn
# takes ~0.1 s, too short to time without start-up noise.
RATE_PASSES = 2
RATE_REPEATS = 5
ACCEPT_RATE_RATIO = 0.25
ACCEPT_LINK_RATIO = 1.5
ACCEPT_OVERHEAD = 0.03
USB_FS = "usb-fs"


def _env() -> dict[str, str]:
    return python_env()


def _tool(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolError(f"`python -m {' '.join(args)}` failed: {last}")


def prepare_run(run: Path | None) -> Path:
    """The run folder to measure: the given one, or a cached small dnn built by the real stages."""
    if run is not None:
        return run
    run = CACHED_RUN
    generated = run / runfolder.GENERATED_DIR
    if not (run / runfolder.MODEL_TFLITE).is_file() or not (generated / "model_data.cpp").is_file():
        _tool("train", "--run", str(run), "--dataset", "mnist5k", "--model", "dnn", "--epochs", "3")
        _tool("convert", "--run", str(run))
    return run


def _inputs(run: Path) -> tuple[Any, np.ndarray]:
    from host_tools.evaluate import load_expected, load_inputs

    expected = load_expected(run)
    return expected, load_inputs(run, expected).inputs


def in_process_rate(run: Path, inputs: np.ndarray, passes: int) -> float:
    """Samples per second of a plain loop over the TFLM runtime: the ceiling for (a)."""
    from tflite_micro.python.tflite_micro import runtime

    model = (run / runfolder.MODEL_TFLITE).read_bytes()
    interp = runtime.Interpreter.from_bytes(model, arena_size=64 * 1024)
    shape = tuple(int(d) for d in interp.get_input_details(0)["shape"])
    batch = inputs.reshape(len(inputs), *shape)
    start = time.perf_counter()
    for _ in range(passes):
        for x in batch:
            interp.set_input(x, 0)
            interp.invoke()
            interp.get_output(0)
    return passes * len(inputs) / (time.perf_counter() - start)


def _passes(inputs: np.ndarray, passes: int) -> Iterator[tuple[int, bytes]]:
    n = len(inputs)
    for k in range(passes * n):
        yield k, inputs[k % n].tobytes()


def stream_over_board(
    run: Path,
    expected: Any,
    inputs: np.ndarray,
    passes: int,
    board_args: Sequence[str] = (),
    repeats: int = 1,
    between: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Stream the inputs ``passes`` times through one virtual board, ``repeats`` times; keep the
    fastest repeat and time the streaming only (handshake and board start-up excluded).
    ``between`` runs before each repeat (the in-process reference, so both see the same load)."""
    from host_tools.link import SerialLink
    from host_tools.session import Session
    from host_tools.virtual_process import virtual_board

    best: dict[str, Any] = {}
    with virtual_board(run, board_args) as port, SerialLink(port) as link:
        session = Session(link, expected)
        session.handshake()
        for _ in range(repeats):
            if between is not None:
                between()
            sent0, recv0, resent0 = link.bytes_sent, link.bytes_received, session.stats.retransmissions
            start = time.perf_counter()
            count = sum(1 for _ in session.stream(_passes(inputs, passes)))
            elapsed = time.perf_counter() - start
            if not best or elapsed < best["seconds"]:
                best = {
                    "samples": count,
                    "seconds": elapsed,
                    "rate": count / elapsed,
                    "bytes_sent": link.bytes_sent - sent0,
                    "bytes_received": link.bytes_received - recv0,
                    "retransmissions": session.stats.retransmissions - resent0,
                    "window": session.info.window if session.info else None,
                }
    return best


def evaluate_command_rate(run: Path) -> dict[str, Any]:
    """The user-visible `evaluate --port virtual` function on one pass (journal, JSON and all)."""
    import shutil
    import tempfile

    from host_tools.evaluate import evaluate
    from host_tools.link import SerialLink
    from host_tools.virtual_process import virtual_board

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        for item in run.iterdir():
            if item.is_file():
                (copy / item.name).write_bytes(item.read_bytes())
        # The virtual board reads the run folder's own generated files.
        shutil.copytree(run / runfolder.GENERATED_DIR, copy / runfolder.GENERATED_DIR)
        with virtual_board(copy) as port, SerialLink(port) as link:
            outcome = evaluate(copy, link, port, True, restart=True, progress=False, log=lambda _s: None)
        return {
            "samples": outcome.samples,
            "wall_time_s": outcome.wall_time_s,
            "rate": outcome.samples / outcome.wall_time_s,
        }


def run(run_dir: Path | None = None) -> dict[str, Any]:
    from host_tools.framing import wire_size
    from host_tools.linksim import LINK_PRESETS

    run_path = prepare_run(run_dir)
    expected, inputs = _inputs(run_path)
    n, input_bytes = len(inputs), int(inputs.shape[1])

    # Best of a few interleaved repeats on both sides: the machine is shared, and a repeat that
    # another process interrupted says nothing about this code.
    local_rates: list[float] = []
    board = stream_over_board(
        run_path,
        expected,
        inputs,
        RATE_PASSES,
        repeats=RATE_REPEATS,
        between=lambda: local_rates.append(in_process_rate(run_path, inputs, RATE_PASSES)),
    )
    local = max(local_rates)
    command = evaluate_command_rate(run_path)

    bandwidth, latency_ms = LINK_PRESETS[USB_FS]
    usb = stream_over_board(run_path, expected, inputs, 1, ["--link", USB_FS], repeats=RATE_REPEATS)
    bandwidth_only = usb["bytes_sent"] / bandwidth

    per_image_out = board["bytes_sent"] / board["samples"]
    per_image_in = board["bytes_received"] / board["samples"]
    result = {
        "model_hash": expected.model_hash,
        "test_samples": n,
        "input_bytes": input_bytes,
        "a_rate": {
            "in_process_tflm_per_s": round(local, 1),
            "virtual_board_stream_per_s": round(board["rate"], 1),
            "ratio": round(board["rate"] / local, 3),
            "evaluate_command_per_s": round(command["rate"], 1),
            "evaluate_command_ratio": round(command["rate"] / local, 3),
            "window": board["window"],
            "samples_per_repeat": board["samples"],
            "repeats": RATE_REPEATS,
            "accept_ratio_at_least": ACCEPT_RATE_RATIO,
        },
        "b_usb_fs_link": {
            "bandwidth_bytes_per_s": bandwidth,
            "latency_ms_each_way": latency_ms,
            "seconds": round(usb["seconds"], 3),
            "bandwidth_only_seconds": round(bandwidth_only, 3),
            "ratio": round(usb["seconds"] / bandwidth_only, 3),
            "retransmissions": usb["retransmissions"],
            "accept_ratio_at_most": ACCEPT_LINK_RATIO,
        },
        "c_wire_bytes": {
            "host_to_device_per_image": round(per_image_out, 2),
            "payload_per_image": input_bytes,
            "overhead": round(per_image_out / input_bytes - 1, 4),
            "infer_frame_bytes": wire_size(input_bytes),
            "device_to_host_per_image": round(per_image_in, 2),
            "both_directions_per_image": round(per_image_out + per_image_in, 2),
            "both_directions_overhead": round((per_image_out + per_image_in) / input_bytes - 1, 4),
            "accept_overhead_at_most": ACCEPT_OVERHEAD,
        },
    }
    result["accepted"] = {
        "a": result["a_rate"]["ratio"] >= ACCEPT_RATE_RATIO,
        "b": result["b_usb_fs_link"]["ratio"] <= ACCEPT_LINK_RATIO,
        "c": result["c_wire_bytes"]["overhead"] <= ACCEPT_OVERHEAD,
    }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.evaluate_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--run", type=Path, metavar="DIR", help="run folder to measure (default: a cached dnn)"
    )
    args = parser.parse_args(argv)
    result = run(args.run)
    write_json(RESULT_PATH, result)
    a, b, c = result["a_rate"], result["b_usb_fs_link"], result["c_wire_bytes"]
    print(
        f"(a) {a['virtual_board_stream_per_s']:,.0f}/s over the virtual board vs "
        f"{a['in_process_tflm_per_s']:,.0f}/s "
        f"in process: ratio {a['ratio']} (evaluate command {a['evaluate_command_ratio']})"
    )
    print(
        f"(b) usb-fs: {b['seconds']} s vs {b['bandwidth_only_seconds']} s bandwidth-only: ratio {b['ratio']}"
    )
    print(
        f"(c) {c['host_to_device_per_image']} B/image host->device for {c['payload_per_image']} B payload "
        f"(+{100 * c['overhead']:.2f}%); replies {c['device_to_host_per_image']} B/image"
    )
    print(f"wrote {RESULT_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
