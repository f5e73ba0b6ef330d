"""The item columns a training run exports as filterable attributes (`export.filterable`), and their values.

Each entry of `export.filterable` is `COLUMN` or `NAME=COLUMN`: the item-table column `COLUMN` becomes the
bundle attribute `NAME` (default: the column's own name), which requests then filter on (e.g. `genre=Comedy`).
The attribute's kind is the column's kind in the item table (`ColumnKind`: categorical, multi-valued
categorical or numeric), so it follows `data.item_categorical`, `data.item_multi_categorical` and
`data.item_numeric` (or the loader's own kinds for MovieLens-100K and the synthetic data); it is never given
twice. An empty setting means the source's default: `MOVIELENS_FILTERABLE` for MovieLens-100K, none otherwise;
`none` exports no attribute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from model.bundle.attributes import AttributeColumn, AttributeKind
from model.data import FeatureTable

# MovieLens-100K's default: the `genres` column as the attribute `genre`, and the numeric `release_year`.
MOVIELENS_FILTERABLE = ("genre=genres", "release_year")
NO_ATTRIBUTES = "none"
SETTING = "export.filterable"


@dataclass(frozen=True)
class FilterableColumn:
    """One item-table column exported as a filterable attribute.

    Attributes:
        name: the attribute's name in the bundle (requests' namespace), e.g. "genre".
        column: the item-table column holding its values, e.g. "genres".
        kind: its kind, from the column's kind.
    """

    name: str
    column: str
    kind: AttributeKind


def parse_entries(entries: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(attribute name, column) of each `COLUMN` or `NAME=COLUMN` entry; () for `("none",)`.

    Raises:
        ValueError: naming the entry that is empty, has more than one `=`, repeats a name, or mixes `none` in.
    """
    if tuple(entries) == (NO_ATTRIBUTES,):
        return ()
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        name, sep, column = entry.partition("=")
        if not sep:
            column = name
        name, column = name.strip(), column.strip()
        if not name or not column or "=" in column or entry == NO_ATTRIBUTES:
            raise ValueError(
                f"config field {SETTING}: entry {entry!r} must be COLUMN or NAME=COLUMN "
                f"('{NO_ATTRIBUTES}' alone exports no attribute)"
            )
        if name in (taken for taken, _ in pairs):
            raise ValueError(f"config field {SETTING}: attribute {name!r} is named twice")
        pairs.append((name, column))
    return tuple(pairs)


def effective_entries(entries: Sequence[str], source: str) -> tuple[str, ...]:
    """The entries a run uses: the given ones, or the source's default when none are given."""
    if entries:
        return tuple(entries)
    return MOVIELENS_FILTERABLE if source == "movielens-100k" else ()


def resolve(entries: Sequence[str], items: FeatureTable | None) -> tuple[FilterableColumn, ...]:
    """The filterable columns of `entries`, checked against the item table before any training.

    Raises:
        ValueError: naming the column that the item table lacks (with the columns it has), or saying that
            there is no item table.
    """
    pairs = parse_entries(entries)
    if not pairs:
        return ()
    if items is None:
        columns = ", ".join(column for _, column in pairs)
        raise ValueError(f"{SETTING} names item column(s) {columns} but the run has no item table (data.item_features)")
    resolved = []
    for name, column in pairs:
        if column not in items.columns:
            raise ValueError(
                f"{SETTING}: item column {column!r} is not in the item table {items.source}; "
                f"its columns: {sorted(items.columns)}"
            )
        resolved.append(FilterableColumn(name, column, AttributeKind(items.kinds[column].value)))
    return tuple(resolved)


def attribute_columns(
    filterable: Sequence[FilterableColumn], items: FeatureTable | None, item_ids: np.ndarray
) -> dict[str, AttributeColumn]:
    """The attributes' values for `item_ids` [N] (the catalog order), by attribute name, for `export_bundle`.

    An item absent from the item table has no value (no token, no number).
    """
    if not filterable or items is None:
        return {}
    rows = items.lookup(item_ids)
    values: Mapping[str, np.ndarray] = {c.column: rows[c.column] for c in filterable}
    return {c.name: AttributeColumn(c.kind, values[c.column]) for c in filterable}
