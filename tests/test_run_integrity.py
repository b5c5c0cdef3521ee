"""Run-folder integrity: commits, records, locks, bounded device timings, honest exit codes.

Faults are injected through ``TINYML_FAULT_AT`` (common/commit.py), which kills or pauses a
stage exactly before its n-th write, so no test depends on timing. The oracle for "consistent"
is independent of the records: every file of a stage must be byte-identical to one and the same
complete run of that stage (the folder before, or the folder after).
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_tool, tool_env

from common import provenance, runfolder, runlock
from common.commit import FAULT_DIR_ENV, FAULT_ENV, read_record, record_name, remove_dead_temps
from common.errors import DataError, DeviceError
from common.limits import MAX_ARRAY_BYTES, check_keras_file, npz_declarations
from common.saved_split import read_split, write_split
from host_tools import timing
from host_tools.journal import read_journal

# Bounds of the waits in this file (each a child process that must reach a known point).
CHILD_READY_TIMEOUT_S = 120.0
STAGE_TIMEOUT_S = 600.0
PAUSE_POLL_S = 0.02
# A child told by the kernel that its parent died (SIGTERM) exits within this long.
ORPHAN_EXIT_TIMEOUT_S = 30.0


def _one_error_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def _processes_with(text: str) -> list[int]:
    """Live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the commit itself, every write

DEMO = """
import sys
from pathlib import Path
from common.commit import StagedCommit
from common.errors import run_cli

def main(argv):
    run, tag = Path(sys.argv[1]), sys.argv[2]
    with StagedCommit(run, "demo") as staged:
        for name in ("a.bin", "b.bin", "c.bin"):
            staged.write(run / name, f"{tag}:{name}".encode())
        staged.commit({"tag": tag})
    return 0

sys.exit(run_cli(main))
"""
DEMO_FILES = ("a.bin", "b.bin", "c.bin")
DEMO_WRITES = 3 + 1 + 3 + 1  # staged files, old record removed, renames, new record


