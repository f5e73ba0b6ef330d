"""Tests for model.data.loaders and the records in model.data.tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.data import (
    ColumnKind,
    DataError,
    FeatureTable,
    InteractionLog,
    load_feature_table,
    load_interactions,
)
from model.data.tables import object_array


def _synthetic_rows(seed: int = 7, n: int = 50) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    return {
        "user_id": [f"{u:03d}" for u in rng.integers(0, 20, n)],
        "item_id": [f"{i:04d}" for i in rng.integers(0, 100, n)],
        "timestamp": [str(t) for t in rng.integers(1_000_000, 2_000_000, n)],
        "rating": [f"{r:.1f}" for r in rng.uniform(1, 5, n)],
    }


def _write_delimited(path: Path, rows: dict[str, list[str]], delimiter: str) -> None:
    lines = [delimiter.join(rows)]
    lines += [delimiter.join(values) for values in zip(*rows.values(), strict=True)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(("name", "delimiter"), [("log.csv", ","), ("log.tsv", "\t")])
def test_load_delimited_keeps_leading_zeros_and_values(tmp_path: Path, name: str, delimiter: str) -> None:
    rows = _synthetic_rows()
    path = tmp_path / name
    _write_delimited(path, rows, delimiter)

    log = load_interactions(path, weight_col="rating")

    assert len(log) == 50
    assert log.user_ids.tolist() == rows["user_id"]
    assert log.item_ids.tolist() == rows["item_id"]
    assert any(user.startswith("0") for user in log.user_ids)
    np.testing.assert_array_equal(log.timestamps, np.asarray(rows["timestamp"], dtype=np.float64))
    np.testing.assert_allclose(log.weights, np.asarray(rows["rating"], dtype=np.float32))
    assert log.timestamps.dtype == np.float64 and log.weights.dtype == np.float32
    assert log.source == str(path)


def test_load_parquet_without_weight_gives_ones(tmp_path: Path) -> None:
    rows = _synthetic_rows(seed=3, n=20)
    path = tmp_path / "log.parquet"
    table = pa.table(
        {
            "uid": rows["user_id"],
            "iid": rows["item_id"],
            "ts": np.asarray(rows["timestamp"], dtype=np.int64),
            "extra": np.arange(20),
        }
    )
    pq.write_table(table, path)

    log = load_interactions(path, user_col="uid", item_col="iid", time_col="ts")

    assert log.user_ids.tolist() == rows["user_id"]
    np.testing.assert_array_equal(log.weights, np.ones(20, dtype=np.float32))
    np.testing.assert_array_equal(log.timestamps, np.asarray(rows["timestamp"], dtype=np.float64))


def test_parquet_timestamp_type_becomes_unix_seconds(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    times = pa.array([1_500_000_000_000, 1_500_000_001_500], type=pa.timestamp("ms"))
    pq.write_table(pa.table({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": times}), path)

    log = load_interactions(path)

    np.testing.assert_allclose(log.timestamps, [1_500_000_000.0, 1_500_000_001.5])


def test_explicit_delimiter_for_other_extensions(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("user_id|item_id|timestamp\n01|02|3\n")

    log = load_interactions(path, delimiter="|")

    assert (log.user_ids.tolist(), log.item_ids.tolist(), log.timestamps.tolist()) == (["01"], ["02"], [3.0])


def _assert_data_error(path: Path, column: str, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        load_interactions(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert path.name in message
    assert column in message
    return message


def test_missing_column_lists_columns_found(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item,timestamp\n1,2,3\n")
    message = _assert_data_error(path, "item_id")
    assert "'item'" in message


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _assert_data_error(empty, "timestamp")
    header_only = tmp_path / "header.tsv"
    header_only.write_text("user_id\titem_id\ttimestamp\n")
    assert "no rows" in _assert_data_error(header_only, "user_id")


def test_non_numeric_timestamp_quotes_the_value(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,100\n1,3,yesterday\n")
    message = _assert_data_error(path, "timestamp")
    assert "'yesterday'" in message and "row 2" in message


def test_non_numeric_weight(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp,rating\n1,2,100,high\n")
    assert "'high'" in _assert_data_error(path, "rating", weight_col="rating")


@pytest.mark.parametrize("column", ["user_id", "item_id"])
def test_null_id(tmp_path: Path, column: str) -> None:
    path = tmp_path / "log.csv"
    user, item = ("", "5") if column == "user_id" else ("4", "")
    path.write_text(f"user_id,item_id,timestamp\n1,2,100\n{user},{item},200\n")
    assert "row 2" in _assert_data_error(path, column)


def test_null_id_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"user_id": ["a", None], "item_id": ["x", "y"], "timestamp": [1, 2]}), path)
    _assert_data_error(path, "user_id")


def test_null_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,\n")
    _assert_data_error(path, "timestamp")


def test_strict_mode_rejects_unknown_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp,session\n1,2,3,s\n")
    assert len(load_interactions(path)) == 1
    _assert_data_error(path, "session", allow_extra_columns=False)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    path.write_text("{}")
    _assert_data_error(path, "user_id")


def test_load_feature_table_kinds_and_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "items.tsv"
    path.write_text("item_id\tcolor\tprice\ttags\tunused\n007\tred\t1.5\ta b\tz\n008\t\t\t\tz\n009\tblue\t3\tb  c\tz\n")

    table = load_feature_table(
        path, key="item_id", categorical=["color"], numeric=["price"], multi_categorical=["tags"]
    )

    assert table.ids.tolist() == ["007", "008", "009"]
    assert table.columns["color"].tolist() == ["red", "", "blue"]
    np.testing.assert_array_equal(table.columns["price"], np.asarray([1.5, np.nan, 3.0], dtype=np.float32))
    assert table.columns["tags"].tolist() == [("a", "b"), (), ("b", "c")]
    assert table.kinds == {
        "color": ColumnKind.CATEGORICAL,
        "price": ColumnKind.NUMERIC,
        "tags": ColumnKind.MULTI_CATEGORICAL,
    }


def test_load_feature_table_errors(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("user_id,age\n1,20\n1,30\n")
    with pytest.raises(DataError, match=r"users\.csv.*'user_id'.*duplicate"):
        load_feature_table(path, key="user_id", numeric=["age"])
    with pytest.raises(DataError, match=r"users\.csv.*'gender'"):
        load_feature_table(path, key="user_id", categorical=["gender"])
    with pytest.raises(DataError, match=r"users\.csv.*'age'"):
        load_feature_table(path, key="user_id", allow_extra_columns=False)


def _hand_made_table() -> FeatureTable:
    return FeatureTable(
        key="item_id",
        ids=np.asarray(["b", "a", "c"], dtype=object),
        columns={
            "color": np.asarray(["red", "", "blue"], dtype=object),
            "price": np.asarray([1.0, 2.0, 3.0]),
            "tags": object_array([("x", "y"), (), ("y", "z", "")], 3),
        },
        kinds={
            "color": ColumnKind.CATEGORICAL,
            "price": ColumnKind.NUMERIC,
            "tags": ColumnKind.MULTI_CATEGORICAL,
        },
    )


def test_feature_table_lookup_fills_missing_ids() -> None:
    rows = _hand_made_table().lookup(["c", "zzz", "b", "c"])

    assert rows["color"].tolist() == ["blue", "", "red", "blue"]
    np.testing.assert_array_equal(rows["price"], np.asarray([3.0, np.nan, 1.0, 3.0], dtype=np.float32))
    assert rows["tags"].tolist() == [("y", "z", ""), (), ("x", "y"), ("y", "z", "")]


def test_feature_table_lookup_on_empty_table_and_query() -> None:
    table = _hand_made_table()
    assert {name: len(values) for name, values in table.lookup([]).items()} == {
        "color": 0,
        "price": 0,
        "tags": 0,
    }
    empty = FeatureTable(
        "k", np.asarray([], dtype=object), {"c": np.asarray([], dtype=object)}, {"c": ColumnKind.CATEGORICAL}
    )
    assert empty.lookup(["x"])["c"].tolist() == [""]


def test_feature_table_vocabulary() -> None:
    table = _hand_made_table()
    assert table.vocabulary("color") == ("blue", "red")
    assert table.vocabulary("tags") == ("x", "y", "z")
    with pytest.raises(ValueError, match="price"):
        table.vocabulary("price")


def test_feature_table_rejects_duplicate_ids_and_ragged_columns() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        FeatureTable("k", np.asarray(["a", "a"]), {}, {})
    with pytest.raises(ValueError, match="'c' has 1 rows"):
        FeatureTable("k", np.asarray(["a", "b"]), {"c": np.asarray(["x"])}, {"c": ColumnKind.CATEGORICAL})


def test_interaction_log_take_and_coercion() -> None:
    log = InteractionLog(
        user_ids=np.asarray([1, 2, 3]),
        item_ids=np.asarray(["x", "y", "z"]),
        timestamps=np.asarray([3, 1, 2]),
        weights=np.asarray([1, 1, 2]),
    )

    subset = log.take(np.asarray([2, 0]))

    assert log.user_ids.tolist() == ["1", "2", "3"] and log.user_ids.dtype == object
    assert subset.user_ids.tolist() == ["3", "1"] and subset.item_ids.tolist() == ["z", "x"]
    assert subset.timestamps.tolist() == [2.0, 3.0] and subset.weights.tolist() == [2.0, 1.0]
    assert len(log.take([])) == 0
    with pytest.raises(ValueError, match="differ in length"):
        InteractionLog(np.asarray(["a"]), np.asarray(["b", "c"]), np.asarray([1.0]), np.asarray([1.0]))
