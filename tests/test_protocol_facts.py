"""One protocol, stated twice and read four ways: the C++ lists in firmware/lib/core/protocol.h
(exported by the host library), common/protocol.py, the test oracle and docs/protocol.md must
agree on every message type, code, start-up status, dtype, flag, size and INFO offset; the
ctypes mirrors of the host library's structs must match the compiler's layout; the COBS size
formulas must match what the encoders produce; the vectors must exercise every code."""

from __future__ import annotations

import ctypes
import json
import re
from pathlib import Path
from typing import Any

import core_reference as oracle
import pytest
from core_harness import write_fake_generated

from common import protocol
from host_tools import hostlib
from host_tools.framing import cobs_encode, parse_frame
from host_tools.messages import ErrorReply, Info, Nack, Result, decode_reply

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


class _Constant(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_int64)]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    root = tmp_path_factory.mktemp("facts")
    lib = ctypes.CDLL(str(hostlib.build_library(write_fake_generated(root / "model"), root / "build")))
    lib.tm_protocol_constants.argtypes = [ctypes.POINTER(ctypes.c_uint32)]
    lib.tm_protocol_constants.restype = ctypes.POINTER(_Constant)
    lib.tm_encoded_frame_capacity.argtypes = [ctypes.c_uint32]
    lib.tm_encoded_frame_capacity.restype = ctypes.c_uint32
    return lib


@pytest.fixture(scope="module")
def firmware(library: ctypes.CDLL) -> dict[str, int]:
    count = ctypes.c_uint32(0)
    table = library.tm_protocol_constants(ctypes.byref(count))
    facts = {table[i].name.decode(): int(table[i].value) for i in range(count.value)}
    assert len(facts) == count.value, "a name appears twice in tm_protocol_constants"
    return facts


def _protocol_part(firmware: dict[str, int]) -> dict[str, int]:
    """The table without what only the device (window) or the host shim (structs) defines."""
    return {k: v for k, v in firmware.items() if k != "WINDOW" and not k.startswith(("sizeof(", "offsetof("))}


def test_firmware_and_python_state_the_same_protocol(firmware: dict[str, int]) -> None:
    cpp, python = _protocol_part(firmware), protocol.facts()
    assert sorted(set(cpp) - set(python)) == [], "in protocol.h only"
    assert sorted(set(python) - set(cpp)) == [], "in common/protocol.py only"
    assert {k: v for k, v in cpp.items() if python[k] != v} == {}


def test_the_oracle_reads_the_protocol_the_same_way(firmware: dict[str, int]) -> None:
    names = {"MsgType": ("HELLO", "INFO", "INFER", "RESULT", "NACK", "ERROR", "PROFILE", "PROFILE_RESULT"),
             "Code": ("BAD_CRC", "BAD_COBS", "TOO_SHORT", "BAD_LENGTH", "FRAME_TOO_LARGE", "BAD_VERSION",
                      "UNKNOWN_TYPE", "BAD_PAYLOAD", "NOT_READY", "INVOKE_FAILED"),
             "StartupStatus": ("READY", "SCHEMA_MISMATCH", "OP_REGISTRATION_FAILED",
                               "ALLOCATE_TENSORS_FAILED", "INPUT_MISMATCH", "OUTPUT_MISMATCH")}
    for group, members in names.items():
        listed = sorted(k.split(".", 1)[1] for k in firmware if k.startswith(group + "."))
        assert listed == sorted(members), f"the oracle does not know every {group}"
        for name in members:
            assert getattr(oracle, name) == firmware[f"{group}.{name}"], name
    assert firmware["Dtype.INT8"] == oracle.DTYPE_INT8
    assert firmware["ResultFlag.CYCLES_VALID"] == oracle.FLAG_CYCLES_VALID
    assert firmware["ResultFlag.REPLAYED"] == oracle.FLAG_REPLAYED
    assert firmware["ResultFlag.TRUNCATED"] == oracle.FLAG_TRUNCATED
    for name in ("SEQ_UNKNOWN", "WINDOW", "INFO_PAYLOAD_MAX", "ERROR_MESSAGE_MAX"):
        assert getattr(oracle, name) == firmware[name], name


