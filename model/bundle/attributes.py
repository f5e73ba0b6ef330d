"""Filterable item attributes of a bundle: the names and kinds `manifest.json` records, and their columns.

An attribute's values are a column of `items.parquet` (row i = FAISS id i) whose Arrow type follows its kind:
`string` for a categorical attribute (null: the item has no token), `list<string>` for a multi-valued one (null
or empty: no tokens) and `float64` for a numeric one (null or NaN: no value). Requests filter on them
(`retrieval.v1.ItemFilter`); the server builds its filter tables from these columns.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa


class AttributeKind(enum.Enum):
    """What kind of values an attribute holds; the manifest stores the value."""

    CATEGORICAL = "categorical"
    MULTI_CATEGORICAL = "multi_categorical"
    NUMERIC = "numeric"

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type of the attribute's items.parquet column."""
        return _ARROW_TYPES[self]

    def fits(self, arrow_type: pa.DataType) -> bool:
        """Whether a column of `arrow_type` holds this kind (a list's item field may have any name)."""
        if self is AttributeKind.MULTI_CATEGORICAL:
            return pa.types.is_list(arrow_type) and arrow_type.value_type == pa.string()
        return bool(arrow_type == self.arrow_type)


_ARROW_TYPES = {
    AttributeKind.CATEGORICAL: pa.string(),
    AttributeKind.MULTI_CATEGORICAL: pa.list_(pa.string()),
    AttributeKind.NUMERIC: pa.float64(),
}


@dataclass(frozen=True)
class FilterableAttribute:
    """One attribute requests may filter on.

    Attributes:
        name: the items.parquet column and the restricts' namespace, e.g. "genres".
        kind: its kind.
    """

    name: str
    kind: AttributeKind


@dataclass(frozen=True)
class AttributeColumn:
    """The values of one filterable attribute for export, row i = item i.

    Attributes:
        kind: the attribute's kind.
        values: [N] strings (None or "": no token), [N] lists of strings, or [N] numbers (NaN or None: no value).
    """

    kind: AttributeKind
    values: npt.ArrayLike | Iterable[Any]


def attribute_array(column: AttributeColumn) -> pa.Array:
    """`column.values` as an Arrow array of the kind's type ("" tokens and NaN numbers become nulls).

    Raises:
        ValueError: if a value does not fit the kind, naming the row.
    """
    raw: Any = column.values
    values = raw.tolist() if isinstance(raw, np.ndarray) else list(raw)
    if column.kind is AttributeKind.NUMERIC:
        out: list[Any] = []
        for row, value in enumerate(values):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                out.append(None)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out.append(float(value))
            else:
                raise ValueError(f"row {row}: a numeric attribute needs a number, got {value!r}")
        return pa.array(out, type=pa.float64())
    if column.kind is AttributeKind.CATEGORICAL:
        return pa.array([_token(row, value) for row, value in enumerate(values)], type=pa.string())
    lists = []
    for row, tokens in enumerate(values):
        if tokens is None or isinstance(tokens, str):
            raise ValueError(f"row {row}: a multi-valued attribute needs a list of strings, got {tokens!r}")
        lists.append([token for token in (_token(row, t) for t in tokens) if token is not None])
    return pa.array(lists, type=pa.list_(pa.string()))


def _token(row: int, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"row {row}: a categorical token must be a string, got {value!r}")
    return value
