"""Plans and runs filtered searches, as vector databases plan pre- versus post-filtering.

The planner answers a batch of queries that share one filter (`PassingRows`: the m rows of the N-item catalog
that pass it) with one of three strategies:

- `BRUTE_FORCE`: score exactly the passing rows and keep the top k: a FAISS Flat index of the m passing rows'
  embeddings, built once per filter and cached with it, so a batch of B queries costs one [B, d] x [d, m]
  product (BLAS) plus a top-k heap over m scores each. Exact for any index.
- `SELECTOR`: a FAISS search restricted by an `IDSelectorBitmap` through the index's own `SearchParameters`
  (CPU Flat, IVF and HNSW indexes). IVF probes nprobe / s lists (s = m / N; HNSW: efSearch / s), so that it
  sees about as many passing items as an unfiltered search sees items.
- `OVERFETCH`: search k / s x margin neighbours without a selector, drop failing rows, and search 4x deeper for
  the queries with fewer than k left; an IVF index probes nprobe / s lists here too (deeper answers from the
  same few lists would miss the passing items of the others). When the index has no deeper answer (FAISS GPU
  k <= 2048, or an IVF index whose probed lists are exhausted), fall back to brute force. For GPU indexes, which
  ignore IDSelectors.

Cost model, per query, in rows visited (m passing rows of N; s = m / N; measured in docs/benchmarks/filters.md):
- brute force: m rows scored in a BLAS product over contiguous rows, once the filter's rows are gathered (m x d
  x 4 bytes, cached; gathering costs about as much as scoring them once).
- selector on IVF: nprobe / s lists of about N / nlist rows visited each (bitmap test, then a distance for the
  passing ones), without BLAS and with scattered reads: a visited row costs `ivf_row_cost` brute-forced rows
  (filters.md at 1M x 64, IVF1024 nprobe 8: 4.7 at s = 10 %, 13 at s = 50 %; the default is 8). On Flat: all N
  rows, without BLAS.
- over-fetch: an unfiltered search for k / s x margin neighbours (deeper heaps; on IVF, nprobe / s lists).
So:
1. m <= `brute_force_rows` or m <= `brute_force_fraction` x N (or m <= k): brute force, on any index.
2. A CPU Flat index visits all N rows whatever the strategy, brute force only m: brute force while the gathered
   rows fit in half the cache, else over-fetch (BLAS, and exact on Flat).
3. A CPU IVF index: brute force while m <= ivf_row_cost x nprobe / s x N / nlist and the gathered rows fit in
   half the cache (at 1M, nlist 1024, nprobe 8: below s of about 25 %), else the selector.
4. Otherwise the index's own search: the selector on the CPU (HNSW), over-fetch on a GPU.
With a Flat index every strategy returns the exact filtered top k. The planner never drops a passing item that
the index returned, so fewer than k items means that fewer than k pass or, with an approximate index, that the
index found fewer.
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

from model.bundle.contract import GPU_MAX_K, RefinedIndex
from service.passing_rows import PassingRows

logger = logging.getLogger(__name__)

# The smallest default passing-rows cache (small catalogs): 16 MiB.
MIN_CACHE_BYTES = 16 * 2**20

# One query's answer: ([n] int64 rows, [n] float32 scores), best first, n <= k.
Answer = tuple[np.ndarray, np.ndarray]


class Strategy(enum.Enum):
    BRUTE_FORCE = "brute_force"
    SELECTOR = "selector"
    OVERFETCH = "overfetch"


@dataclass(frozen=True)
class PlannerConfig:
    """When to use which strategy, and how much to cache.

    Attributes:
        brute_force_rows: at most this many passing rows: brute force.
        brute_force_fraction: at most this fraction of the catalog passing: brute force.
        overfetch_margin: the first over-fetch searches k / selectivity x margin neighbours.
        ivf_row_cost: what visiting one row of an IVF list costs, in rows scored by brute force.
        force: always use this strategy (tests, benchmarks); None: plan per filter.
        cache_bytes: what the passing rows of recent filters may hold per serving version (`PassingRowsCache`);
            None: as much as the item embeddings (N x d x 4 bytes), and at least `MIN_CACHE_BYTES`.
    """

    brute_force_rows: int = 20_000
    brute_force_fraction: float = 0.02
    overfetch_margin: float = 2.0
    ivf_row_cost: float = 8.0
    force: Strategy | None = None
    cache_bytes: int | None = None


class FilterPlanner:
    """Answers filtered queries over one index.

    Args:
        index: the FAISS index, or a `RefinedIndex` over one (its re-ranked answers are what filtered searches
            return); id i = catalog row i.
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
        approximate = index.base if isinstance(index, RefinedIndex) else index  # searches still go through `index`
        self._ivf = _ivf_of(approximate)
        self._max_probe = GPU_MAX_K if on_gpu else self._size
        self._hnsw = approximate if isinstance(approximate, faiss.IndexHNSW) else None
        self._scans_all = isinstance(approximate, faiss.IndexFlat) and not on_gpu
        self._row_bytes = item_embeddings.shape[1] * 4
        self.cache_bytes = (
            self.config.cache_bytes
            if self.config.cache_bytes is not None
            else max(MIN_CACHE_BYTES, self._size * self._row_bytes)
        )

    def choose(self, passing: int, k: int) -> Strategy:
        """The strategy for queries with `passing` rows that may be returned."""
        if self.config.force is not None:
            return self.config.force
        if passing <= max(self.config.brute_force_rows, k) or passing <= self.config.brute_force_fraction * self._size:
            return Strategy.BRUTE_FORCE
        fits = passing * self._row_bytes <= self.cache_bytes // 2
        if self._scans_all:
            return Strategy.BRUTE_FORCE if fits else Strategy.OVERFETCH
        if self._ivf is not None and not self._on_gpu and fits:
            fraction = passing / self._size
            visited = self._probes(fraction) * self._size / self._ivf.nlist * self.config.ivf_row_cost
            if passing <= visited:
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
        answers, strategy = self.search_many(vector[None, :], PassingRows(passing), k)
        return (*answers[0], strategy)

    def search_many(self, vectors: np.ndarray, passing: PassingRows, k: int) -> tuple[list[Answer], Strategy]:
        """The top k passing rows for each of a batch of queries that share one filter.

        Args:
            vectors: [B, d] float32 queries.
            passing: the rows that may be returned.
            k: how many per query.

        Returns:
            (B answers, the strategy used).
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        strategy = self.choose(len(passing), k)
        if strategy is Strategy.BRUTE_FORCE or len(passing) == 0:
            return self._brute_force(vectors, passing, k), strategy
        if strategy is Strategy.SELECTOR:
            return self._selector(vectors, passing, k), strategy
        return self._overfetch(vectors, passing, k), strategy

    def _brute_force(self, vectors: np.ndarray, passing: PassingRows, k: int) -> list[Answer]:
        rows = passing.rows
        if len(rows) == 0:
            return [(rows, np.zeros(0, dtype=np.float32))] * len(vectors)
        scores, ids = passing.flat_index(self._embeddings).search(vectors, min(k, len(rows)))
        return [(rows[ids[i]], scores[i]) for i in range(len(vectors))]

    def _selector(self, vectors: np.ndarray, passing: PassingRows, k: int) -> list[Answer]:
        bitmap = passing.bitmap()
        selector = faiss.IDSelectorBitmap(passing.size, faiss.swig_ptr(bitmap))
        params: Any
        if self._ivf is not None:
            params = self._ivf_parameters(passing.fraction)
        elif self._hnsw is not None:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from FAISS's stubs
            params.efSearch = max(k, math.ceil(self._hnsw.hnsw.efSearch / passing.fraction))
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        with self._lock:
            scores, ids = self._index.search(vectors, k, params=params)
        return [(ids[i][ids[i] >= 0].astype(np.int64), scores[i][ids[i] >= 0]) for i in range(len(vectors))]

    def _overfetch(self, vectors: np.ndarray, passing: PassingRows, k: int) -> list[Answer]:
        mask = passing.mask
        fetch = min(self._max_fetch, math.ceil(k / passing.fraction * self.config.overfetch_margin))
        params = self._ivf_parameters(passing.fraction) if self._ivf is not None else None
        answers: list[Answer | None] = [None] * len(vectors)
        pending, exhausted = list(range(len(vectors))), []
        while pending:
            with self._lock:
                scores, ids = self._index.search(vectors[pending], fetch, params=params)
            deeper = []
            for j, i in enumerate(pending):
                found = ids[j] >= 0
                keep = found.copy()
                keep[found] = mask[ids[j][found]]
                if keep.sum() >= k:
                    answers[i] = (ids[j][keep][:k].astype(np.int64), scores[j][keep][:k])
                elif found.sum() < fetch or fetch >= self._max_fetch:  # the index has no deeper answer to give
                    exhausted.append(i)
                else:
                    deeper.append(i)
            pending, fetch = deeper, min(self._max_fetch, fetch * 4)
        if exhausted:
            logger.debug("over-fetch exhausted for %d of %d queries: brute force", len(exhausted), len(vectors))
            for i, answer in zip(exhausted, self._brute_force(vectors[exhausted], passing, k), strict=True):
                answers[i] = answer
        return answers  # type: ignore[return-value]  # every query answered above

    def _ivf_parameters(self, fraction: float) -> Any:
        """IVF search parameters that probe nprobe / fraction lists (at most all of them, and at most the GPU's
        limit on a GPU), so that a search sees about as many passing items as an unfiltered search sees items."""
        params = faiss.SearchParametersIVF()
        params.nprobe = self._probes(fraction)
        return params

    def _probes(self, fraction: float) -> int:
        return int(min(self._ivf.nlist, self._max_probe, math.ceil(self._ivf.nprobe / fraction)))


def _ivf_of(index: faiss.Index) -> Any:
    """The IVF index whose `nlist` and `nprobe` the planner scales (a GPU IVF index has both), or None."""
    if hasattr(index, "nlist") and hasattr(index, "nprobe"):
        return index
    try:
        return faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):  # not an IVF index (TypeError: not a FAISS index at all)
        return None
