"""Entry point: `python -m train`."""

import sys

from common.errors import run_cli
from train.cli import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
