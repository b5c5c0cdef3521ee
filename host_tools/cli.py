"""`python -m host_tools`: talk to the board (or the virtual board) and report on it."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import runfolder, runlock
from common.errors import DataError, UsageError, run_cli
from host_tools.linksim import LINK_PRESETS, FaultConfig

if TYPE_CHECKING:  # imported when a command needs a port, so `--help` stays quick
    from host_tools.link import SerialLink

VIRTUAL = "virtual"
EMULATED = "emulated"
# Requests in flight on the emulated board unless --window says otherwise. QEMU's semihosting
# console buffers 1 KiB of input, about one INFER frame of the dnn: more queued frames only wait
# in the pty (bench/emulator_bench.py measured 397-522 dnn samples/s with 4 over three runs, 355/s with 32).
EMULATED_WINDOW = 4
AUTO = "auto"
VIRTUAL_HINT = (
    f"the virtual board runs the run folder's {runfolder.GENERATED_DIR}/ files: regenerate them with "
    "`python -m convert --run DIR`"
)


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in 0..1, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        default=AUTO,
        metavar="PORT",
        help="serial port of the board; `auto` picks the only Arduino board attached, "
        "`virtual` starts a virtual board for the run folder, `emulated` the emulated Cortex-M4 "
        "(QEMU mps2-an386) running the firmware image, a pyserial URL such as "
        "socket://HOST:PORT or rfc2217://HOST:PORT reaches a board on another machine "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--trace",
        nargs="?",
        const="-",
        metavar="FILE",
        help="log every frame in both directions, decoded, to FILE (default: stderr)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m host_tools",
        description="Talk to the board or the virtual board: list ports, show what it runs, evaluate the "
        "test split on it, and compare it with the desktop models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "ports",
        help="list serial ports, marking Arduino boards",
        description="List serial ports; Arduino boards (USB VID 2341) are marked.",
    )

    vb = sub.add_parser(
        "virtual-board",
        help="serve the firmware core on a pseudo-terminal",
        description="Build the firmware core for the host with the generated model, "
        "serve it on a pty (its path is the first line printed) until "
        "Ctrl-C or SIGTERM. Inference runs the firmware's TFLM adapter on the board's own TFLM "
        "library compiled for the host (--engine board, the default when the board's sources are on "
        "this machine), or the tflite-micro Python runtime on the generated header's model bytes "
        "(--engine python).",
    )
    runfolder.add_run_argument(vb)
    vb.add_argument(
        "--generated",
        type=Path,
        metavar="DIR",
        help=f"generated model directory (default: the run folder's {runfolder.GENERATED_DIR}/)",
    )
    vb.add_argument(
        "--engine",
        choices=("board", "python"),
        default=None,
        help="board: the board's TFLM library built for the host (default when its sources are found); "
        "python: the tflite-micro runtime",
    )
    vb.add_argument(
        "--link", choices=sorted(LINK_PRESETS), help="simulate a link: usb-fs = 1.2 MB/s and 1 ms each way"
    )
    vb.add_argument("--bandwidth", type=float, metavar="BYTES_PER_S", help="simulated bandwidth, each way")
    vb.add_argument("--latency-ms", type=float, default=None, metavar="MS", help="simulated one-way latency")
    faults = vb.add_argument_group("fault injection")
    faults.add_argument(
        "--flip-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability per byte of a flipped bit (both directions)",
    )
    faults.add_argument(
        "--drop-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability per byte of losing it (both directions)",
    )
    faults.add_argument(
        "--garbage-every",
        type=_count,
        default=0,
        metavar="N",
        help="a burst of random bytes after every N-th frame (both directions)",
    )
    faults.add_argument(
        "--reset-after",
        type=_count,
        default=0,
        metavar="N",
        help="simulated reset (partial frame and result cache lost) after N frames",
    )
    faults.add_argument(
        "--stall-after",
        type=_count,
        default=0,
        metavar="N",
        help="freeze once after N frames, for --stall-ms",
    )
    faults.add_argument("--stall-ms", type=float, default=0.0, metavar="MS")
    faults.add_argument(
        "--invoke-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="simulate a slower board: every Invoke() takes at least MS",
    )
    faults.add_argument("--seed", type=int, default=0, help="seed of the fault generator")

    em = sub.add_parser(
        "emulate",
        help="serve the firmware on an emulated Cortex-M4 (QEMU) on a pseudo-terminal",
        description="Cross-compile the firmware image for QEMU's mps2-an386 (the board's TFLM library "
        "and flags, its own board layer; cached), run it with `qemu-system-arm -icount shift=0` and "
        "serve its link (QEMU's semihosting console) on a pty (its path is the first line printed) "
        "until Ctrl-C or SIGTERM.",
    )
    runfolder.add_run_argument(em)
    em.add_argument(
        "--generated",
        type=Path,
        metavar="DIR",
        help=f"generated model directory (default: the run folder's {runfolder.GENERATED_DIR}/)",
    )

    info = sub.add_parser(
        "info",
        help="handshake and show what the device runs",
        description="Handshake with the device, print its INFO and whether it runs the run folder's model.",
    )
    _port_argument(info)
    runfolder.add_run_argument(info)

    prof = sub.add_parser(
        "profile",
        help="time each op of one inference on the device",
        description="Handshake, run one test sample with every op timed (PROFILE) and print per op "
        "the measured ticks (DWT cycles on the Nano, instructions on the emulated Cortex-M4, host "
        "microseconds on the virtual board) next to convert's estimate.",
    )
    _port_argument(prof)
    runfolder.add_run_argument(prof)
    prof.add_argument("--sample", type=_count, default=0, metavar="N",
                      help="index of the test sample to run (default: %(default)s)")

    ev = sub.add_parser(
        "evaluate",
        help="run the test split on the device",
        description="Stream the run's test split to the device and record the int8 "
        f"outputs in {runfolder.DEVICE_EVAL_JOURNAL} (resumable) and "
        f"{runfolder.DEVICE_EVAL_JSON}.",
    )
    _port_argument(ev)
    runfolder.add_run_argument(ev)
    ev.add_argument(
        "--window",
        type=_positive,
        metavar="N",
        help="requests in flight (at most the device's window; default: the device's)",
    )
    ev.add_argument("--limit", type=_positive, metavar="N", help="evaluate only the first N test samples")
    ev.add_argument("--restart", action="store_true", help="discard the journal and start over")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")

    cmp_ = sub.add_parser(
        "compare",
        help="report: Keras float vs LiteRT int8 vs TFLM vs device",
        description="Write report.md, report.html and figures comparing the four "
        "columns (Keras float, LiteRT int8, TFLM on the host, device).",
    )
    runfolder.add_run_argument(cmp_)
    return parser


@contextlib.contextmanager
def _device(port: str, run: Path, trace: str | None = None) -> Iterator[tuple[SerialLink, str, bool]]:
    """An open link for --port (auto, virtual, a path or a URL): (link, label, virtual)."""
    from host_tools.link import SerialLink, open_trace

    if port == VIRTUAL:
        from host_tools.virtual_process import virtual_board

        with open_trace(trace) as stream, virtual_board(run) as path, SerialLink(path, stream) as link:
            yield link, path, True
        return
    if port == EMULATED:
        from host_tools.emulator import emulated_board, generated_dir_for

        with open_trace(trace) as stream, emulated_board(generated_dir_for(run, None)) as path, \
                SerialLink(path, stream) as link:
            yield link, path, False
        return
    if port == AUTO:
        from host_tools.ports import auto_port

        port = auto_port()
    with open_trace(trace) as stream, SerialLink(port, stream) as link:
        yield link, port, False


def _cmd_ports() -> int:
    from host_tools.ports import describe, scan

    entries = scan()
    if not entries:
        print("no serial ports found (use --port virtual to run on the virtual board)")
    for entry in entries:
        print(describe(entry))
    return 0


def _cmd_virtual_board(args: argparse.Namespace) -> int:
    from host_tools.virtual_board import LinkConfig, default_engine, engine_label, serve

    if not args.run.is_dir():
        raise DataError(f"run folder {args.run} does not exist (pass --run DIR of a converted model)")

    bandwidth, latency = LINK_PRESETS[args.link] if args.link else (None, 0.0)
    if args.bandwidth is not None:
        if args.bandwidth <= 0:
            raise UsageError("--bandwidth must be positive")
        bandwidth = args.bandwidth
    if args.latency_ms is not None:
        if args.latency_ms < 0:
            raise UsageError("--latency-ms must be 0 or more")
        latency = args.latency_ms
    if args.stall_ms < 0:
        raise UsageError("--stall-ms must be 0 or more")
    if args.invoke_ms < 0:
        raise UsageError("--invoke-ms must be 0 or more")
    faults = FaultConfig(
        flip_rate=args.flip_rate,
        drop_rate=args.drop_rate,
        garbage_every=args.garbage_every,
        reset_after=args.reset_after,
        stall_after=args.stall_after,
        stall_ms=args.stall_ms,
        seed=args.seed,
    )

    engine = args.engine or default_engine()

    def announce(path: str) -> None:
        print(path, flush=True)
        print(f"virtual board serving on {path} with {engine_label(engine)} (Ctrl-C to stop)",
              file=sys.stderr, flush=True)

    serve(args.run, args.generated, LinkConfig(bandwidth, latency), faults, announce, args.invoke_ms / 1000,
          engine)
    return 0


def _cmd_emulate(args: argparse.Namespace) -> int:
    from host_tools.emulator import serve_forever

    def announce(path: str) -> None:
        print(path, flush=True)
        print(f"emulated Cortex-M4 serving on {path} (Ctrl-C to stop)", file=sys.stderr, flush=True)

    serve_forever(args.run, args.generated, announce)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from host_tools.info import show_info

    with _device(args.port, args.run, args.trace) as (link, label, virtual):
        return show_info(link, label, args.run, virtual_hint=VIRTUAL_HINT if virtual else None)


def _cmd_profile(args: argparse.Namespace) -> int:
    from host_tools.evaluate import profile_run

    with _device(args.port, args.run, args.trace) as (link, label, virtual):
        lines = profile_run(args.run, link, args.sample, flash_hint=VIRTUAL_HINT if virtual else None)
    print(f"profile of test sample {args.sample} on {label}:")
    for line in lines:
        print(line)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from common import provenance
    from host_tools.evaluate import evaluate

    # One evaluation per run folder (two would garble one journal); the model and test split
    # must be convert's, checked before a board or the virtual board is touched.
    with runlock.hold(args.run, "python -m host_tools evaluate"):
        runfolder.refuse_directories(args.run, runfolder.EVALUATE_OUTPUTS)
        provenance.check_convert(args.run)
        return _evaluate(args, evaluate)


def _evaluate(args: argparse.Namespace, evaluate: Callable[..., Any]) -> int:
    with _device(args.port, args.run, args.trace) as (link, label, virtual):
        outcome = evaluate(
            args.run,
            link,
            label,
            virtual,
            window=args.window if args.window is not None or args.port != EMULATED else EMULATED_WINDOW,
            limit=args.limit,
            restart=args.restart,
            progress=not args.no_progress,
            flash_hint=VIRTUAL_HINT if virtual else None,
        )
    s = outcome.summary
    print(
        (f"accuracy {outcome.accuracy:.2%}" if outcome.accuracy is not None else "evaluated")
        + f" on {outcome.samples} samples ({outcome.evaluated_now} now, "
        f"{s['resumed_from_journal']} from the journal) in {outcome.wall_time_s:.1f} s; "
        f"retransmissions {s['retransmissions']}, NACKs {s['nacks']}, handshakes: {s['handshakes']}"
    )
    print(f"wrote {outcome.path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from host_tools.compare import compare

    with runlock.hold(args.run, "python -m host_tools compare"):
        runfolder.refuse_directories(args.run, runfolder.COMPARE_OUTPUTS)
        _check_identities(args.run)
        # A compare killed halfway then leaves no report rather than half an old one.
        runfolder.remove_stale(args.run, (runfolder.REPORT_MD, runfolder.REPORT_HTML))
        paths = compare(args.run)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _check_identities(run: Path) -> None:
    """Device results, desktop outputs and the test split belong to one model and split."""
    import json

    from common import provenance

    if not (run / runfolder.CONVERT_REPORT_JSON).exists():
        return  # compare names the missing file itself
    digest = provenance.test_split_digest(run)
    record = provenance.check_convert(run, digest)
    device_path = run / runfolder.DEVICE_EVAL_JSON
    if device_path.is_file():
        try:
            device = json.loads(device_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{device_path} is unreadable ({exc}): regenerate it with "
                            f"`{provenance.EVALUATE_CMD}`") from None
        if not isinstance(device, dict):
            raise DataError(f"{device_path} does not hold a JSON object: regenerate it with "
                            f"`{provenance.EVALUATE_CMD}`")
        provenance.check_device_results(run, device, record["model_hash"], digest)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "ports":
        return _cmd_ports()
    if args.command == "virtual-board":
        return _cmd_virtual_board(args)
    if args.command == "emulate":
        return _cmd_emulate(args)
    if args.command == "info":
        return _cmd_info(args)
    if args.command == "evaluate":
        return _cmd_evaluate(args)
    if args.command == "profile":
        return _cmd_profile(args)
    return _cmd_compare(args)


def entry(argv: Sequence[str] | None = None) -> int:
    return run_cli(main, argv)
