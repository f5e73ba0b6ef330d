"""Reads a new item table (Parquet or CSV) against a bundle's item-tower schema, for a catalog refresh.

The table holds one row per item: the id column `ITEM_ID_COLUMN`, one column per item-tower feature (a
categorical feature as strings, a numeric one as numbers, a multi-valued one as space-separated tokens or a
Parquet list of strings) and the columns the parent version's `items.parquet` carries besides id and
popularity (display and filterable attribute columns; a multi-valued attribute as space-separated tokens or a
Parquet list of strings, as a multi-valued feature). Anything that does not fit raises `CatalogTableError`,
one line naming the file and the column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from model.bundle.reserved import ITEM_ID_COLUMN
from model.data.columns import DataError, to_float, to_ids, to_strings, to_token_tuples
from model.data.loaders import read_arrow_table
from model.data.tables import object_array
from model.features import Feature, NumericFeature, TowerSpec


class CatalogTableError(ValueError):
    """The item table does not match the bundle's item schema; the message names the file and the column."""


@dataclass(frozen=True, eq=False)
class ItemTable:
    """A validated item table; row i of every array is item `ids[i]`.

    Attributes:
        ids: [N] external item ids (object array of str), unique and non-empty.
        features: item-tower inputs by feature name: [N] str, [N, n] ""-padded str or [N] float32.
        extra: the carried-over `items.parquet` columns (display and filterable attributes), cast to the
            parent's column types.
    """

    ids: np.ndarray
    features: Mapping[str, np.ndarray]
    extra: pa.Table

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def read_item_table(path: str | Path, spec: TowerSpec, extra_columns: Mapping[str, pa.DataType]) -> ItemTable:
    """Reads and checks an item table.

    Args:
        path: `.parquet`, `.csv` or `.tsv` file.
        spec: the bundle's item-tower schema (`manifest.item_tower`).
        extra_columns: columns to carry into `items.parquet`, with the type each must cast to.

    Returns:
        The items, features ready for the item tower.

    Raises:
        CatalogTableError: unreadable file, missing column, null or duplicate id, value of the wrong type.
    """
    path = Path(path)
    names = [ITEM_ID_COLUMN, *(f.name for f in spec.features if f.name != ITEM_ID_COLUMN), *extra_columns]
    names = list(dict.fromkeys(names))
    try:
        table = read_arrow_table(path, names)
        ids = to_ids(table[ITEM_ID_COLUMN], path, ITEM_ID_COLUMN)
        features = {f.name: _feature(table, f, ids, path) for f in spec.features}
    except DataError as error:
        raise CatalogTableError(str(error)) from error
    unique, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        duplicated = unique[counts > 1]
        raise CatalogTableError(
            f"{path}: column '{ITEM_ID_COLUMN}' has {duplicated.size} duplicate ids, e.g. '{duplicated[0]}'"
        )
    extra = {name: _cast(table[name], kind, path, name) for name, kind in extra_columns.items()}
    return ItemTable(ids=ids, features=features, extra=pa.table(extra) if extra else pa.table({}))


def _feature(table: pa.Table, feature: Feature, ids: np.ndarray, path: Path) -> np.ndarray:
    if isinstance(feature, NumericFeature):
        return to_float(table[feature.name], path, feature.name, allow_null=True).astype(np.float32)
    if feature.name == ITEM_ID_COLUMN:
        return ids.astype(str)
    column = table[feature.name]
    if not feature.multi_valued:
        return to_strings(column, path, feature.name).astype(str)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        rows = column.to_pylist()
        if any(token is not None and not isinstance(token, str) for row in rows if row for token in row):
            raise DataError(f"{path}: column '{feature.name}' is {column.type}, expected a list of strings")
        tokens = object_array((tuple(t for t in (row or ()) if t) for row in rows), len(rows))
    else:
        tokens = to_token_tuples(column, path, feature.name)
    width = feature.max_values
    padded = np.full((len(tokens), width), "", dtype=object)
    for i, row in enumerate(tokens):
        padded[i, : min(width, len(row))] = row[:width]
    return padded.astype(str)


def _cast(column: pa.ChunkedArray, kind: pa.DataType, path: Path, name: str) -> pa.ChunkedArray:
    """The column as `kind`; a text column bound for a list of strings holds space-separated tokens."""
    if column.type == kind:
        return column
    if pa.types.is_list(kind) and pa.types.is_string(kind.value_type) and pa.types.is_string(column.type):
        try:
            tokens = to_token_tuples(column, path, name)
        except DataError as error:
            raise CatalogTableError(str(error)) from error
        return pa.chunked_array([pa.array([list(row) for row in tokens], type=kind)])
    try:
        return column.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        first = str(error).splitlines()[0]
        message = f"{path}: column '{name}' is {column.type} and does not cast to {kind}: {first}"
        raise CatalogTableError(message) from error
