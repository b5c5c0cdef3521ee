"""The environment of a child ``python -m <package>`` process, in one place.

Stages start children (the arena probe, the virtual board) and the tests and benchmarks start
the stages. Each child must import this repository's packages whatever its working directory
and whether or not the project is installed, so the repository root goes first on PYTHONPATH.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def python_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the repository root first on
    PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env
