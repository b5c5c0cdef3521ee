"""Golden vectors: the committed JSON equals the Python reference, and the C++ core (host
library via ctypes) answers every exchange byte for byte as the vectors say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from core_harness import MockBoard, write_fake_generated
from core_reference import (
    VECTORS_PATH,
    Info,
    RefDevice,
    build_vectors,
    cobs_decode_stream,
    cobs_encode,
    crc32,
    raw_frame,
)

from host_tools.hostlib import HostCore


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return json.loads(VECTORS_PATH.read_text())


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> HostCore:
    root = tmp_path_factory.mktemp("hostlib")
    return HostCore.load(write_fake_generated(root / "model"), root / "build")


def test_committed_vectors_match_the_python_reference(vectors: dict[str, Any]) -> None:
    assert vectors == build_vectors(), "regenerate with: python tests/core_reference.py --write"


def test_reference_crc_and_cobs_agree_with_the_documented_values(vectors: dict[str, Any]) -> None:
    assert crc32(b"123456789") == 0xCBF43926  # the check value in docs/protocol.md
    sizes = {case["name"]: len(bytes.fromhex(case["encoded"])) for case in vectors["cobs"]}
    assert sizes["empty"] == 1
    assert sizes["254 non-zero"] == 255  # one overhead byte per started 254 bytes
    assert sizes["255 non-zero"] == 257
    assert sizes["508 non-zero"] == 510
    for case in vectors["cobs"]:
        raw, encoded = bytes.fromhex(case["raw"]), bytes.fromhex(case["encoded"])
        assert 0 not in encoded
        assert cobs_decode_stream(encoded, len(raw)) == ("frame", raw)


def test_reference_frame_sizes_match_the_documented_example() -> None:
    raw = raw_frame(3, 1, bytes(range(1, 255)) * 3 + bytes(range(1, 23)))  # 784 payload bytes
    assert len(raw) == 793
    assert len(cobs_encode(raw)) + 1 == 798


def test_cpp_crc32_matches_vectors(core: HostCore, vectors: dict[str, Any]) -> None:
    for case in vectors["crc32"]:
        assert core.crc32(bytes.fromhex(case["data"])) == int(case["crc"], 16)


def test_cpp_in_place_cobs_encoder_matches_vectors(core: HostCore, vectors: dict[str, Any]) -> None:
    for case in vectors["cobs"]:
        assert core.cobs_encode(bytes.fromhex(case["raw"])).hex() == case["encoded"], case["name"]


def exchange_ids(path: Path = VECTORS_PATH) -> list[str]:
    return [e["name"] for e in json.loads(path.read_text())["exchanges"]]


@pytest.mark.parametrize("name", exchange_ids())
def test_cpp_core_answers_each_exchange(core: HostCore, vectors: dict[str, Any], name: str) -> None:
    exchange = next(e for e in vectors["exchanges"] if e["name"] == name)
    board = MockBoard(core, Info.from_json(vectors["device_infos"][exchange["device_info"]]))
    for index, step in enumerate(exchange["steps"]):
        if step.get("reset"):
            core.reset()
            continue
        got = board.feed(bytes.fromhex(step["send"]))
        assert got.hex() == step["expect"], f"step {index}: {exchange['note']}"


def test_replay_does_not_run_the_engine_again(core: HostCore, vectors: dict[str, Any]) -> None:
    info = Info.from_json(vectors["device_infos"]["mnist_like"])
    board = MockBoard(core, info)
    reference = RefDevice(info)
    request = next(f for f in vectors["frames"] if f["type"] == 3)
    wire = bytes.fromhex(request["wire"])
    for _ in range(3):
        assert board.feed(wire) == reference.feed(wire)
    assert board.runs == reference.runs == 1


def test_max_payload_follows_the_input_size(core: HostCore, vectors: dict[str, Any]) -> None:
    for name, expected in (("mnist_like", 784), ("tiny", 166)):
        MockBoard(core, Info.from_json(vectors["device_infos"][name]))
        assert core.max_payload == expected
