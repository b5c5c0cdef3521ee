"""One-line errors: the first line of any exception message, even an empty one."""

from __future__ import annotations

import pytest

from common.errors import DataError, first_line, run_cli


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("plain"), "plain"),
        (ValueError("\n  \n  second line  \nthird"), "second line"),
        (ValueError(""), "ValueError"),  # an empty message used to raise IndexError
        (OSError(), "OSError"),
        ("  \n", ""),
        ("text\nmore", "text"),
    ],
)
def test_first_line(exc: BaseException | str, expected: str) -> None:
    assert first_line(exc) == expected


def test_first_line_default_replaces_an_empty_message() -> None:
    assert first_line(RuntimeError(" "), default="-") == "-"
    assert first_line("", default="another process") == "another process"


def test_internal_error_with_an_empty_message_is_one_line(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINYML_DEBUG", raising=False)

    def main(_argv: object) -> int:
        raise KeyError()

    assert run_cli(main, []) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: internal error: KeyError")


def test_user_errors_keep_their_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    def main(_argv: object) -> int:
        raise DataError("test_set.npz not found")

    assert run_cli(main, []) == DataError.exit_code
    assert capsys.readouterr().err == "error: test_set.npz not found\n"
