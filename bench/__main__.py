"""`python -m bench`: run every benchmark module's run() and write bench/results/<module>.json."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common.atomic import write_json
from common.errors import ToolError, UsageError, run_cli

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def bench_modules() -> list[str]:
    """Modules of this package that define run() (found by name, imported one at a time)."""
    return sorted(m.name for m in pkgutil.iter_modules([str(BENCH_DIR)]) if not m.name.startswith("_"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    available = bench_modules()
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        raise UsageError(f"no benchmark named {', '.join(unknown)} (available: {', '.join(available)})")
    failed = []
    for name in args.names or available:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "run", None)
        if not callable(run):
            continue
        start = time.monotonic()
        try:
            result = run()
        except ToolError as exc:
            print(f"{name}: failed: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        path = RESULTS_DIR / f"{name}.json"
        write_json(path, result)
        print(f"{name}: {time.monotonic() - start:.1f} s -> {path.relative_to(BENCH_DIR.parent)}")
    if failed:
        raise ToolError(f"benchmark(s) failed: {', '.join(failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
