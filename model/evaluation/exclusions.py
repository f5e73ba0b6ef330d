"""Per-query sets of item ids to leave out of retrieval, stored compactly (CSR)."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def _as_int64(values: npt.ArrayLike, name: str) -> IntArray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


@dataclasses.dataclass(frozen=True, eq=False)
class Exclusions:
    """Item ids excluded per query, e.g. each user's training items.

    Row `i` holds the sorted, unique item ids `indices[indptr[i]:indptr[i + 1]]`. The arrays are made
    read-only on construction.

    Attributes:
        indptr: Row offsets [num_queries + 1] int64, starting at 0 and non-decreasing.
        indices: Item ids [nnz] int64, sorted and unique within each row.
    """

    indptr: IntArray
    indices: IntArray

    def __post_init__(self) -> None:
        indptr = _as_int64(self.indptr, "indptr")
        indices = _as_int64(self.indices, "indices")
        if indptr.size == 0 or indptr[0] != 0:
            raise ValueError(f"indptr must start with 0, got {indptr[:1].tolist()}")
        if np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must be non-decreasing")
        if indptr[-1] != indices.size:
            raise ValueError(f"indptr[-1]={int(indptr[-1])} must equal len(indices)={indices.size}")
        if indices.size and indices.min() < 0:
            raise ValueError(f"item ids must be >= 0, got min {int(indices.min())}")
        for name, array in (("indptr", indptr), ("indices", indices)):
            frozen = array.copy() if array.flags.writeable else array  # never freeze the caller's array
            frozen.setflags(write=False)
            object.__setattr__(self, name, frozen)

    @classmethod
    def from_pairs(cls, query_rows: npt.ArrayLike, item_ids: npt.ArrayLike, num_queries: int) -> Exclusions:
        """Builds exclusions from (query row, item id) pairs; duplicates are dropped.

        Args:
            query_rows: Query row of each pair [nnz], in `[0, num_queries)`.
            item_ids: Excluded item id of each pair [nnz], `>= 0`.
            num_queries: Number of queries U; rows without pairs are empty.

        Returns:
            The exclusions, with `num_queries` rows.
        """
        rows = _as_int64(query_rows, "query_rows")
        items = _as_int64(item_ids, "item_ids")
        if rows.shape != items.shape:
            raise ValueError(f"query_rows {rows.shape} and item_ids {items.shape} must have the same shape")
        if num_queries < 0:
            raise ValueError(f"num_queries must be >= 0, got {num_queries}")
        if rows.size and (rows.min() < 0 or rows.max() >= num_queries):
            raise ValueError(f"query_rows must lie in [0, {num_queries}), got [{int(rows.min())}, {int(rows.max())}]")
        order = np.lexsort((items, rows))
        rows, items = rows[order], items[order]
        keep = np.ones(rows.size, dtype=bool)
        keep[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
        rows, items = rows[keep], items[keep]
        indptr = np.zeros(num_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=num_queries), out=indptr[1:])
        indptr.setflags(write=False)  # fresh arrays: freezing them here saves a copy
        items.setflags(write=False)
        return cls(indptr=indptr, indices=items)

    @classmethod
    def empty(cls, num_queries: int) -> Exclusions:
        """Returns exclusions with `num_queries` empty rows."""
        return cls.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), num_queries)

    @property
    def num_queries(self) -> int:
        """Number of rows U."""
        return int(self.indptr.size - 1)

    @property
    def nnz(self) -> int:
        """Total number of excluded (query, item) pairs."""
        return int(self.indices.size)

    def row(self, i: int) -> IntArray:
        """Returns the sorted excluded item ids [n_i] of query `i` (a read-only view)."""
        if not 0 <= i < self.num_queries:
            raise IndexError(f"row {i} out of range for {self.num_queries} queries")
        return self.indices[self.indptr[i] : self.indptr[i + 1]]

    def slice_pairs(self, start: int, stop: int) -> tuple[IntArray, IntArray]:
        """Returns the pairs of rows `[start, stop)` as (local rows [m], item ids [m]).

        Local rows count from `start`, ready to index a score block of those queries.
        """
        counts = np.diff(self.indptr[start : stop + 1])
        local_rows = np.repeat(np.arange(stop - start, dtype=np.int64), counts)
        return local_rows, self.indices[self.indptr[start] : self.indptr[stop]]

    def contains(self, item_ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Tells, per query, whether its given item is excluded.

        Args:
            item_ids: One item id per query [num_queries], e.g. the held-out targets.

        Returns:
            [num_queries] bool, True where `item_ids[i]` is in row `i`.
        """
        items = _as_int64(item_ids, "item_ids")
        if items.size != self.num_queries:
            raise ValueError(f"expected {self.num_queries} item ids, got {items.size}")
        rows, excluded = self.slice_pairs(0, self.num_queries)
        hit_rows = rows[excluded == items[rows]]
        result = np.zeros(self.num_queries, dtype=bool)
        result[hit_rows] = True
        return result
