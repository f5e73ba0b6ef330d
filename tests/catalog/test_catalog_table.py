"""`read_item_table`: tower inputs from Parquet and CSV item tables, and one-line errors naming the column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.catalog_table import CatalogTableError, read_item_table
from tests.catalog.helpers import ITEM_SPEC, write_table


def test_list_and_space_separated_tokens_give_the_same_padded_inputs(tmp_path: Path) -> None:
    listed = tmp_path / "listed.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": ["a", "b", "c"],
                "genres": pa.array([["drama", "comedy", "horror"], [], None], pa.list_(pa.string())),
                "year": pa.array([1999.0, None, 2001.5]),
                "title": ["A", "B", "C"],
            }
        ),
        listed,
    )
    spaced = write_table(
        tmp_path / "spaced.csv",
        {"item_id": ["a", "b", "c"], "genres": ["drama comedy horror", "", ""], "year": ["1999", "", "2001.5"],
         "title": ["A", "B", "C"]},
    )  # fmt: skip
    tables = [read_item_table(path, ITEM_SPEC, {"title": pa.string()}) for path in (listed, spaced)]
    for table in tables:
        assert table.ids.tolist() == ["a", "b", "c"]
        np.testing.assert_array_equal(table.features["genres"], [["drama", "comedy"], ["", ""], ["", ""]])
        np.testing.assert_array_equal(table.features["item_id"], ["a", "b", "c"])
        np.testing.assert_array_equal(table.features["year"], np.array([1999.0, np.nan, 2001.5], np.float32))
        assert table.features["year"].dtype == np.float32
        assert table.extra.column("title").to_pylist() == ["A", "B", "C"]


def test_a_carried_column_that_does_not_cast_names_the_file_and_column(tmp_path: Path) -> None:
    path = write_table(
        tmp_path / "items.csv",
        {"item_id": ["a"], "genres": ["drama"], "year": ["1999"], "title": ["A"], "price": ["cheap"]},
    )
    with pytest.raises(CatalogTableError) as error:
        read_item_table(path, ITEM_SPEC, {"title": pa.string(), "price": pa.float64()})
    assert str(error.value).startswith(f"{path}: column 'price' is string and does not cast to double")
    assert "\n" not in str(error.value)