def _demo(run: Path, tag: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = tool_env()
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run([sys.executable, "-c", DEMO, str(run), tag], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=STAGE_TIMEOUT_S, check=False)


def _demo_state(run: Path) -> str:
    """'old' or 'new' when the folder is one complete commit, 'refused' when the record is gone."""
    try:
        record = read_record(run, "demo", "demo")
    except DataError:
        return "refused"
    tags = {(run / n).read_bytes().split(b":")[0].decode() for n in DEMO_FILES}
    assert tags == {record["tag"]}, f"record {record['tag']} over files {tags}: a mixed folder"
    for name in DEMO_FILES:  # the record's hashes, against hashlib on the expected content
        assert record["files"][name] == hashlib.sha256(f"{record['tag']}:{name}".encode()).hexdigest()
    return {"v1": "old", "v2": "new"}[record["tag"]]


@pytest.mark.parametrize("sig", ["KILL", "INT"])
def test_a_kill_at_every_write_leaves_old_new_or_refused(tmp_path: Path, sig: str) -> None:
    seen = []
    for n in range(1, DEMO_WRITES + 2):
        run = tmp_path / f"{sig}{n}"
        run.mkdir()
        assert _demo(run, "v1").returncode == 0
        proc = _demo(run, "v2", f"demo:{n}:{sig}")
        state = _demo_state(run)
        seen.append(state)
        if n > DEMO_WRITES:
            assert proc.returncode == 0 and state == "new"
            continue
        if sig == "INT":
            # Ctrl-C: one line, exit 130, and nothing staged is left behind.
            assert proc.returncode == 130 and proc.stderr.strip() == "interrupted", proc.stderr
            assert _temps(run) == []
        else:
            assert proc.returncode == -signal.SIGKILL
            remove_dead_temps(run)  # what the next stage does under the run folder's lock
            assert _temps(run) == []
        # before the old record goes, the old state is complete; after, the folder is refused
        assert state == ("old" if n <= 4 else "refused"), (n, state)
    assert seen.count("refused") == 4 and seen[-1] == "new"


def test_temporary_files_of_live_writers_are_kept(tmp_path: Path) -> None:
    live = tmp_path / f".a.bin.tmp-{os.getpid()}-00ff00ff.bin"
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead = tmp_path / f".a.bin.tmp-{int(child.stdout)}-00ff00ff.bin"
    live.write_bytes(b"x")
    dead.write_bytes(b"x")
    assert remove_dead_temps(tmp_path) == [dead.name]
    assert live.exists()


# ------------------------------------------------------------------ one writer per run folder

HOLDER = """
import sys, time
from pathlib import Path
from common import runlock
with runlock.hold(Path(sys.argv[1]), "python -m holder"):
    print("locked", flush=True)
    time.sleep(600)
"""


def _start_holder(run: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=ROOT, env=tool_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], CHILD_READY_TIMEOUT_S)
    assert ready and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(DataError, match=rf"in use by pid {holder.pid} \(python -m holder"), \
                runlock.hold(tmp_path, "python -m test"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with runlock.hold(tmp_path, "python -m test"):  # a killed holder leaves no stale lock
        assert "python -m test" in (tmp_path / runfolder.LOCK_FILE).read_text()


def test_second_stage_on_a_folder_in_use_is_refused_with_the_holder(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path)
    try:
        proc = run_tool("host_tools", "compare", "--run", str(tmp_path), check=False)
        _one_error_line(proc, 3, f"pid {holder.pid}", "python -m holder")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_unwritable_run_folder_is_exit_3_before_any_work(tmp_path: Path) -> None:
    # /proc refuses new files even to root: a folder nobody can write to.
    proc = run_tool("host_tools", "compare", "--run", "/proc/self/fdinfo", check=False)
    _one_error_line(proc, 3, "cannot write to run folder")
    if os.geteuid() != 0:  # permissions do not stop root
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        proc = run_tool("train", "--run", str(ro), "--limit", "100", "--epochs", "1", check=False)
        _one_error_line(proc, 3, "cannot write")


# ------------------------------------------------------------------ options and oversized inputs

@pytest.mark.parametrize("option", [("--hidden", "100000000"), ("--batch-size", str(1 << 40)),
                                    ("--epochs", "1000000"), ("--limit", "-3")])
def test_impossible_train_options_are_argparse_errors(tmp_path: Path, option: tuple[str, str]) -> None:
    proc = run_tool("train", "--run", str(tmp_path / "run"), *option, check=False)
    assert proc.returncode == 2 and option[0] in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def _npz_with_header(path: Path, arrays: dict[str, dict]) -> None:
    """A .npz whose .npy members declare the given headers but hold no data."""
    import io

    with zipfile.ZipFile(path, "w") as zf:
        for name, header in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, header)
            zf.writestr(f"{name}.npy", buf.getvalue())


def test_huge_declared_array_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "huge.npz"
    _npz_with_header(path, {"x": {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)},
                            "y": {"descr": "<i8", "fortran_order": False, "shape": (10**6,)}})
    with pytest.raises(DataError, match=r"declares shape \(1000000x1000000\)"):
        npz_declarations(path)
    with pytest.raises(DataError, match="declares shape"):
        read_split(path)
    proc = run_tool("train", "--run", str(tmp_path / "run"), "--dataset", str(path), check=False)
    _one_error_line(proc, 3, "declares shape")
    assert MAX_ARRAY_BYTES < 4 * 10**12


def test_scalar_label_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scalar.npz"
    np.savez(path, x=np.zeros((30, 8, 8), np.uint8), y=np.array(3))
    proc = run_tool("train", "--run", str(tmp_path / "run"), "--dataset", str(path), check=False)
    _one_error_line(proc, 3, "one label per sample")


