"""The whole host path through a real pty and pyserial against the virtual board (the C++ core)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_tool, tool_env

pytestmark = pytest.mark.slow


def _device_outputs(run: Path) -> tuple[list[int], np.ndarray]:
    data = json.loads((run / "device_eval.json").read_text())
    return [s["index"] for s in data["samples"]], np.array(
        [s["output"] for s in data["samples"]], dtype=np.int8
    )


def _tflm_reference(run: Path) -> np.ndarray:
    with np.load(run / "desktop_outputs.npz") as npz:
        return npz["tflm_int8"]


def _evaluate(run: Path, port: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_tool(
        "host_tools", "evaluate", "--port", port, "--run", str(run), "--no-progress", *extra, timeout=300
    )


def test_virtual_port_matches_tflm_on_every_sample(run_copy: Path) -> None:
    proc = _evaluate(run_copy, "virtual")
    assert "wrote" in proc.stdout
    indices, outputs = _device_outputs(run_copy)
    reference = _tflm_reference(run_copy)
    assert indices == list(range(len(reference)))
    np.testing.assert_array_equal(outputs, reference)
    data = json.loads((run_copy / "device_eval.json").read_text())
    assert data["header"]["virtual"] is True
    labels = np.load(run_copy / "test_set.npz")["y"]
    assert data["summary"]["accuracy"] == pytest.approx(float(np.mean(reference.argmax(1) == labels)))
    assert data["summary"]["retransmissions"] == 0 and data["summary"]["handshakes"] == 1


def test_profile_times_each_op_of_the_board_library_on_the_virtual_board(
        run_copy: Path, board_library: Path) -> None:
    proc = run_tool("host_tools", "profile", "--port", "virtual", "--run", str(run_copy), "--sample", "2",
                    timeout=300)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("profile of test sample 2 on ")
    assert "host µs" in lines[1]  # the virtual board's clock is this computer's
    layers = json.loads((run_copy / "convert_report.json").read_text())["layers"]
    rows = [line.split() for line in lines[2:2 + len(layers)]]
    # One row per op of the .tflite, in its order, named as convert read them from the flatbuffer.
    assert [(int(r[0]), r[1]) for r in rows] == [(layer["index"], layer["op"]) for layer in layers]
    assert lines[2 + len(layers)].split()[:2] == ["ops", "total"]


def test_profile_of_a_sample_outside_the_test_split_is_one_line_with_exit_code_3(run_copy: Path) -> None:
    proc = run_tool("host_tools", "profile", "--port", "virtual", "--run", str(run_copy), "--sample", "99999",
                    timeout=300, check=False)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        "error: --sample 99999 is out of range: the test split has 1000 samples"]


def test_fresh_tflm_run_on_the_generated_model_agrees(run_copy: Path) -> None:
    """Independent of convert's desktop outputs: the TFLM runtime on the same quantized inputs."""
    from tflite_micro.python.tflite_micro import runtime

    from common.quant import read_io_spec

    _evaluate(run_copy, "virtual", "--limit", "200")
    indices, outputs = _device_outputs(run_copy)
    model = (run_copy / "model_int8.tflite").read_bytes()
    spec = read_io_spec(model).input
    x = np.load(run_copy / "test_set.npz")["x"][:200]
    interp = runtime.Interpreter.from_bytes(model, arena_size=64 * 1024)
    fresh = []
    for image in spec.quantize(x):
        interp.set_input(image[None], 0)
        interp.invoke()
        fresh.append(interp.get_output(0).reshape(-1))
    assert indices == list(range(200))
    np.testing.assert_array_equal(outputs, np.array(fresh))


