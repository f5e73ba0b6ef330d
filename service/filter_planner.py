"""Plans and runs the search of one filtered query, as vector databases plan pre- versus post-filtering.

Given the rows that pass a query's filter (and are not excluded), the planner picks one of three strategies:

- `BRUTE_FORCE`: score exactly the passing rows (|passing| x d multiply-adds) and keep the top k. Exact for any
  index; chosen when few rows pass, where every index search would waste its work on failing rows.
- `SELECTOR`: a FAISS search restricted by an `IDSelectorBitmap` through the index's own `SearchParameters`
  (CPU Flat, IVF and HNSW indexes). IVF visits nprobe / selectivity lists (HNSW: efSearch / selectivity), so
  that it sees about as many passing items as an unfiltered search sees items.
- `OVERFETCH`: search k / selectivity x margin neighbours without a selector, drop failing rows, and search 4x
  deeper while fewer than k remain; an IVF index probes nprobe / selectivity lists here too (deeper answers from
  the same few lists would miss the passing items of the others). When the index has no deeper answer (FAISS GPU
  k <= 2048, or an IVF index whose probed lists are exhausted), fall back to brute force. For GPU indexes, which
  ignore IDSelectors.

With a Flat index every strategy returns the exact filtered top k. The planner never drops a passing item that
the index returned, so `truncated` (fewer than k items) means that fewer than k items pass, or, with an
approximate index, that the index found fewer.
"""

from __future__ import annotations

import enum
import logging
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from model.bundle.contract import GPU_MAX_K

logger = logging.getLogger(__name__)


class Strategy(enum.Enum):
    BRUTE_FORCE = "brute_force"
    SELECTOR = "selector"
    OVERFETCH = "overfetch"


@dataclass(frozen=True)
class PlannerConfig:
    """When to use which strategy.

    Attributes:
        brute_force_rows: at most this many passing rows: brute force.
        brute_force_fraction: at most this fraction of the catalog passing: brute force.
        overfetch_margin: the first over-fetch searches k / selectivity x margin neighbours.
        force: always use this strategy (tests, benchmarks); None: plan per query.
    """

    brute_force_rows: int = 20_000
    brute_force_fraction: float = 0.02
    overfetch_margin: float = 2.0
    force: Strategy | None = None


class FilterPlanner:
    """Answers filtered queries over one index.

    Args:
        index: the FAISS index; id i = catalog row i.
        item_embeddings: [N, d] float32 item embeddings (what brute force scores).
        on_gpu: the index is a GPU index (it ignores IDSelectors: over-fetch instead).
        max_fetch: the deepest search the index allows (N on the CPU, min(N, 2048) on a GPU).
        config: strategy thresholds.
        search_lock: held around index searches (FAISS GPU indexes take one calling thread at a time).
    """

    def __init__(
        self,
        index: faiss.Index,
        item_embeddings: np.ndarray,
        *,
        on_gpu: bool = False,
        max_fetch: int | None = None,
        config: PlannerConfig | None = None,
        search_lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        self._index = index
        self._embeddings = item_embeddings
        self._size = index.ntotal
        self._on_gpu = on_gpu
        self._max_fetch = min(max_fetch or self._size, self._size)
        self.config = config or PlannerConfig()
        self._lock: AbstractContextManager[Any] = search_lock or nullcontext()
        self._ivf = _ivf_of(index)
        self._max_probe = GPU_MAX_K if on_gpu else self._size
        self._hnsw = index if isinstance(index, faiss.IndexHNSW) else None

    def choose(self, passing: int, k: int) -> Strategy:
        """The strategy for a query with `passing` rows that may be returned."""
        if self.config.force is not None:
            return self.config.force
        if passing <= max(self.config.brute_force_rows, k) or passing <= self.config.brute_force_fraction * self._size:
            return Strategy.BRUTE_FORCE
        return Strategy.OVERFETCH if self._on_gpu else Strategy.SELECTOR

    def search(self, vector: np.ndarray, passing: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, Strategy]:
        """The top k passing rows for one query.

        Args:
            vector: [d] float32 query.
            passing: [N] bool, the rows that may be returned.
            k: how many.

        Returns:
            ([n] int64 rows, [n] float32 scores, the strategy used), best first, n <= k.
        """
        rows = np.flatnonzero(passing)
        strategy = self.choose(len(rows), k)
        if strategy is Strategy.BRUTE_FORCE or len(rows) == 0:
            return (*self._brute_force(vector, rows, k), strategy)
        if strategy is Strategy.SELECTOR:
            return (*self._selector(vector, passing, len(rows), k), strategy)
        return (*self._overfetch(vector, passing, rows, k), strategy)

    def _brute_force(self, vector: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(self._embeddings[rows], dtype=np.float32) @ vector
        if len(rows) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows[top], scores[top]
        order = np.lexsort((rows, -scores))
        return rows[order].astype(np.int64), scores[order].astype(np.float32)

    def _selector(self, vector: np.ndarray, passing: np.ndarray, count: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        bitmap = np.packbits(passing, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(passing), faiss.swig_ptr(bitmap))
        fraction = count / self._size
        params: Any
        if self._ivf is not None:
            params = self._ivf_parameters(fraction)
        elif self._hnsw is not None:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from FAISS's stubs
            params.efSearch = max(k, math.ceil(self._hnsw.hnsw.efSearch / fraction))
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        with self._lock:
            scores, ids = self._index.search(vector[None, :], k, params=params)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep]

    def _overfetch(
        self, vector: np.ndarray, passing: np.ndarray, rows: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        fraction = len(rows) / self._size
        fetch = min(self._max_fetch, math.ceil(k / fraction * self.config.overfetch_margin))
        # An IVF index finds deeper answers only in the lists it probes: probe as many more as for the selector.
        params = self._ivf_parameters(fraction) if self._ivf is not None else None
        while True:
            with self._lock:
                scores, ids = self._index.search(vector[None, :], fetch, params=params)
            found = ids[0][ids[0] >= 0]
            keep = passing[found]
            if keep.sum() >= k:
                return found[keep][:k].astype(np.int64), scores[0][: len(found)][keep][:k]
            if len(found) < fetch or fetch >= self._max_fetch:  # the index has no deeper answer to give
                logger.debug("over-fetch of %d found %d of %d passing: brute force", fetch, keep.sum(), k)
                return self._brute_force(vector, rows, k)
            fetch = min(self._max_fetch, fetch * 4)

    def _ivf_parameters(self, fraction: float) -> Any:
        """IVF search parameters that probe nprobe / fraction lists (at most all of them, and at most the GPU's
        limit on a GPU), so that a search sees about as many passing items as an unfiltered search sees items."""
        params = faiss.SearchParametersIVF()
        params.nprobe = min(self._ivf.nlist, self._max_probe, math.ceil(self._ivf.nprobe / fraction))
        return params


def _ivf_of(index: faiss.Index) -> Any:
    """The IVF index whose `nlist` and `nprobe` the planner scales (a GPU IVF index has both), or None."""
    if hasattr(index, "nlist") and hasattr(index, "nprobe"):
        return index
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):  # not an IVF index (TypeError: not a FAISS index at all)
        return None