def test_keras_zip_bomb_is_refused_from_declared_sizes(tmp_path: Path) -> None:
    bomb = tmp_path / "model.keras"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("model.weights.h5", "w", force_zip64=True) as fh:
        block = bytes(1 << 24)
        for _ in range(20):  # 320 MiB of zeros: about 300 KB on disk
            fh.write(block)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(Exception, match="declares 320 MiB") as caught:
        check_keras_file(bomb)
    assert getattr(caught.value, "exit_code", None) == 4


# ------------------------------------------------------------------ journals

def test_malformed_journal_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    journal = tmp_path / runfolder.DEVICE_EVAL_JOURNAL
    good = [{"index": i, "label": 1, "output": [1, -2, 3], "pred": 2, "invoke_us": 5, "cycles": None}
            for i in range(4)]
    lines = [json.dumps({"kind": "header", "model_hash": "x"}), json.dumps(good[0]), "{garbled",
             json.dumps({k: v for k, v in good[1].items() if k != "pred"}),  # a key missing
             json.dumps({**good[2], "output": "not a list"}), json.dumps([1, 2]), json.dumps(good[3])]
    journal.write_text("\n".join(lines) + "\n" + '{"index": 9, "lab')  # and a torn tail
    state = read_journal(journal)
    assert sorted(state.samples) == [0, 3]
    assert state.skipped == 4
    assert state.good_bytes == len(("\n".join(lines) + "\n").encode())


# ------------------------------------------------------------------ a lying device

def test_device_claiming_an_absurd_invoke_time_is_faulty_within_the_bound() -> None:
    import struct

    from test_host_session import EXPECTED, IN_BYTES, FakeDevice, FakeLink, info_payload, outputs_for

    from host_tools.framing import build_frame, parse_frame
    from host_tools.messages import MsgType
    from host_tools.session import Session

    class LyingDevice(FakeDevice):
        """Answers like the firmware, but every RESULT claims an Invoke() of 0xFFFFFFFF us (71 min)."""

        def receive(self, data: bytes) -> None:
            for encoded in self.decoder.feed(data):
                frame = parse_frame(encoded)
                if frame.msg_type == MsgType.HELLO:
                    self.out += build_frame(MsgType.INFO, frame.seq, info_payload())
                else:
                    payload = struct.pack("<BII", 0, 0xFFFFFFFF, 0) + outputs_for(frame.payload)
                    self.out += build_frame(MsgType.RESULT, frame.seq, payload)

    link = FakeLink(LyingDevice())
    session = Session(link, EXPECTED, clock=link.clock)  # type: ignore[arg-type]
    with pytest.raises(DeviceError, match="claims an Invoke"):
        list(session.stream([(0, bytes(IN_BYTES))]))
    assert link.now < timing.HELLO_TIMEOUT_S + timing.MAX_QUEUED_WORK_S


def test_silent_device_with_a_huge_estimate_still_fails_within_the_bound() -> None:
    from dataclasses import replace

    from test_host_session import EXPECTED, FakeDevice, FakeLink

    from host_tools.session import Session

    class Mute(FakeDevice):
        def receive(self, data: bytes) -> None:
            pass

    link = FakeLink(Mute())
    session = Session(link, replace(EXPECTED, invoke_estimate_s=1e9), clock=link.clock)  # type: ignore[arg-type]
    with pytest.raises(DeviceError, match="no answer"):
        session.handshake()
    bound = timing.HELLO_ATTEMPTS * (timing.HELLO_TIMEOUT_S + timing.MAX_QUEUED_WORK_S)
    assert link.now <= bound + timing.HELLO_ATTEMPTS * timing.READ_SLICE_S


# ------------------------------------------------------------------ stages, paused at every write

def _paused_stage(args: list[str], stage: str, run: Path, snapshots: Path) -> list[Path]:
    """Run ``python -m <args>`` pausing at each write of ``stage``; a copy of ``run`` per pause."""
    control = snapshots / "control"
    control.mkdir(parents=True)
    env = tool_env()
    env[FAULT_ENV] = f"{stage}:*:PAUSE"
    env[FAULT_DIR_ENV] = str(control)
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    copies = []
    deadline = time.monotonic() + STAGE_TIMEOUT_S
    step = 0
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the stage did not finish"
        marker = control / "step"
        if marker.exists() and marker.read_text() == str(step + 1):
            step += 1
            copy = snapshots / f"at{step:02d}"
            shutil.copytree(run, copy, symlinks=True)
            copies.append(copy)
            (control / f"go-{step}").touch()
        time.sleep(PAUSE_POLL_S)
    assert proc.returncode == 0, proc.stderr
    return copies