def _doc_table(heading: str, columns: int) -> list[list[str]]:
    """Rows of the first table under ``heading`` (a line starting with it)."""
    text = DOC.read_text()
    start = next(m.end() for m in re.finditer(rf"^{re.escape(heading)}.*$", text, re.MULTILINE))
    lines = text[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first + 2:]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")][:columns])
    return rows


def test_the_document_states_the_same_protocol(firmware: dict[str, int]) -> None:
    types = {f"MsgType.{name}": int(value, 16) for value, name in _doc_table("## 2. Message types", 2)}
    codes = {f"Code.{name}": int(value) for value, name in _doc_table("## 5. Codes", 2)}
    statuses = {f"StartupStatus.{name}": int(value)
                for value, name in _doc_table("Start-up status codes", 2)}
    for table in (types, codes, statuses):
        group = next(iter(table)).split(".")[0]
        assert table == {k: v for k, v in firmware.items() if k.startswith(group + ".")}, group
    # INFO: the numbered rows give offset and size in wire order, up to the board name's length byte.
    rows = _doc_table("## 3. INFO payload", 2)
    doc_layout = [(int(o), int(n)) for o, n in rows if o.isdigit() and n.isdigit()]
    fields = sorted({k.rsplit(".", 2)[1] for k in firmware if k.startswith("InfoField.")},
                    key=lambda f: firmware[f"InfoField.{f}.offset"])
    cpp_layout = [(firmware[f"InfoField.{f}.offset"], firmware[f"InfoField.{f}.size"]) for f in fields]
    assert doc_layout == cpp_layout
    assert f"{firmware['Dtype.INT8']} = int8 (`INT8`)" in DOC.read_text()
    assert f"{firmware['INFO_PAYLOAD_MAX']}, the largest" in DOC.read_text()  # the max_payload rule
    assert f"`window` ({firmware['WINDOW']} in firmware" in DOC.read_text()


def _ctypes_layout(struct: type[ctypes.Structure], c_name: str) -> dict[str, int]:
    layout = {f"sizeof({c_name})": ctypes.sizeof(struct)}
    for name, *_ in struct._fields_:
        layout[f"offsetof({c_name}, {name})"] = getattr(struct, name).offset
    return layout


def test_the_ctypes_mirrors_match_the_c_structs(firmware: dict[str, int]) -> None:
    mirrors = ((hostlib._CTensorInfo, "tm_tensor_info"), (hostlib._CDeviceInfo, "tm_device_info"))
    for struct, c_name in mirrors:
        prefixes = (f"sizeof({c_name})", f"offsetof({c_name},")
        cpp = {k: v for k, v in firmware.items() if k.startswith(prefixes)}
        assert _ctypes_layout(struct, c_name) == cpp, c_name


def test_encoded_size_formulas_equal_the_worst_case_of_both_encoders(library: ctypes.CDLL) -> None:
    # Non-zero data is COBS's worst case (a zero's code byte takes its place); 254 * k bytes
    # are where "one per started block" and "one per block, plus one" differ.
    for raw in [*range(0, 600), *range(254, 65545, 254), 65544]:
        worst = len(cobs_encode(b"\x01" * raw)) + 1
        assert len(oracle.cobs_encode(b"\x01" * raw)) + 1 == worst, raw
        assert protocol.encoded_frame_size(raw) == worst, raw
        assert library.tm_encoded_frame_capacity(raw) == worst, raw


def _vector_replies() -> list[Any]:
    vectors = json.loads(oracle.VECTORS_PATH.read_text())
    replies = []
    for exchange in vectors["exchanges"]:
        for step in exchange["steps"]:
            for encoded in bytes.fromhex(step.get("expect", "")).split(b"\x00"):
                if encoded:
                    replies.append(decode_reply(parse_frame(encoded)))
    return replies


def test_the_vectors_cover_every_code_status_and_result_flag() -> None:
    replies = _vector_replies()
    codes = {r.code for r in replies if isinstance(r, Nack | ErrorReply)}
    assert sorted(protocol.Code) == sorted(codes)
    statuses = {r.startup_status for r in replies if isinstance(r, Info)}
    assert sorted(protocol.StartupStatus) == sorted(statuses)
    results = [r for r in replies if isinstance(r, Result)]
    seen = {(r.cycles is not None, r.replayed) for r in results}
    assert seen == {(False, False), (False, True), (True, False), (True, True)}
