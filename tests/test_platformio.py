"""platformio.ini must parse offline and point PlatformIO at the firmware tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common import runfolder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config() -> dict[str, dict[str, object]]:
    pio = Path(sys.executable).with_name("pio")
    proc = subprocess.run([str(pio), "project", "config", "--json-output"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return {section: dict(items) for section, items in json.loads(proc.stdout)}


def test_platformio_dirs_point_into_firmware(config: dict[str, dict[str, object]]) -> None:
    section = config["platformio"]
    for key, sub in [("src_dir", "src"), ("lib_dir", "lib"), ("include_dir", "include"),
                     ("test_dir", "test")]:
        path = Path(str(section[key]))
        assert path == ROOT / "firmware" / sub
        assert path.is_dir(), f"{key} -> {path} does not exist"


def test_nano33ble_environment(config: dict[str, dict[str, object]]) -> None:
    env = config["env:nano33ble"]
    assert str(env["platform"]).startswith("nordicnrf52@")  # pinned
    assert env["board"] == "nano33ble"
    assert env["framework"] == ["arduino"]
    deps = env["lib_deps"]
    assert isinstance(deps, list) and len(deps) == 1
    # The TFLM library is pinned to a full commit, so a build is reproducible, and not to the
    # pull-request-only commit that `git reset --hard` cannot reach after a plain clone.
    assert "tflite-micro-arduino-examples.git#" in deps[0]
    commit = deps[0].rsplit("#", 1)[1]
    assert len(commit) == 40 and commit != "07d1cca59a20508b9ab1e69e0cc76a3ace815eaa"
    # The Mbed core's C++ standard stays: gnu++17 breaks Arduino.h with Mbed's <chrono>.
    flags = " ".join(env.get("build_flags", [])) + " " + " ".join(env.get("build_unflags", []))
    assert "gnu++17" not in flags and "gnu++14" not in flags


def test_sources_the_build_needs_exist() -> None:
    model = runfolder.FIRMWARE_MODEL_DIR
    for path in [Path("firmware/src/main.cpp"), Path("firmware/src/tflm_engine.cpp"),
                 model / "model_data.cpp", model / "model_settings.h", model / "model_op_resolver.h"]:
        assert (ROOT / path).is_file(), path