def _generation(run: Path, names: tuple[str, ...], before: Path, after: Path) -> str:
    """'before' or 'after' when every file equals that complete run's; else the test fails."""
    same_before = all(_sha(run / n) == _sha(before / n) for n in names)
    same_after = all(_sha(run / n) == _sha(after / n) for n in names)
    assert same_before or same_after, f"{run.name}: {names} mix two runs and were accepted"
    return "before" if same_before else "after"


def test_train_paused_at_every_write_never_leaves_an_accepted_mix(run_copy: Path, tmp_path: Path) -> None:
    before = tmp_path / "before"
    shutil.copytree(run_copy, before)
    snaps = _paused_stage(["train", "--run", str(run_copy), "--limit", "300", "--epochs", "1", "--seed", "1",
                           "--quiet"], "train", run_copy, tmp_path / "snaps")
    after = run_copy
    refused = []
    kinds = set()
    for snap in snaps:
        try:
            provenance.check_train(snap)
        except DataError:
            refused.append(snap)
            continue
        kind = _generation(snap, provenance.TRAIN_FILES, before, after)
        kinds.add(kind)
        metrics = json.loads((snap / runfolder.TRAIN_METRICS_JSON).read_text())
        assert metrics["model_sha256"] == _sha(snap / runfolder.MODEL_KERAS)
        if kind == "before" and (snap / runfolder.CONVERT_RECORD).exists():
            provenance.check_convert(snap)  # the old int8 model still belongs to the old keras model
    assert kinds == {"before"} and refused, "pauses must cover both sides of the commit"
    # The next stage, for real: one line, exit 3, and the killed writer's temporary files go.
    for snap in refused[:: max(1, len(refused) // 3)]:
        had_temps = bool(_temps(snap))
        proc = run_tool("convert", "--run", str(snap), "--firmware-dir", str(snap / "gen"), check=False)
        _one_error_line(proc, 3, "python -m train")
        assert _temps(snap) == [] or not had_temps
    # and after the last write the folder is the new run, accepted
    provenance.check_train(after)
    assert not (after / runfolder.CONVERT_RECORD).exists() and not (after / runfolder.MODEL_TFLITE).exists()


def test_convert_paused_at_every_write_never_leaves_an_accepted_mix(run_copy: Path, tmp_path: Path) -> None:
    gen = run_copy / "gen"
    subprocess_args = ["convert", "--run", str(run_copy), "--firmware-dir", str(gen), "--seed", "1",
                       "--calibration-size", "40"]
    before = tmp_path / "before"
    shutil.copytree(run_copy, before)
    snaps = _paused_stage(subprocess_args, "convert", run_copy, tmp_path / "snaps")
    names = (runfolder.MODEL_TFLITE, runfolder.CONVERT_REPORT_JSON, runfolder.DESKTOP_OUTPUTS_NPZ)
    refused = []
    for snap in snaps:
        try:
            provenance.check_convert(snap)
        except DataError:
            refused.append(snap)
            continue
        _generation(snap, names, before, run_copy)
    assert refused
    proc = run_tool("host_tools", "evaluate", "--port", "virtual", "--run", str(refused[-1]), check=False)
    _one_error_line(proc, 3, "python -m convert")
    proc = run_tool("host_tools", "compare", "--run", str(refused[0]), check=False)
    _one_error_line(proc, 3, "python -m convert")
    provenance.check_convert(run_copy)


# ------------------------------------------------------------------ stages, really killed

def _first_rename(stage_outputs: int, stale: int) -> int:
    """Write number of a stage's first rename: its staged files, stale removals, old record."""
    return stage_outputs + stale + 1 + 1


@pytest.mark.parametrize("sig", ["INT", "KILL"])
def test_train_killed_at_its_first_rename_is_refused_by_convert(run_copy: Path, sig: str) -> None:
    staged = len(runfolder.TRAIN_OUTPUTS) - 1  # every output but the record is staged
    n = _first_rename(staged, len(runfolder.DOWNSTREAM_OF_TRAIN)) + 1  # model.keras renamed, splits not
    env_fault = {FAULT_ENV: f"train:{n}:{sig}"}
    proc = subprocess.run([sys.executable, "-m", "train", "--run", str(run_copy), "--limit", "300",
                           "--epochs", "1", "--seed", "1", "--quiet"], cwd=ROOT,
                          env={**tool_env(), **env_fault}, capture_output=True, text=True,
                          timeout=STAGE_TIMEOUT_S, check=False)
    if sig == "INT":
        assert proc.returncode == 130 and proc.stderr.strip().splitlines()[-1] == "interrupted"
        assert _temps(run_copy) == []
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (run_copy / runfolder.TRAIN_RECORD).exists()
    proc = run_tool("convert", "--run", str(run_copy), "--firmware-dir", str(run_copy / "gen"), check=False)
    _one_error_line(proc, 3, record_name("train"), "python -m train")
    assert _temps(run_copy) == []


def test_evaluate_killed_before_its_result_resumes_from_the_journal(run_copy: Path) -> None:
    env = {**tool_env(), FAULT_ENV: "evaluate:2:KILL"}  # staged, not yet renamed
    args = [sys.executable, "-m", "host_tools", "evaluate", "--port", "virtual", "--run", str(run_copy),
            "--limit", "80", "--no-progress"]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=STAGE_TIMEOUT_S,
                          check=False)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_copy / runfolder.DEVICE_EVAL_JSON).exists()
    deadline = time.monotonic() + ORPHAN_EXIT_TIMEOUT_S
    while _processes_with(f"--run={run_copy}") and time.monotonic() < deadline:
        time.sleep(PAUSE_POLL_S)
    assert _processes_with(f"--run={run_copy}") == [], "the killed evaluation left its virtual board running"
    report = run_tool("host_tools", "compare", "--run", str(run_copy), check=False)
    assert report.returncode == 0, report.stderr  # three columns: no device results yet
    again = run_tool("host_tools", "evaluate", "--port", "virtual", "--run", str(run_copy), "--limit", "80",
                     "--no-progress", timeout=STAGE_TIMEOUT_S)
    assert "80 of 80 samples already" in again.stdout
    device = json.loads((run_copy / runfolder.DEVICE_EVAL_JSON).read_text())
    assert [s["index"] for s in device["samples"]] == list(range(80))
    assert _temps(run_copy) == []


