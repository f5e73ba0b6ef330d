"""`export.filterable`: the setting's syntax, its check against the item table before training, its values."""

import math

import pytest

from model.bundle.attributes import AttributeKind, attribute_array
from model.cli import parse_args, resolve_config
from model.console import UsageError
from model.data import load_movielens_100k
from model.training.config import ExportConfig, build_config
from model.training.filterable import (
    MOVIELENS_FILTERABLE,
    FilterableColumn,
    attribute_columns,
    effective_entries,
    parse_entries,
    resolve,
)
from model.training.job import run


@pytest.fixture(scope="module")
def movielens_items():
    return load_movielens_100k().items


def test_entries_name_a_column_and_optionally_the_attribute():
    assert parse_entries(("genre=genres", "release_year")) == (("genre", "genres"), ("release_year", "release_year"))
    assert parse_entries(("none",)) == ()
    assert parse_entries(()) == ()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (("genre=",), "entry 'genre=' must be COLUMN or NAME=COLUMN"),
        (("a=b=c",), "entry 'a=b=c' must be COLUMN or NAME=COLUMN"),
        (("genre", "none"), "entry 'none' must be COLUMN or NAME=COLUMN"),
        (("genre=genres", "genre=decade"), "attribute 'genre' is named twice"),
    ],
)
def test_bad_entries_are_refused_when_the_config_is_built(entries, message):
    with pytest.raises(ValueError, match=f"config field export\\.filterable: {message}"):
        ExportConfig(filterable=entries)
    with pytest.raises(ValueError, match=message):
        build_config({"export": {"filterable": list(entries)}})


def test_the_flag_and_the_toml_list_give_the_same_setting(tmp_path):
    flagged = resolve_config(parse_args(["--export.filterable", "genre=genres,release_year"]))
    path = tmp_path / "run.toml"
    path.write_text('[export]\nfilterable = ["genre=genres", "release_year"]\n')
    from_file = resolve_config(parse_args(["--config", str(path)]))
    assert flagged.export.filterable == from_file.export.filterable == ("genre=genres", "release_year")
    with pytest.raises(UsageError, match="entry 'a=b=c'"):
        resolve_config(parse_args(["--export.filterable", "a=b=c"]))


def test_the_default_is_genre_and_release_year_for_movielens_only():
    assert ExportConfig().filterable == ()
    assert effective_entries((), "movielens-100k") == MOVIELENS_FILTERABLE == ("genre=genres", "release_year")
    assert effective_entries((), "synthetic") == ()
    assert effective_entries(("none",), "movielens-100k") == ("none",)
    assert effective_entries(("decade",), "movielens-100k") == ("decade",)


def test_kinds_come_from_the_item_table(movielens_items):
    resolved = resolve(("genre=genres", "release_year", "era=decade"), movielens_items)
    assert resolved == (
        FilterableColumn("genre", "genres", AttributeKind.MULTI_CATEGORICAL),
        FilterableColumn("release_year", "release_year", AttributeKind.NUMERIC),
        FilterableColumn("era", "decade", AttributeKind.CATEGORICAL),
    )
    assert resolve(("none",), movielens_items) == ()


def test_an_unknown_column_names_it_and_the_columns_there_are(movielens_items):
    with pytest.raises(ValueError, match=r"export.filterable: item column 'genre' is not in the item table .*ml-100k"):
        resolve(("genre",), movielens_items)
    with pytest.raises(ValueError, match="'decade', 'genres', 'movie_title', 'release_year'"):
        resolve(("colour=color",), movielens_items)
    with pytest.raises(ValueError, match=r"names item column\(s\) genres but the run has no item table"):
        resolve(("genres",), None)


def test_values_follow_the_catalog_order_and_missing_items_have_none(movielens_items):
    resolved = resolve(MOVIELENS_FILTERABLE, movielens_items)
    columns = attribute_columns(resolved, movielens_items, ["1", "267", "no-such-item"])
    genre = attribute_array(columns["genre"]).to_pylist()
    year = attribute_array(columns["release_year"]).to_pylist()
    assert genre == [["Animation", "Children's", "Comedy"], ["unknown"], []]  # item 1: Toy Story (1995)
    assert year[0] == 1995.0 and year[1] is None and year[2] is None  # item 267's year is "unkonwn"
    assert attribute_columns((), movielens_items, movielens_items.ids) == {}
    assert not any(isinstance(v, float) and math.isnan(v) for v in year)


def test_a_column_the_item_table_lacks_stops_the_run_before_training(tmp_path):
    config = build_config(
        {
            "data": {"source": "synthetic"},
            "export": {"filterable": ["colour"], "models_dir": str(tmp_path / "models")},
            "output_dir": str(tmp_path / "run"),
        }
    )
    with pytest.raises(ValueError, match=r"item column .colour. is not in the item table synthetic"):
        run(config)
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()
