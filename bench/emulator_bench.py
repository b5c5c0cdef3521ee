"""The emulated Cortex-M4 (QEMU mps2-an386): image build time and evaluation rate.

(a) image build time: the firmware and board-layer objects compiled and the image linked from
    scratch, with the TFLM library's objects taken from the cache (they do not depend on the
    model); the library's own compile time as recorded when it was built; and the time of a
    cached lookup (what every later `evaluate --port emulated` pays);
(b) `evaluate --port emulated` on the dnn's test split: samples per second of the whole
    command (journal, JSON and all), QEMU start-up excluded (acceptance: at least 200/s);
    and the instructions per Invoke() the board reports.

Run: ``python -m bench.emulator_bench [--run DIR]``; writes bench/results/emulator_bench.json.
Without --run it uses the cached small dnn of bench/evaluate_bench.py.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import runfolder
from common.atomic import write_json
from common.errors import run_cli

REPO = Path(__file__).resolve().parent.parent
RESULT_PATH = REPO / "bench" / "results" / "emulator_bench.json"
ACCEPT_SAMPLES_PER_S = 200.0


def image_build_times(generated: Path) -> dict[str, Any]:
    from common import cross_build, emulated_image

    library = cross_build.library_objects()  # cached after the first build
    cached_root = cross_build.BUILD_ROOT
    with tempfile.TemporaryDirectory(dir=cached_root.parent) as tmp:
        fresh = Path(tmp)
        shutil.copytree(library.directory, fresh / library.directory.name)
        cross_build.BUILD_ROOT = fresh
        try:
            start = time.perf_counter()
            image = emulated_image.build_image(generated)
            cold = time.perf_counter() - start
        finally:
            cross_build.BUILD_ROOT = cached_root
    emulated_image.build_image(generated)  # make sure the real cache has it
    start = time.perf_counter()
    cached = emulated_image.build_image(generated)
    warm = time.perf_counter() - start
    return {
        "library_files": len(library.objects),
        "library_compile_s_when_built": library.build_s,
        "compile_jobs": cross_build.JOBS,
        "firmware_and_link_s": round(cold, 2),
        "cached_lookup_s": round(warm, 3),
        "image_flash_bytes": image.sizes.flash,
        "image_static_ram_bytes": image.sizes.ram,
        "image": str(cached.elf.relative_to(REPO)),
    }


def evaluation_rate(run: Path) -> dict[str, Any]:
    from host_tools.cli import EMULATED_WINDOW
    from host_tools.emulator import emulated_board, generated_dir_for
    from host_tools.evaluate import evaluate
    from host_tools.link import SerialLink

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        for item in run.iterdir():
            if item.is_file():
                (copy / item.name).write_bytes(item.read_bytes())
        generated = generated_dir_for(run, None)
        with emulated_board(generated) as port, SerialLink(port) as link:
            outcome = evaluate(copy, link, port, False, window=EMULATED_WINDOW, restart=True, progress=False,
                               log=lambda _s: None)
    summary = outcome.summary
    return {
        "samples": outcome.samples,
        "wall_time_s": outcome.wall_time_s,
        "samples_per_s": round(outcome.samples / outcome.wall_time_s, 1),
        "instructions_per_invoke": summary.get("cycles"),
        "retransmissions": summary.get("retransmissions"),
        "window": EMULATED_WINDOW,
        "accept_samples_per_s_at_least": ACCEPT_SAMPLES_PER_S,
    }


def run(run_dir: Path | None = None) -> dict[str, Any]:
    from bench.evaluate_bench import prepare_run
    from common.quant import model_hash

    run_path = prepare_run(run_dir)
    generated = run_path / runfolder.GENERATED_DIR
    build = image_build_times(generated)
    rate = evaluation_rate(run_path)
    return {
        "model_hash": model_hash((run_path / runfolder.MODEL_TFLITE).read_bytes()),
        "a_image_build": build,
        "b_evaluate_emulated": rate,
        "accepted": {"b": rate["samples_per_s"] >= ACCEPT_SAMPLES_PER_S},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, metavar="DIR",
                        help="run folder to measure (default: a cached dnn)")
    args = parser.parse_args(argv)
    result = run(args.run)
    write_json(RESULT_PATH, result)
    a, b = result["a_image_build"], result["b_evaluate_emulated"]
    built = a["library_compile_s_when_built"]
    library = f"compiled once in {built} s" if built is not None else "cached, build time not recorded"
    print(f"(a) image: firmware + link {a['firmware_and_link_s']} s (library {library}), "
          f"cached {a['cached_lookup_s']} s")
    print(f"(b) evaluate --port emulated: {b['samples_per_s']} samples/s on {b['samples']} samples")
    print(f"wrote {RESULT_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
