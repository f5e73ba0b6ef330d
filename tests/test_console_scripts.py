"""Every console script as a user runs it: --help and --version at once, no TensorFlow start-up lines in the
first 20 lines of output, one line per user error with the documented exit status, plain progress lines."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = {
    "retrieval-train": "model.cli",
    "retrieval-serve": "service.cli",
    "retrieval-query": "service.query_cli",
    "retrieval-demo": "apps.demo",
    "retrieval-catalog": "model.catalog_cli",
    "retrieval-prepare": "model.prepare_cli",
}
# What TensorFlow, absl and Keras write when nobody quiets them.
NOISE = re.compile(r"oneDNN|cudart_stub|cpu_feature_guard|absl::InitializeLog|Sharding callback|^[IW]\d{4} |\x1b\[|\r")
ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the defaults, as a user has them
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


def _first_lines(done: subprocess.CompletedProcess[str], n: int = 20) -> list[str]:
    return (done.stdout + done.stderr).splitlines()[:n]


@pytest.mark.parametrize(("prog", "module"), SCRIPTS.items())
def test_help_and_version_answer_without_tensorflow(prog: str, module: str) -> None:
    done = _run(module, "--help")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith(f"usage: {prog} ")
    assert "Exit status: 0 on success, 1 for a runtime error" in " ".join(done.stdout.split())
    assert not [line for line in _first_lines(done) if NOISE.search(line)]
    version = _run(module, "--version")
    assert version.returncode == 0 and re.fullmatch(rf"{prog} \S+\n", version.stdout)
    imported = subprocess.run(  # --help is fast because nothing on the parser's path imports TensorFlow
        [sys.executable, "-c", f"import sys, {module}; print('tensorflow' in sys.modules)"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert imported.stdout == "False\n"


@pytest.mark.parametrize(("prog", "module"), SCRIPTS.items())
def test_a_bad_choice_is_one_line_and_exit_2(prog: str, module: str) -> None:
    flag = {
        "retrieval-train": "--model.tower",
        "retrieval-serve": "--log-level",
        "retrieval-query": "-k",
        "retrieval-catalog": "--batch-size",
        "retrieval-prepare": "--split",
    }.get(prog, "--port")
    args = ["--models-dir", "m"] if prog == "retrieval-serve" else []
    done = _run(module, *args, flag, "bogus")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"{prog}: error: argument {flag}") and "bogus" in line.lower()


def test_a_bad_query_filter_is_one_line_and_exit_2_before_any_call() -> None:
    done = _run("service.query_cli", "--target", "127.0.0.1:1", "--user", "u1", "--filter", "release_year>=new")
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("retrieval-query: error: --filter 'release_year>=new': >= needs a number, got 'new'")


@pytest.mark.slow
def test_train_with_a_missing_column_is_one_line_exit_1_and_leaves_no_run_dir(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("user_id,item_id\n1,2\n")
    args = ["--data.source", "files", "--data.interactions", "log.csv", "--output_dir", "run"]
    done = _run("model.cli", *args, cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert (
        done.stderr
        == "retrieval-train: error: log.csv: missing column(s) ['timestamp']; columns found: ['user_id', 'item_id']\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]
    debug = _run("model.cli", *args, "--debug", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "model.data.columns.DataError: log.csv: missing column(s)" in debug.stderr


@pytest.mark.slow
def test_train_prints_plain_lines_one_per_epoch_when_not_a_terminal(tmp_path: Path) -> None:
    args = ["--data.source", "synthetic", "--train.epochs", "2", "--train.patience", "0", "--output_dir", "run",
            "--export.models_dir", "models"]  # fmt: skip
    done = _run("model.cli", *args, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = _first_lines(done, 40)
    assert not [line for line in lines if NOISE.search(line)], lines
    epochs = [line for line in done.stderr.splitlines() if re.search(r"trainer: epoch \d+ loss=", line)]
    assert [re.search(r"epoch (\d+)", line).group(1) for line in epochs] == ["1", "2"]  # type: ignore[union-attr]
    assert "Epoch 1/2" not in done.stdout + done.stderr  # no Keras progress output besides
    assert (tmp_path / "models" / "retrieval" / "1" / "manifest.json").exists()


@pytest.mark.slow
def test_serve_warns_naming_a_missing_models_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    missing = tmp_path / "modles"
    command = [sys.executable, "-m", "service.cli", "--models-dir", str(missing), "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while not any("no model to serve yet" in line for line in lines):
            assert time.monotonic() < deadline, lines
            lines.append(process.stdout.readline())
        assert not [line for line in lines if NOISE.search(line)], lines
        assert any("retrieval-serve listening on 127.0.0.1:" in line for line in lines)
        assert f"dir={missing / 'retrieval'}" in lines[-1]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
