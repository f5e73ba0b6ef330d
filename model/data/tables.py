"""In-memory records: an interaction log and a side-feature table keyed by external id."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


class ColumnKind(enum.Enum):
    """How the values of a side-feature column are stored.

    CATEGORICAL: object array of str ("" = missing).
    NUMERIC: float32 array (NaN = missing).
    MULTI_CATEGORICAL: object array of tuple[str, ...] (() = missing).
    """

    CATEGORICAL = "categorical"
    NUMERIC = "numeric"
    MULTI_CATEGORICAL = "multi_categorical"


def as_str_array(values: Iterable[object] | np.ndarray) -> np.ndarray:
    """Converts ids to a 1-D object array of Python str (a no-op for object arrays).

    Args:
        values: ids of any scalar type [n].

    Returns:
        Object array of str [n].
    """
    array = np.asarray(values if isinstance(values, np.ndarray) else list(values))
    if array.dtype == object:
        return array.reshape(-1)
    return array.astype(str).astype(object).reshape(-1)


def object_array(values: Iterable[object], count: int) -> np.ndarray:
    """Builds a 1-D object array whose elements are the given objects (tuples stay elements)."""
    return np.fromiter(values, dtype=object, count=count)


@dataclass(frozen=True, eq=False)
class InteractionLog:
    """(user, item, time, weight) events; row i of every array describes event i.

    Attributes:
        user_ids: external user ids, object array of str [n].
        item_ids: external item ids, object array of str [n].
        timestamps: event times, float64 (e.g. Unix seconds) [n].
        weights: event weights, float32 [n]; 1.0 where the source had no weight or rating.
        source: path or name of where the log came from, for messages.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray
    weights: np.ndarray
    source: str = "<memory>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_ids", as_str_array(self.user_ids))
        object.__setattr__(self, "item_ids", as_str_array(self.item_ids))
        object.__setattr__(self, "timestamps", np.asarray(self.timestamps, dtype=np.float64).reshape(-1))
        object.__setattr__(self, "weights", np.asarray(self.weights, dtype=np.float32).reshape(-1))
        lengths = {
            "user_ids": len(self.user_ids),
            "item_ids": len(self.item_ids),
            "timestamps": len(self.timestamps),
            "weights": len(self.weights),
        }
        if len(set(lengths.values())) != 1:
            raise ValueError(f"InteractionLog from {self.source}: arrays differ in length: {lengths}")

    def __len__(self) -> int:
        return int(self.user_ids.shape[0])

    def take(self, indices: np.ndarray | Iterable[int]) -> InteractionLog:
        """Returns the events at `indices`, in the order given.

        Args:
            indices: integer positions into this log [k].

        Returns:
            A new log with k events.
        """
        index = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
        if index.size == 0:
            index = index.astype(np.int64)
        if not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"take() needs integer indices, got dtype {index.dtype}")
        return InteractionLog(
            user_ids=self.user_ids[index],
            item_ids=self.item_ids[index],
            timestamps=self.timestamps[index],
            weights=self.weights[index],
            source=self.source,
        )


