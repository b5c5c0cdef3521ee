"""The vectors and a fixed-seed random corpus through the vector runner built with
AddressSanitizer + UndefinedBehaviorSanitizer: identical answers, no sanitizer report."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from core_harness import runner_info_line, write_fake_generated
from core_reference import HELLO, INFER, MNIST_LIKE, TINY, VECTORS_PATH, Info, RefDevice, frame

from host_tools.hostlib import build_vector_runner

pytestmark = pytest.mark.slow  # the sanitizer build takes 10-30 s
CORPUS_SEED = 1125
CORPUS_SESSIONS = 120
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sanitizer")
    return build_vector_runner(write_fake_generated(root / "model"), root / "build", sanitize=True)


def run(runner: Path, script: list[str]) -> list[str]:
    proc = subprocess.run([str(runner)], input="\n".join(script) + "\n", capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr[-3000:]  # a sanitizer report, even a recovered one
    return proc.stdout.splitlines()


def expected_lines(session: list[bytes | None], reference: RefDevice) -> list[str]:
    lines = ["init 0"]
    for data in session:
        if data is None:
            reference.reset()
            lines.append("reset")
        else:
            lines.append(f"out {reference.feed(data).hex() or '-'}")
    return lines


def script_lines(info: Info, session: list[bytes | None]) -> list[str]:
    return [runner_info_line(info), *("reset" if d is None else f"feed {d.hex() or '-'}" for d in session)]


def test_vectors_under_sanitizers(runner: Path) -> None:
    vectors: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
    script, expected = [], []
    for case in vectors["crc32"]:
        script.append(f"crc {case['data'] or '-'}")
        expected.append(f"crc {case['crc']}")
    for case in vectors["cobs"]:
        script.append(f"cobs {case['raw'] or '-'}")
        expected.append(f"cobs {case['encoded']}")
    for exchange in vectors["exchanges"]:
        script.append(runner_info_line(Info.from_json(vectors["device_infos"][exchange["device_info"]])))
        expected.append("init 0")
        for step in exchange["steps"]:
            script.append("reset" if step.get("reset") else f"feed {step['send'] or '-'}")
            expected.append("reset" if step.get("reset") else f"out {step['expect'] or '-'}")
    assert run(runner, script) == expected


def random_session(rng: random.Random, info: Info) -> list[bytes | None]:
    """Valid frames, damaged frames, garbage, delimiters and resets, in random order."""
    session: list[bytes | None] = []
    for _ in range(rng.randrange(1, 12)):
        roll = rng.random()
        if roll < 0.05:
            session.append(None)
            continue
        if roll < 0.25:
            session.append(rng.randbytes(rng.randrange(0, 1500)))
            continue
        n = info.input.nbytes + (rng.choice([-1, 1]) if rng.random() < 0.1 else 0)
        wire = bytearray(frame(INFER, rng.randrange(12), rng.randbytes(n)) if rng.random() < 0.8
                         else frame(HELLO, rng.randrange(0x10000)))
        damage = rng.random()
        pos = rng.randrange(len(wire))
        if damage < 0.2:
            wire[pos] ^= 1 << rng.randrange(8)
        elif damage < 0.35:
            del wire[pos:]
        elif damage < 0.45:
            wire[pos:pos] = rng.randbytes(rng.randrange(1, 300))
        elif damage < 0.55:
            del wire[pos:pos + rng.randrange(1, 40)]
        session.append(bytes(wire))
    return session


def test_random_corpus_under_sanitizers(runner: Path) -> None:
    rng = random.Random(CORPUS_SEED)
    script: list[str] = []
    expected: list[str] = []
    for _ in range(CORPUS_SESSIONS):
        info = rng.choice([MNIST_LIKE, TINY])
        session = random_session(rng, info)
        script += script_lines(info, session)
        expected += expected_lines(session, RefDevice(info))
    assert run(runner, script) == expected
