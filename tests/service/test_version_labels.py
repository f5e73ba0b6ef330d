"""The labels file: parsing with clear refusals, re-reading on change, keeping the last good labels."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from service.version_labels import LabelsFile, parse_labels


def _write(path: Path, text: str) -> None:
    """Writes atomically, as operators should: a temporary file in the same directory, then a rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_parse_labels_maps_labels_to_versions() -> None:
    assert parse_labels('{"stable": 3, "canary": 4}') == {"stable": 3, "canary": 4}
    assert parse_labels("{}") == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{stable: 3}", "not JSON"),
        ("[3]", "expected an object"),
        ('{"stable": "3"}', "label 'stable': version must be an integer >= 1, got '3'"),
        ('{"stable": 0}', "got 0"),
        ('{"stable": true}', "got True"),
        ('{"": 3}', "label '' must match"),
        ('{"a b": 3}', "label 'a b' must match"),
    ],
)
def test_parse_labels_refuses_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_labels(text)
    assert problem in str(error.value)


def test_a_broken_file_keeps_the_previous_labels_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "labels.json"
    labels = LabelsFile(path)
    assert labels.read() == {}
    _write(path, json.dumps({"stable": 1}))
    assert labels.read() == {"stable": 1}
    with caplog.at_level("ERROR", logger="service.version_labels"):
        _write(path, '{"stable": 2,')
        assert labels.read() == {"stable": 1}
        assert labels.read() == {"stable": 1}
    (error,) = [r.getMessage() for r in caplog.records]
    assert str(path) in error and "not JSON" in error and "keeping {'stable': 1}" in error
    _write(path, json.dumps({"stable": 2, "canary": 3}))
    assert labels.read() == {"stable": 2, "canary": 3}
    path.unlink()
    assert labels.read() == {}
