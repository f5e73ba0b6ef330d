"""`retrieval-query --filter`: restricts from the command line, against a real server with attributes and labels."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model.bundle.attributes import AttributeColumn, AttributeKind
from model.bundle.reader import open_bundle
from service import query_cli
from service.filter_syntax import parse_checked_filter
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.versions import VersionPolicy
from tests.service.helpers import MODEL, NUM_ITEMS, ServerThread, export_test_bundle, item_id, server_config

GENRES = ("Comedy", "Drama", "Horror", "Sci-Fi")
KINDS = {"genre": pb.ATTRIBUTE_KIND_MULTI_CATEGORICAL, "release_year": pb.ATTRIBUTE_KIND_NUMERIC}


def _genres(row: int) -> list[str]:
    return [g for i, g in enumerate(GENRES) if (row >> i) & 1]


def _year(row: int) -> float | None:
    return None if row % 11 == 0 else float(1950 + row % 60)


def _passes(row: int) -> bool:
    """genre=Comedy AND release_year>=1990."""
    year = _year(row)
    return "Comedy" in _genres(row) and year is not None and year >= 1990


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/movies/{1,2}/ with the attributes `genre` and `release_year`; labels stable = 1, canary = 2."""
    root = tmp_path_factory.mktemp("models")
    rows = range(NUM_ITEMS)
    filterable = {
        "genre": AttributeColumn(AttributeKind.MULTI_CATEGORICAL, [_genres(r) for r in rows]),
        "release_year": AttributeColumn(AttributeKind.NUMERIC, [_year(r) for r in rows]),
    }
    for version in (1, 2):
        export_test_bundle(root, version=version, seed=version, filterable=filterable)
    (root / MODEL / "labels.json").write_text('{"stable": 1, "canary": 2}')
    return root


@pytest.fixture(scope="module")
def labelled_server(models_dir: Path) -> Iterator[ServerThread]:
    config = server_config(models_dir, versions=VersionPolicy(latest=2), reload_interval_s=3600.0)
    with ServerThread(config) as running:
        yield running


def test_the_issue_example_answers_from_the_canary_with_only_passing_items(
    labelled_server: ServerThread, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--target", labelled_server.target, "--filter", "genre=Comedy", "--filter", "release_year>=1990",
            "--similar-to", item_id(50), "--version-label", "canary", "--json"]  # fmt: skip
    assert query_cli.main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["model_version"] == "2" and answer["truncated"] is False
    got = [c["item_id"] for c in answer["candidates"]]

    bundle = open_bundle(models_dir / MODEL / "2")
    embeddings = bundle.load_item_embeddings()
    scores = embeddings @ embeddings[50]
    order = [r for r in np.argsort(-scores, kind="stable") if r != 50 and _passes(r)][:10]
    assert got == [item_id(r) for r in order]  # the exact filtered neighbours, every one passing
    assert sum(_passes(r) for r in range(NUM_ITEMS)) > 10  # the filter leaves more than k: no truncation


def test_a_user_query_with_filters_prints_only_passing_items(
    labelled_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--target", labelled_server.target, "--user", "u1", "-k", "5", "--filter", "genre=Comedy",
            "--filter", "genre=Horror", "--filter", "genre!=Drama", "--filter", "release_year<1980"]  # fmt: skip
    assert query_cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model {MODEL} version 1"  # stable
    rows = [int(line.split()[1].removeprefix("item")) for line in lines[1:]]
    assert len(rows) == 5
    for row in rows:  # Comedy OR Horror, AND NOT Drama, AND before 1980
        genres, year = set(_genres(row)), _year(row)
        assert genres & {"Comedy", "Horror"} and "Drama" not in genres and year is not None and year < 1980


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("genre>=x", "--filter 'genre>=x': >= needs a number, got 'x'"),
        ("genre", "--filter 'genre': expected NAME=TOKEN, NAME!=TOKEN or NAME<op>NUMBER"),
    ],
)
def test_a_bad_expression_is_a_usage_error_before_any_call(
    expression: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        query_cli.parse_args(["--target", "127.0.0.1:1", "--user", "u1", "--filter", expression])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"retrieval-query: error: {message}")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("colour=red", "--filter 'colour=red': the model has no attribute 'colour'; its attributes: "
                       "genre (multi-valued categorical), release_year (numeric)"),
        ("genre>=3", "--filter 'genre>=3': 'genre' is multi-valued categorical: write NAME=TOKEN or NAME!=TOKEN"),
        ("release_year=new", "--filter 'release_year=new': = needs a number, got 'new'"),
        ("release_year!=old", "--filter 'release_year!=old': != needs a number, got 'old'"),
    ],
)  # fmt: skip
def test_an_expression_that_does_not_fit_the_model_exits_2_naming_it(
    labelled_server: ServerThread, expression: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--target", labelled_server.target, "--similar-to", item_id(1), "--filter", expression]
    assert query_cli.main(argv) == 2
    assert capsys.readouterr().err == f"retrieval-query: error: {message}\n"


def test_restricts_are_anded_across_names_and_ored_within_allow_tokens() -> None:
    item_filter = parse_checked_filter(["genre=Comedy", "genre=Horror", "release_year>=1990"], KINDS)
    (categorical,) = item_filter.categorical
    assert (categorical.namespace, list(categorical.allow)) == ("genre", ["Comedy", "Horror"])
    (numeric,) = item_filter.numeric
    assert (numeric.namespace, numeric.op, numeric.value) == (
        "release_year",
        pb.NumericRestrict.OPERATOR_GREATER_EQUAL,
        1990.0,
    )
    assert query_cli.filter_from_flags([], KINDS) is None
    with pytest.raises(ValueError, match=re.escape("its attributes: none")):
        parse_checked_filter(["genre=Comedy"], {})
