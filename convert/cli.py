"""Command line of the convert stage: options, then a short human summary of what was produced."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from common import provenance, runfolder, runlock
from common.convert_report import ConvertReport
from common.errors import ModelError, UsageError
from common.limits import check_keras_file
from common.quiet import quiet_tensorflow
from convert import arena, measure
from convert.boards import BOARDS, board_by_name
from convert.pipeline import ConvertOptions, ConvertResult, convert

# Ten times the measured arena is already far beyond any board; larger values are typos.
MAX_MARGIN_PERCENT = 1000.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convert",
        description="Quantize the trained model to int8, verify it on LiteRT and TFLM, and generate "
                    "the firmware's model files.")
    runfolder.add_run_argument(parser)
    parser.add_argument("--from-tflite", type=Path, metavar="FILE",
                        help="use this int8 .tflite instead of converting the run folder's model.keras")
    parser.add_argument("--firmware-dir", type=Path, default=None, metavar="DIR",
                        help="where the generated model files go (default: the run folder's "
                             f"{runfolder.GENERATED_DIR}/; `python -m convert.install` puts them into "
                             "the firmware)")
    parser.add_argument("--calibration-size", type=int, default=500, metavar="N",
                        help="calibration images drawn from calibration_set.npz (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the calibration draw (default: %(default)s)")
    parser.add_argument("--arena-margin", type=float, default=arena.DEFAULT_MARGIN_PERCENT, metavar="PCT",
                        help="arena margin in percent over the measured size, at least "
                             f"{arena.MIN_MARGIN_BYTES} bytes (default: %(default)s)")
    parser.add_argument("--board", choices=sorted(BOARDS), default="nano33ble",
                        help="target board, for the memory budget (default: %(default)s)")
    parser.add_argument("--measure", action="store_true",
                        help="also run the generated model once on the emulated Cortex-M4 (QEMU) and print "
                             "its instructions per layer next to the estimate (needs qemu-system-arm, "
                             "arm-none-eabi-g++ and the board's sources; exit 6 without them)")
    return parser


def _pct(value: float | None) -> str:
    return "not measured" if value is None else f"{100 * value:.2f}%"


def _by_folder(paths: list[Path]) -> dict[Path, list[Path]]:
    folders: dict[Path, list[Path]] = {}
    for path in paths:
        folders.setdefault(path.parent, []).append(path)
    return folders


def _agreement_line(r: ConvertReport) -> str:
    agree, builtin = r["agreement_tflm_vs_litert"], r["agreement_tflm_vs_litert_builtin"]
    if agree is None or builtin is None:
        return "agreement  TFLM vs LiteRT: not available (LiteRT cannot run the model, see the warning)"
    return (f"agreement  TFLM vs LiteRT on {r['verified_samples']} samples: "
            + (f"top-1 {100 * agree['top1_agreement']:.2f}%, " if r.get("classifier", True) else "") +
            f"identical {100 * agree['identical_share']:.2f}%, max diff {agree['max_abs_diff_lsb']} LSB "
            f"(identical {100 * builtin['identical_share']:.2f}% with LiteRT's builtin kernels)")


def summary(result: ConvertResult) -> list[str]:
    r = result.report
    acc, lat, budget = r["accuracy"], r["latency_estimate"], r["budget"]
    lines = [
        f"model      {r['model_bytes']:,} bytes (hash {r['model_hash']}), "
        f"flash left {budget['flash_left']:,}",
        f"arena      {r['arena_bytes']:,} bytes (measured {r['arena_measured_bytes']:,}), "
        f"RAM left {budget['ram_left']:,}",
        f"ops        {', '.join(r['ops'])} ({r['operator_count']} nodes), "
        f"{r['total_params']:,} params, {r['total_macs']:,} MACs",
        f"accuracy   float {_pct(acc['float'])}, LiteRT int8 {_pct(acc['litert_int8'])}, "
        f"TFLM {_pct(acc['tflm'])}" + (f" ({r['accuracy_note']})" if r["accuracy_note"] else ""),
        _agreement_line(r),
        f"TFLM       {r['tflm_engine']}" + (
            f"; {r['tflm_crosscheck']['engine']} identical on {r['tflm_crosscheck']['identical']:,} of "
            f"{r['tflm_crosscheck']['samples']:,}" if r.get("tflm_crosscheck") else ""),
        f"latency    estimate on {budget['board']}: {lat['instructions']:,} instructions, "
        f"{lat['lower_bound_us']:,} us at {lat['clock_hz'] / 1e6:g} MHz with 1 cycle each (a lower bound; "
        "flash wait states add to it)" + (f"; no fitted data for {', '.join(lat['fallback_ops'])} (fallback)"
                                         if lat["fallback_ops"] else ""),
    ]
    lines += ["", f"{'#':>3} {'op':<18} {'output':<16} {'params':>8} {'MACs':>10} {'est. instr.':>12} "
                  f"{'est. us':>9}"]
    clock = lat["clock_hz"]
    for row in r["layers"]:
        shape = "x".join(str(d) for d in row["output_shape"])
        fallback = "" if row["estimate_basis"] == "fit" else "  (fallback: no fitted data)"
        est = row["est_instructions"]
        lines.append(f"{row['index']:>3} {row['op']:<18} {shape:<16} {row['params']:>8,} {row['macs']:>10,} "
                     f"{est:>12,} {est / clock * 1e6:>9,.1f}{fallback}")
    if "measured" in r:
        lines += ["", *measure.table(r["measured"])]
    lines.append("")
    lines += [f"wrote      {', '.join(sorted(p.name for p in paths))} to {folder}"
              for folder, paths in _by_folder(result.written).items()]
    seconds = r["quantize_time_s"]
    conversion = f" (int8 conversion {seconds:.1f} s)" if seconds is not None else ""
    if result.removed:
        lines.append(f"removed    {', '.join(result.removed)} (made from the previous model)")
    lines.append(f"took       {r['wall_time_s']:.1f} s{conversion}")
    lines += [f"warning: {w}" for w in r["warnings"]]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.firmware_dir is None:
        args.firmware_dir = args.run / runfolder.GENERATED_DIR
    if args.calibration_size < 1:
        raise UsageError(f"--calibration-size must be at least 1, got {args.calibration_size}")
    if not 0 <= args.arena_margin <= MAX_MARGIN_PERCENT:  # also refuses nan and inf
        raise UsageError(f"--arena-margin must be a percentage >= 0 and <= {MAX_MARGIN_PERCENT:g}, "
                         f"got {args.arena_margin}")
    if args.seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {args.seed}")
    for option, folder in (("--run", args.run), ("--firmware-dir", args.firmware_dir)):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{option} {folder} is a file, not a folder")
    if args.from_tflite is None:
        runfolder.require(args.run, runfolder.MODEL_KERAS, "python -m train")
    elif not args.from_tflite.is_file():
        raise ModelError(f"{args.from_tflite} not found")
    if args.measure:  # before any work: exit 6 at once without the emulator's tools
        measure.check_available()
    # One writer per run folder; unwritable folders and train's interrupted or mixed outputs
    # are refused here, before TensorFlow loads.
    with runlock.hold(args.run, "python -m convert", create=True):
        runfolder.refuse_directories(args.run, runfolder.CONVERT_OUTPUTS)
        runlock.check_writable(args.firmware_dir)
        if args.from_tflite is None:
            provenance.check_train(args.run)
            check_keras_file(args.run / runfolder.MODEL_KERAS)
        result = _convert(args)
    print("\n".join(summary(result)))
    return 0


def _convert(args: argparse.Namespace) -> ConvertResult:
    quiet_tensorflow()
    opts = ConvertOptions(run=args.run, firmware_dir=args.firmware_dir, board=board_by_name(args.board),
                          from_tflite=args.from_tflite, calibration_size=args.calibration_size,
                          seed=args.seed, arena_margin_percent=args.arena_margin, measure=args.measure)
    return convert(opts)