def test_two_evaluations_of_one_folder_the_second_is_refused(run_copy: Path, tmp_path: Path) -> None:
    control = tmp_path / "control"
    control.mkdir()
    env = {**tool_env(), FAULT_ENV: "evaluate:1:PAUSE", FAULT_DIR_ENV: str(control)}
    first = subprocess.Popen([sys.executable, "-m", "host_tools", "evaluate", "--port", "virtual", "--run",
                              str(run_copy), "--limit", "60", "--no-progress"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + CHILD_READY_TIMEOUT_S
        while not (control / "step").exists():  # the first one holds the lock, paused before its write
            assert time.monotonic() < deadline and first.poll() is None, "the first evaluation did not start"
            time.sleep(PAUSE_POLL_S)
        second = run_tool("host_tools", "evaluate", "--port", "virtual", "--run", str(run_copy),
                          "--limit", "60", "--no-progress", check=False)
        _one_error_line(second, 3, f"pid {first.pid}", "evaluate")
        for step in range(1, 10):  # PAUSE waits at every write of the stage: let all of them go
            (control / f"go-{step}").touch()
        _, err = first.communicate(timeout=STAGE_TIMEOUT_S)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    text = (run_copy / runfolder.DEVICE_EVAL_JOURNAL).read_text()
    journal = [json.loads(line) for line in text.splitlines()]
    assert sorted(r["index"] for r in journal if "index" in r) == list(range(60))


def test_malformed_journal_is_recounted_end_to_end(run_copy: Path) -> None:
    run_tool("host_tools", "evaluate", "--port", "virtual", "--run", str(run_copy), "--limit", "30",
             "--no-progress", timeout=STAGE_TIMEOUT_S)
    journal = run_copy / runfolder.DEVICE_EVAL_JOURNAL
    lines = journal.read_text().splitlines()
    lines[3] = "{garbled"
    lines[5] = json.dumps({k: v for k, v in json.loads(lines[5]).items() if k != "pred"})
    journal.write_text("\n".join(lines) + "\n")
    proc = run_tool("host_tools", "evaluate", "--port", "virtual", "--run", str(run_copy), "--limit", "30",
                    "--no-progress", timeout=STAGE_TIMEOUT_S)
    assert "skipped 2 malformed" in proc.stdout and "28 of 30 samples already" in proc.stdout
    device = json.loads((run_copy / runfolder.DEVICE_EVAL_JSON).read_text())
    assert [s["index"] for s in device["samples"]] == list(range(30))


def test_run_folder_starting_with_a_dash_works_with_the_virtual_port(run_copy: Path, tmp_path: Path) -> None:
    dashed = tmp_path / "-run"
    shutil.copytree(run_copy, dashed)
    proc = subprocess.run([sys.executable, "-m", "host_tools", "evaluate", "--port", "virtual", "--run=-run",
                           "--limit", "10", "--no-progress"], cwd=tmp_path, env=tool_env(),
                          capture_output=True, text=True, timeout=STAGE_TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (dashed / runfolder.DEVICE_EVAL_JSON).is_file()


def test_directory_in_place_of_an_output_is_exit_3_before_the_device(run_copy: Path) -> None:
    (run_copy / runfolder.DEVICE_EVAL_JSON).mkdir()
    proc = run_tool("host_tools", "evaluate", "--port", "virtual", "--run", str(run_copy), check=False)
    _one_error_line(proc, 3, "is a directory")


# ------------------------------------------------------------------ compare checks identities

def test_compare_refuses_device_results_of_another_model(run_copy: Path) -> None:
    digest = provenance.test_split_digest(run_copy)
    fake = {"header": {"model_hash": "0000000000000000", "test_set": digest},
            "samples": [{"index": 0, "output": [0] * 10}]}
    (run_copy / runfolder.DEVICE_EVAL_JSON).write_text(json.dumps(fake))
    proc = run_tool("host_tools", "compare", "--run", str(run_copy), check=False)
    _one_error_line(proc, 3, runfolder.DEVICE_EVAL_JSON, "evaluate --restart")
    model = read_record(run_copy, "convert", "x")["model_hash"]
    fake["header"] = {"model_hash": model, "test_set": "another split"}
    (run_copy / runfolder.DEVICE_EVAL_JSON).write_text(json.dumps(fake))
    proc = run_tool("host_tools", "compare", "--run", str(run_copy), check=False)
    _one_error_line(proc, 3, runfolder.DEVICE_EVAL_JSON, "another test split")
    assert not (run_copy / runfolder.REPORT_MD).exists()


def test_compare_refuses_a_swapped_test_split_or_desktop_outputs(run_copy: Path) -> None:
    split = read_split(run_copy / runfolder.TEST_SET_NPZ)
    y = split.y.copy()
    y[0] = (y[0] + 1) % len(split.labels)
    original = (run_copy / runfolder.TEST_SET_NPZ).read_bytes()
    write_split(run_copy / runfolder.TEST_SET_NPZ, split.x, y, split.labels)
    proc = run_tool("host_tools", "compare", "--run", str(run_copy), check=False)
    _one_error_line(proc, 3, runfolder.TEST_SET_NPZ, "python -m convert")
    (run_copy / runfolder.TEST_SET_NPZ).write_bytes(original)
    desktop = run_copy / runfolder.DESKTOP_OUTPUTS_NPZ
    with np.load(desktop) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["tflm_int8"] = np.roll(arrays["tflm_int8"], 1, axis=0)
    np.savez_compressed(desktop, **arrays)
    proc = run_tool("host_tools", "compare", "--run", str(run_copy), check=False)
    _one_error_line(proc, 3, runfolder.DESKTOP_OUTPUTS_NPZ, "python -m convert")


def test_convert_record_covers_the_generated_files_in_the_run_folder(tmp_path: Path) -> None:
    from convert.staged_write import write_all

    run = tmp_path / "run"
    files = {run / runfolder.CONVERT_REPORT_JSON: b'{"source": "tflite"}\n',
             run / runfolder.MODEL_TFLITE: b"not really a model",
             run / runfolder.GENERATED_DIR / "model_data.h": b"// one\n",
             tmp_path / "firmware" / "model_data.h": b"// outside the run folder\n"}
    write_all(files)
    record = read_record(run, "convert", "x")
    assert set(record["files"]) == {runfolder.CONVERT_REPORT_JSON, runfolder.MODEL_TFLITE,
                                    f"{runfolder.GENERATED_DIR}/model_data.h"}
    assert record["model_hash"] == hashlib.sha256(b"not really a model").hexdigest()[:16]
    provenance.check_convert(run)
    (run / runfolder.GENERATED_DIR / "model_data.h").write_bytes(b"// another model\n")
    with pytest.raises(DataError, match=r"model_data\.h is not the file `convert` wrote"):
        provenance.check_convert(run)


def test_journal_is_flushed_before_waiting_on_a_silent_device(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from test_host_session import EXPECTED, IN_BYTES, FakeDevice, FakeLink

    from host_tools.journal import JournalWriter
    from host_tools.session import Session

    # Only the wait itself may flush: the size and age rules would not for a whole day.
    monkeypatch.setattr(timing, "JOURNAL_FLUSH_S", 86_400.0)
    monkeypatch.setattr(timing, "JOURNAL_FLUSH_SAMPLES", 10**9)
    path = tmp_path / runfolder.DEVICE_EVAL_JOURNAL
    on_disk_while_silent: list[int] = []

    class WatchedLink(FakeLink):
        def read(self, timeout: float) -> bytes:
            if not self.device.out:  # the host is about to wait on silence
                on_disk_while_silent.append(path.read_bytes().count(b"\n"))
            return super().read(timeout)

    link = WatchedLink(FakeDevice(silent_after=2))
    session = Session(link, EXPECTED, clock=link.clock)  # type: ignore[arg-type]
    writer = JournalWriter(path, None)
    session.on_idle = writer.flush_pending
    done = []
    for index, _ in session.stream([(i, bytes(IN_BYTES)) for i in range(4)]):
        writer.write_line(f'{{"index":{index}}}\n')
        done.append(index)
    writer.close()
    assert sorted(done) == [0, 1, 2, 3]
    assert max(on_disk_while_silent) >= 2  # both results before the silence were on disk


# ------------------------------------------------------------------ documented exit codes

def test_build_failures_and_file_errors_have_documented_exit_codes(
        capsys: pytest.CaptureFixture[str]) -> None:
    from common.errors import run_cli
    from host_tools.hostlib import HostBuildError

    def build(_: object) -> int:
        raise HostBuildError("libtm_host.so build failed: x.cpp:1: error: boom")

    def unreadable(_: object) -> int:
        raise PermissionError(13, "Permission denied", "/some/run/model.keras")

    assert run_cli(build) == 6  # README: 6 = build, toolchain or board sources missing
    assert run_cli(unreadable) == 3  # a file the user can fix, not an internal error (70)
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: libtm_host.so build failed: x.cpp:1: error: boom",
                   "error: cannot access /some/run/model.keras: Permission denied"]
