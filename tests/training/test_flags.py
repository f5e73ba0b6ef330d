"""model/training/flags.py: the retrieval-train flags carry docstrings and defaults, choices, booleans, numbers."""

from __future__ import annotations

import json
import logging

import pytest

from model.cli import main, parse_args, resolve_config
from model.console import UsageError
from model.training.config import DataConfig, ModelConfig, build_config, field_paths
from model.training.flags import field_docs


def test_field_docs_come_from_the_attributes_section() -> None:
    docs = field_docs(DataConfig)
    assert docs["split"] == '"leave-last-out" or "time".'
    assert docs["refit_on_validation"].startswith("move the validation interactions into training and train exactly")
    assert docs["refit_on_validation"].endswith("a prepared log made the other way is refused.")  # continuation joined
    assert set(docs) == set(DataConfig.__dataclass_fields__)


def test_every_flag_has_its_docstring_and_default_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for path in field_paths():
        assert f"--{path}" in text, path
    assert "--model.temperature FLOAT logits are divided by it" in text
    assert "(default: 0.1)" in text and "(default: 0.005)" in text
    assert "--model.tower {two-tower,sequential}" in text
    assert "--no-model.logq_correction" in text
    assert "continue the run in --output_dir" in text and "--output-dir" not in text


def test_choices_are_checked_when_parsing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--export.index", "annoy"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--export.index: invalid choice: 'annoy' (choose from 'flat', 'ivf', 'hnsw', 'ivfpq')" in err


def test_choices_from_a_toml_file_are_checked_before_any_work(tmp_path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[model]\ntower = "seq"\n')
    with pytest.raises(UsageError, match=r"run.toml: config field model.tower: 'seq' is not one of 'two-tower', "):
        resolve_config(parse_args(["--config", str(path)]))
    with pytest.raises(UsageError, match=r"--config .*missing.toml: No such file or directory"):
        resolve_config(parse_args(["--config", str(tmp_path / "missing.toml")]))
    with pytest.raises(ValueError, match=r"config field data\.split: 'random' is not one of"):
        build_config({"data": {"split": "random"}})


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], True),
        (["--model.logq_correction"], True),
        (["--no-model.logq_correction"], False),
        (["--model.logq_correction", "false"], False),
        (["--model.logq_correction", "yes"], True),
    ],
)
def test_booleans_are_flags_that_also_take_a_value(argv: list[str], expected: bool) -> None:
    assert resolve_config(parse_args(argv)).model.logq_correction is expected


def test_numbers_are_parsed_as_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    config = resolve_config(parse_args(["--train.epochs", "3", "--model.hidden_units", "64,32"]))
    assert config.train.epochs == 3 and config.model.hidden_units == (64, 32)
    with pytest.raises(SystemExit):
        parse_args(["--train.epochs", "three"])
    assert "argument --train.epochs: invalid int value: 'three'" in capsys.readouterr().err


def test_defaults_are_the_benchmarks_recipe() -> None:
    model = ModelConfig()
    config = build_config({})
    assert (model.temperature, config.train.learning_rate) == (0.1, 0.005)
    assert config.export.name == "retrieval"


def test_log_format_json_makes_every_log_line_one_json_object(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        assert main(["--log-format", "json", "--config", str(tmp_path / "missing.toml")]) == 2  # fails before TF
        logging.getLogger("model.training.job").info("epoch %d done", 3)
        line = capsys.readouterr().err.splitlines()[-1]
        record = json.loads(line)
        assert (record["level"], record["logger"], record["message"]) == ("INFO", "model.training.job", "epoch 3 done")
        assert {"time", "process", "request_id", "trace_id", "span_id"} <= record.keys()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    with pytest.raises(SystemExit) as usage:
        parse_args(["--log-format", "xml"])
    assert usage.value.code == 2 and "--log-format" in capsys.readouterr().err
