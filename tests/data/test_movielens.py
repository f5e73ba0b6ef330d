"""Tests for model.data.movielens on the MovieLens-100K copy shipped in the recbole wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.data import (
    ColumnKind,
    DataError,
    MovieLensData,
    load_movielens_100k,
    movielens_100k_dir,
    read_atomic_file,
)
from model.data.movielens import age_buckets, decades


@pytest.fixture(scope="module")
def movielens() -> MovieLensData:
    return load_movielens_100k()


def test_directory_holds_the_atomic_files() -> None:
    directory = movielens_100k_dir()
    assert {"ml-100k.inter", "ml-100k.user", "ml-100k.item"} <= {path.name for path in directory.iterdir()}


def test_counts(movielens: MovieLensData) -> None:
    log = movielens.interactions
    assert len(log) == 100_000
    assert len(np.unique(log.user_ids)) == 943 and len(np.unique(log.item_ids)) == 1682
    assert len(movielens.users) == 943 and len(movielens.items) == 1682
    assert set(log.user_ids) == set(movielens.users.ids) and set(log.item_ids) == set(movielens.items.ids)


def test_known_interaction(movielens: MovieLensData) -> None:
    log = movielens.interactions
    assert (log.user_ids[0], log.item_ids[0], log.weights[0], log.timestamps[0]) == (
        "196",
        "242",
        3.0,
        881250949.0,
    )
    assert set(np.unique(log.weights).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_user_features(movielens: MovieLensData) -> None:
    users = movielens.users
    assert users.kinds == {
        "age": ColumnKind.NUMERIC,
        "age_bucket": ColumnKind.CATEGORICAL,
        "gender": ColumnKind.CATEGORICAL,
        "occupation": ColumnKind.CATEGORICAL,
        "zip_prefix": ColumnKind.CATEGORICAL,
    }
    row = users.lookup(["1", "74"])  # 1: 24 M technician 85711; 74: 39 M scientist T8H1N
    assert row["age"].tolist() == [24.0, 39.0]
    assert row["age_bucket"].tolist() == ["18-24", "35-44"]
    assert row["gender"].tolist() == ["M", "M"]
    assert row["occupation"].tolist() == ["technician", "scientist"]
    assert row["zip_prefix"].tolist() == ["8", "T"]
    assert users.vocabulary("gender") == ("F", "M")
    assert len(users.vocabulary("occupation")) == 21


def test_item_features(movielens: MovieLensData) -> None:
    items = movielens.items
    row = items.lookup(["1", "267", "1412"])
    assert row["movie_title"][0] == "Toy Story"
    assert row["genres"].tolist()[0] == ("Animation", "Children's", "Comedy")
    assert row["release_year"][0] == 1995.0 and row["decade"][0] == "1990s"
    # Item 267 has release year "unkonwn" and item 1412 has "V" in the file: both read as missing.
    assert np.isnan(row["release_year"][1:]).all() and row["decade"][1:].tolist() == ["", ""]
    assert items.kinds["genres"] is ColumnKind.MULTI_CATEGORICAL
    assert len(items.vocabulary("genres")) == 19  # 18 genres plus "unknown"
    assert items.vocabulary("decade")[0] == "1920s"


def test_read_atomic_file_types_fields(tmp_path: Path) -> None:
    path = tmp_path / "toy.item"
    path.write_text('id:token\tscore:float\ttags:token_seq\tvec:float_seq\n007\t1.5\ta "b\t1 2\n008\t\t\t\n')

    atomic = read_atomic_file(path)

    assert atomic.field_types == {"id": "token", "score": "float", "tags": "token_seq", "vec": "float_seq"}
    assert atomic.columns["id"].tolist() == ["007", "008"]
    np.testing.assert_array_equal(atomic.columns["score"], [1.5, np.nan])
    assert atomic.columns["tags"].tolist() == [("a", '"b'), ()]
    assert atomic.columns["vec"].tolist() == [(1.0, 2.0), ()]


@pytest.mark.parametrize(
    ("header", "expected"),
    [("id:token\tscore:double", "'score'"), ("id:token\tscore", "'score'"), ("", "empty")],
)
def test_read_atomic_file_header_errors(tmp_path: Path, header: str, expected: str) -> None:
    path = tmp_path / "bad.inter"
    path.write_text(header + "\n1\t2\n" if header else "")
    with pytest.raises(DataError, match=r"bad\.inter") as info:
        read_atomic_file(path)
    assert expected in str(info.value)


def test_age_buckets_and_decades() -> None:
    ages = np.asarray([7, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73, np.nan])
    assert age_buckets(ages).tolist() == [
        "under18",
        "under18",
        "18-24",
        "18-24",
        "25-34",
        "25-34",
        "35-44",
        "35-44",
        "45-49",
        "45-49",
        "50-55",
        "50-55",
        "56+",
        "56+",
        "",
    ]
    assert decades(np.asarray([1922.0, 1990.0, 1999.0, np.nan])).tolist() == ["1920s", "1990s", "1990s", ""]