_MISSING = {ColumnKind.CATEGORICAL: "", ColumnKind.NUMERIC: np.nan, ColumnKind.MULTI_CATEGORICAL: ()}


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """Side features of users or items, one row per distinct external id.

    Attributes:
        key: name of the id column (e.g. "user_id").
        ids: distinct external ids, object array of str [n].
        columns: feature name -> values [n], stored as described by `ColumnKind`.
        kinds: feature name -> its `ColumnKind`; same keys as `columns`.
        source: path or name of where the table came from, for messages.
    """

    key: str
    ids: np.ndarray
    columns: dict[str, np.ndarray]
    kinds: dict[str, ColumnKind]
    source: str = "<memory>"
    _order: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = as_str_array(self.ids)
        object.__setattr__(self, "ids", ids)
        if set(self.columns) != set(self.kinds):
            raise ValueError(
                f"FeatureTable from {self.source}: columns {sorted(self.columns)} "
                f"and kinds {sorted(self.kinds)} name different features"
            )
        if self.key in self.columns:
            raise ValueError(f"FeatureTable from {self.source}: key '{self.key}' is also a feature column")
        columns = {name: _normalised(values, self.kinds[name]) for name, values in self.columns.items()}
        for name, values in columns.items():
            if len(values) != len(ids):
                raise ValueError(
                    f"FeatureTable from {self.source}: column '{name}' has {len(values)} rows, "
                    f"id column '{self.key}' has {len(ids)}"
                )
        object.__setattr__(self, "columns", columns)
        order = np.argsort(ids, kind="stable")
        duplicated = ids[order][1:][ids[order][1:] == ids[order][:-1]]
        if duplicated.size:
            raise ValueError(
                f"FeatureTable from {self.source}: column '{self.key}' has {duplicated.size} duplicate "
                f"ids, e.g. '{duplicated[0]}'"
            )
        object.__setattr__(self, "_order", order)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def lookup(self, ids: np.ndarray | Iterable[str]) -> dict[str, np.ndarray]:
        """Returns every feature column for the given external ids.

        Args:
            ids: external ids to look up [k]; ids absent from the table are allowed.

        Returns:
            Feature name -> values [k]; absent ids get "" (categorical), NaN (numeric) or () (multi).
        """
        query = as_str_array(ids)
        rows, found = self._rows(query)
        missing = np.flatnonzero(~found)
        result: dict[str, np.ndarray] = {}
        for name, values in self.columns.items():
            picked = values[rows] if len(self.ids) else _empty_like(values, len(query))
            if self.kinds[name] is ColumnKind.MULTI_CATEGORICAL:
                for position in missing:
                    picked[position] = ()
            else:
                picked[missing] = _MISSING[self.kinds[name]]
            result[name] = picked
        return result

    def vocabulary(self, column: str) -> tuple[str, ...]:
        """Sorted distinct values of a categorical column (distinct tokens for multi), "" excluded.

        Args:
            column: name of a CATEGORICAL or MULTI_CATEGORICAL column.

        Returns:
            The sorted distinct non-empty values.
        """
        if column not in self.columns:
            raise KeyError(f"no column '{column}' in {self.source}; columns: {sorted(self.columns)}")
        kind = self.kinds[column]
        if kind is ColumnKind.NUMERIC:
            raise ValueError(f"column '{column}' of {self.source} is NUMERIC and has no vocabulary")
        values = self.columns[column]
        if kind is ColumnKind.CATEGORICAL:
            distinct: set[str] = set(np.unique(values).tolist()) if len(values) else set()
        else:
            distinct = {token for tokens in values for token in tokens}
        distinct.discard("")
        return tuple(sorted(distinct))

    def _rows(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each queried id in this table (0 where absent) and whether it was found [k]."""
        if len(self.ids) == 0:
            return np.zeros(len(query), dtype=np.int64), np.zeros(len(query), dtype=bool)
        sorted_ids = self.ids[self._order]
        position = np.searchsorted(sorted_ids, query).clip(0, len(sorted_ids) - 1)
        found = sorted_ids[position] == query if len(query) else np.zeros(0, dtype=bool)
        return self._order[position].astype(np.int64), np.asarray(found, dtype=bool)


def _normalised(values: np.ndarray, kind: ColumnKind) -> np.ndarray:
    if kind is ColumnKind.NUMERIC:
        return np.asarray(values, dtype=np.float32).reshape(-1)
    if kind is ColumnKind.CATEGORICAL:
        return as_str_array(values)
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
        return values
    items = list(values)
    return object_array((tuple(item) for item in items), len(items))


def _empty_like(values: np.ndarray, count: int) -> np.ndarray:
    return np.empty(count, dtype=values.dtype)
