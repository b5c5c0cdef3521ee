"""``python -m host_tools.emulated_profile DIR``: one PROFILE of the model whose generated files
are in DIR, on the emulated Cortex-M4, printed as one JSON object (``Profile.as_json``).

For ``python -m convert --measure``: a stage does not import another stage, so convert runs
this as a child process and reads its output. Failures are one line on stderr with the usual
exit codes (6: no qemu-system-arm, cross compiler or board sources).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from common.errors import DataError, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    from host_tools.profiling import profile_emulated

    parser = argparse.ArgumentParser(prog="python -m host_tools.emulated_profile", description=__doc__)
    parser.add_argument("generated", type=Path, metavar="DIR", help="a folder of generated model files")
    args = parser.parse_args(argv)
    if not (args.generated / "model_settings.h").is_file():
        raise DataError(f"{args.generated} holds no generated model files")
    print(json.dumps(profile_emulated(args.generated).as_json()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
