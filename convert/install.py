"""`python -m convert.install --run DIR`: put a run's generated model files into the firmware.

convert writes a run's C++ model files into the run folder (``generated/``), so run folders
never share state. PlatformIO builds the firmware from one place in the repository; this
explicit step copies the chosen run's files there (``make flash RUN=DIR`` calls it), after
checking that they belong to that run's model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from common import runfolder
from common.atomic import write_bytes
from common.errors import DataError, run_cli
from common.quant import model_hash
from convert.codegen import GENERATED_FILES

REPO_ROOT = Path(__file__).resolve().parent.parent


def install(run: Path, dest: Path) -> list[Path]:
    generated = run / runfolder.GENERATED_DIR
    model = runfolder.require(run, runfolder.MODEL_TFLITE, "python -m convert")
    missing = [name for name in GENERATED_FILES if not (generated / name).is_file()]
    if missing:
        raise DataError(f"{generated} lacks {', '.join(missing)}: run `python -m convert --run {run}` first")
    # The settings header names the model hash it was generated for; a run folder whose model
    # changed after its files were generated must not reach the board.
    want = model_hash(model.read_bytes())
    if f'"{want}"' not in (generated / "model_settings.h").read_text(errors="replace"):
        raise DataError(f"{generated} was not generated from {model} (hash {want}): "
                        f"run `python -m convert --run {run}` again")
    report = run / runfolder.CONVERT_REPORT_JSON
    if report.is_file() and json.loads(report.read_text()).get("model_hash") not in (None, want):
        raise DataError(f"{report} belongs to another model: run `python -m convert --run {run}` again")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in GENERATED_FILES:
        write_bytes(dest / name, (generated / name).read_bytes())
        written.append(dest / name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.install", description=__doc__.splitlines()[0])
    runfolder.add_run_argument(parser)
    parser.add_argument("--dest", type=Path, default=REPO_ROOT / runfolder.FIRMWARE_MODEL_DIR, metavar="DIR",
                        help="firmware model folder PlatformIO builds from (default: the repository's)")
    args = parser.parse_args(argv)
    written = install(args.run, args.dest)
    print(f"installed {', '.join(p.name for p in written)} from {args.run / runfolder.GENERATED_DIR} "
          f"into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
