"""model/console.py: one line and an exit status per error, --debug tracebacks, quiet TensorFlow imports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from model.console import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandParser,
    UsageError,
    add_standard_flags,
    describe,
    run_command,
)
from model.data.columns import DataError


def _raise(error: BaseException) -> int:
    raise error


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (DataError("log.csv: missing column 'timestamp'"), EXIT_FAILURE, "log.csv: missing column 'timestamp'"),
        (FileNotFoundError(2, "No such file or directory", "x.parquet"), EXIT_FAILURE, "x.parquet: No such file or "
         "directory"),
        (UsageError("--feature expects NAME=VALUE, got 'age'"), EXIT_USAGE, "--feature expects NAME=VALUE, got 'age'"),
    ],
)  # fmt: skip
def test_user_errors_end_in_one_line_and_their_status(
    error: BaseException, status: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command("prog", lambda: _raise(error), debug=False) == status
    assert capsys.readouterr().err == f"prog: error: {line}\n"


def test_debug_adds_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command("prog", lambda: _raise(DataError("bad column")), debug=True) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "model.data.columns.DataError: bad column" in err and err.endswith("prog: error: bad column\n")


def test_success_and_bugs_are_not_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_command("prog", lambda: EXIT_OK, debug=False) == EXIT_OK
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_command("prog", lambda: _raise(KeyError("x")), debug=False)
    assert capsys.readouterr().err == ""
    assert describe(ValueError("first\nsecond")) == "first"


def test_parser_errors_are_one_line_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    parser = CommandParser(prog="prog")
    add_standard_flags(parser)
    parser.add_argument("--color", choices=("red", "blue"))
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--color", "green"])
    assert exited.value.code == EXIT_USAGE
    assert capsys.readouterr().err == (
        "prog: error: argument --color: invalid choice: 'green' (choose from 'red', 'blue') (see prog --help)\n"
    )
    assert parser.parse_args(["--debug"]).debug is True
    with pytest.raises(SystemExit) as version:
        parser.parse_args(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.startswith("prog ")


def test_tensorflow_is_imported_without_its_native_start_up_lines() -> None:
    code = (
        "import sys; from model.console import import_tensorflow_quietly; import_tensorflow_quietly(); "
        "print('after', file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0
    assert done.stderr == "after\n"
