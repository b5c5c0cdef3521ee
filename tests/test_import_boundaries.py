"""Stages meet in the run folder only: no stage package imports another stage.

What several stages share lives in ``common``. The oracle is the source itself, parsed with
``ast`` (imports inside functions count too), so a lazy import cannot slip through.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("train", "convert", "host_tools")
def imported_modules(source: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def cross_stage_imports(root: Path) -> list[tuple[str, str]]:
    found = []
    for stage in STAGES:
        for path in sorted((root / stage).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for module in imported_modules(path.read_text(encoding="utf-8")):
                top = module.split(".")[0]
                if top in STAGES and top != stage:
                    found.append((rel, module))
    return found


def test_no_stage_imports_another_stage() -> None:
    offending = [f"{path} imports {module}" for path, module in cross_stage_imports(ROOT)]
    assert offending == []


def test_the_check_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    # The checker itself must catch each import form, or the test above could never fail.
    (tmp_path / "host_tools").mkdir()
    (tmp_path / "train").mkdir()
    (tmp_path / "convert").mkdir()
    (tmp_path / "host_tools" / "a.py").write_text(
        "import numpy\nfrom common import metrics\n\ndef f():\n    from train.metrics import x\n")
    (tmp_path / "convert" / "b.py").write_text("import host_tools.session as s\nfrom . import c\n")
    (tmp_path / "train" / "c.py").write_text("from train import fit\n")
    assert cross_stage_imports(tmp_path) == [("convert/b.py", "host_tools.session"),
                                              ("host_tools/a.py", "train.metrics")]