def test_model_mismatch_is_one_line_error(
    host_run: Path, run_copy: Path, tmp_path: Path, start_board
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for name in ("model.keras", "calibration_set.npz", "test_set.npz", "train_record.json"):
        shutil.copy(host_run / name, other / name)
    # A different calibration draw gives other quantization parameters, hence another model.
    run_tool(
        "convert",
        "--run",
        str(other),
        "--firmware-dir",
        str(other / "generated"),
        "--seed",
        "7",
        "--calibration-size",
        "50",
    )
    other_hash = json.loads((other / "convert_report.json").read_text())["model_hash"]
    ours = json.loads((run_copy / "convert_report.json").read_text())["model_hash"]
    assert other_hash != ours
    # Results of the right board exist; --restart against the wrong one must not discard them.
    _evaluate(run_copy, "virtual", "--limit", "20")
    journal = (run_copy / "device_eval.jsonl").read_bytes()
    (run_copy / "device_eval.json").unlink()
    board = start_board(run_copy, "--generated", str(other / "generated"))
    proc = run_tool(
        "host_tools",
        "evaluate",
        "--port",
        board.port,
        "--run",
        str(run_copy),
        "--no-progress",
        "--restart",
        check=False,
        timeout=60,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 5 and len(lines) == 1, proc.stderr
    assert (
        f"device runs model {other_hash}" in lines[0] and ours in lines[0] and "model_int8.tflite" in lines[0]
    )
    assert not (run_copy / "device_eval.json").exists()
    assert (run_copy / "device_eval.jsonl").read_bytes() == journal


def test_virtual_board_needs_an_existing_run_folder(tmp_path: Path) -> None:
    proc = run_tool("host_tools", "virtual-board", "--run", str(tmp_path / "absent"), check=False, timeout=60)
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr, proc.stderr


def test_killed_evaluation_resumes_without_duplicates(run_copy: Path, start_board, tmp_path: Path) -> None:
    reference = _tflm_reference(run_copy)
    # A slow simulated link (50 kB/s, about 16 s for the split) leaves time to kill it midway.
    board = start_board(run_copy, "--bandwidth", "50000")
    journal = run_copy / "device_eval.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "host_tools",
            "evaluate",
            "--port",
            board.port,
            "--run",
            str(run_copy),
            "--no-progress",
        ],
        cwd=ROOT,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") > 150:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = journal.read_bytes().count(b"\n") - 1
    assert 0 < done_before < len(reference), "the kill did not land midway"
    assert not (run_copy / "device_eval.json").exists()
    # A torn last line (a kill in mid-write) must be tolerated too.
    with open(journal, "ab") as fh:
        fh.write(b'{"index": 999, "label": 1, "outp')
    board.stop()
    fast = start_board(run_copy)
    proc2 = _evaluate(run_copy, fast.port)
    assert f"{done_before} of {len(reference)} samples already" in proc2.stdout
    indices, outputs = _device_outputs(run_copy)
    assert indices == list(range(len(reference)))
    np.testing.assert_array_equal(outputs, reference)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    sample_indices = [r["index"] for r in lines if "index" in r]
    assert sorted(sample_indices) == list(range(len(reference)))  # each sample exactly once
    assert [r.get("kind") for r in lines if "kind" in r] == ["header", "resume"]


def test_journal_of_another_model_is_refused(run_copy: Path) -> None:
    journal = run_copy / "device_eval.jsonl"
    journal.write_text(
        json.dumps({"kind": "header", "model_hash": "0000000000000000", "test_set": "x"}) + "\n"
    )
    proc = run_tool(
        "host_tools",
        "evaluate",
        "--port",
        "virtual",
        "--run",
        str(run_copy),
        "--no-progress",
        check=False,
        timeout=300,
    )
    assert proc.returncode == 3 and "--restart" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    _evaluate(run_copy, "virtual", "--restart", "--limit", "50")
    assert _device_outputs(run_copy)[0] == list(range(50))


@pytest.mark.parametrize(
    "faults",
    [
        ("--flip-rate", "1.3e-5"),  # about 1% of 798-byte frames corrupted
        ("--garbage-every", "40"),
        ("--drop-rate", "2e-5"),  # about 16 bytes lost over the split
        ("--reset-after", "400"),
        ("--stall-after", "300", "--stall-ms", "1200"),
        (
            "--flip-rate",
            "2e-5",
            "--drop-rate",
            "1e-5",
            "--garbage-every",
            "60",
            "--reset-after",
            "500",
            "--seed",
            "3",
        ),
    ],
    ids=["flips", "garbage", "drops", "reset", "stall", "all"],
)
def test_faults_do_not_change_results(run_copy: Path, start_board, faults: tuple[str, ...]) -> None:
    board = start_board(run_copy, *faults)
    _evaluate(run_copy, board.port)
    indices, outputs = _device_outputs(run_copy)
    reference = _tflm_reference(run_copy)
    assert indices == list(range(len(reference)))
    np.testing.assert_array_equal(outputs, reference)
    summary = json.loads((run_copy / "device_eval.json").read_text())["summary"]
    if "--stall-ms" in faults:
        # A stalled device stops reading, so USB-like flow control holds the host's writes
        # (no loss, nothing to resend): the stall shows as time, not as retransmissions.
        stall_s = float(faults[faults.index("--stall-ms") + 1]) / 1000
        assert summary["wall_time_s"] >= stall_s, summary
    else:
        # The faults really happened: the host had to recover.
        assert summary["retransmissions"] + summary["resyncs"] + summary["timeouts"] > 0, summary


def test_virtual_board_stops_cleanly_on_sigint(host_run: Path, start_board) -> None:
    board = start_board(host_run)
    assert board.port.startswith("/dev/")
    board.proc.send_signal(signal.SIGINT)
    assert board.proc.wait(timeout=10) == 0
    assert "Traceback" not in board.stderr()


def test_stall_with_a_small_window_times_out_and_recovers(run_copy: Path, start_board) -> None:
    # With two requests in flight the pty buffer never fills, so the host is not held in a
    # write: it must notice the silence (reply timeout), resend, and still lose nothing.
    board = start_board(run_copy, "--stall-after", "100", "--stall-ms", "1500")
    _evaluate(run_copy, board.port, "--window", "2", "--limit", "200")
    indices, outputs = _device_outputs(run_copy)
    assert indices == list(range(200))
    np.testing.assert_array_equal(outputs, _tflm_reference(run_copy)[:200])
    summary = json.loads((run_copy / "device_eval.json").read_text())["summary"]
    counters = {k: summary[k] for k in ("timeouts", "retransmissions", "duplicates", "wall_time_s")}
    assert summary["timeouts"] >= 1 and summary["retransmissions"] >= 1, counters
    # The originals were answered after the stall too: the answers to the resent copies were
    # recognised as duplicates and not recorded twice.
    assert summary["duplicates"] >= 1, counters


def test_heavy_corruption_costs_one_resend_per_damaged_frame(run_copy: Path, start_board) -> None:
    # About 21% of the 798-byte frames are damaged. Each NACK must cost about one resend: a
    # resend storm (the whole window per NACK) would end in repeated handshakes or give up.
    board = start_board(run_copy, "--flip-rate", "3e-4", "--seed", "1")
    _evaluate(run_copy, board.port)
    indices, outputs = _device_outputs(run_copy)
    reference = _tflm_reference(run_copy)
    assert indices == list(range(len(reference)))
    np.testing.assert_array_equal(outputs, reference)
    summary = json.loads((run_copy / "device_eval.json").read_text())["summary"]
    counters = {k: summary[k] for k in ("nacks", "retransmissions", "handshakes", "timeouts")}
    assert summary["nacks"] >= 50, counters
    assert summary["retransmissions"] <= 2 * summary["nacks"] + 64, counters
    # One frame damaged MAX_RETRIES + 1 times in a row earns a new handshake by design; with a
    # fifth of all frames damaged that happens now and then (which frames depends on timing).
    # A storm would need many.
    assert summary["handshakes"] <= 2, counters


def test_slow_model_is_waited_for_not_given_up(run_copy: Path, start_board) -> None:
    # Each Invoke() takes 0.7 s, longer than the transfer part of the reply timeout: the host
    # must learn the invoke time from the first result and stop resending.
    board = start_board(run_copy, "--invoke-ms", "700")
    _evaluate(run_copy, board.port, "--limit", "5")
    indices, outputs = _device_outputs(run_copy)
    assert indices == list(range(5))
    np.testing.assert_array_equal(outputs, _tflm_reference(run_copy)[:5])
    summary = json.loads((run_copy / "device_eval.json").read_text())["summary"]
    assert summary["invoke_us"]["min"] >= 700_000
    assert summary["handshakes"] == 1 and summary["timeouts"] <= 1, summary


def test_resume_on_another_device_is_refused(run_copy: Path) -> None:
    _evaluate(run_copy, "virtual", "--restart", "--limit", "20")
    journal = run_copy / "device_eval.jsonl"
    lines = journal.read_text().splitlines()
    header = json.loads(lines[0])
    header["virtual"], header["device"]["board"] = False, "Arduino Nano 33 BLE Sense"
    journal.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    proc = run_tool("host_tools", "evaluate", "--port", "virtual", "--run", str(run_copy), "--no-progress",
                    check=False)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "--restart" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
