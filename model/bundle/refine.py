"""Exact re-rank of an approximate index's candidates from the bundle's float32 item embeddings.

An IVF-PQ index scores items by their compressed codes: at 10M items its top 100 holds about 81 % of the exact
top 100 (docs/benchmarks/large_catalog.md). Re-scoring its top k·k_factor candidates by the exact inner product
with the item embeddings and keeping the best k brings that to 0.997 at k_factor 4.

FAISS has this as `IndexRefineFlat` ("...,RFlat"), but that index keeps its own float32 copy of every vector
inside the index file: 2.5 GB more per version at 10M x 64, a second copy of the bundle's item_embeddings.npy,
held in anonymous memory (it cannot be memory-mapped with IO_FLAG_MMAP, so a hot reload would double it), and it
cannot move to a GPU. Written by hand here instead: the candidates come from the index (CPU, GPU or sharded),
and the re-rank reads the memory-mapped embeddings the engine already holds for similar-item and filtered
queries, so a version costs no extra memory. The parameter keeps FAISS's name and meaning (`k_factor`).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

# Score of a padded slot (fewer candidates than asked), FAISS's convention for inner-product indexes.
PAD_SCORE = -np.finfo(np.float32).max


class RefinedIndex:
    """A FAISS index whose answers are re-ranked exactly: `search(x, k)` fetches the index's top k·k_factor and
    returns the k with the highest inner product with `embeddings`, as FAISS would (best first, -1 ids padded at
    the end of a row with `PAD_SCORE`).

    Args:
        base: the approximate index; id i = row i of `embeddings`.
        embeddings: [N, d] float32 item embeddings (a memory map is fine: only candidate rows are read).
        k_factor: candidates fetched per answer wanted (>= 1).
        max_fetch: the deepest search `base` allows (FAISS GPU indexes stop at 2048); default N.
    """

    def __init__(self, base: faiss.Index, embeddings: np.ndarray, k_factor: int, *, max_fetch: int | None = None):
        if k_factor < 1:
            raise ValueError(f"k_factor must be >= 1, got {k_factor}")
        if base.ntotal != len(embeddings):
            raise ValueError(f"index holds {base.ntotal} vectors but there are {len(embeddings)} embeddings")
        self.base = base
        self.k_factor = k_factor
        self._embeddings = embeddings
        self._max_fetch = min(max_fetch or base.ntotal, base.ntotal)

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal)

    @property
    def d(self) -> int:
        return int(self.base.d)

    def search(self, x: np.ndarray, k: int, *, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """([B, k] float32 scores, [B, k] int64 ids) of the re-ranked top k of each row of `x`.

        Args:
            x: [B, d] float32 queries.
            k: answers per query (>= 1).
            params: FAISS search parameters passed to the base search (e.g. an IDSelector).
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        fetch = min(max(k * self.k_factor, k), self._max_fetch)
        _, candidates = self.base.search(x, fetch, params=params)
        found = candidates >= 0
        vectors = np.asarray(self._embeddings[np.where(found, candidates, 0).ravel()], dtype=np.float32)
        exact = np.einsum("bd,bcd->bc", x, vectors.reshape(*candidates.shape, x.shape[1]))
        exact = np.where(found, exact, PAD_SCORE).astype(np.float32)
        width = min(k, fetch)
        order = np.argsort(-exact, axis=1, kind="stable")[:, :width]
        scores = np.take_along_axis(exact, order, axis=1)
        ids = np.where(scores > PAD_SCORE, np.take_along_axis(candidates, order, axis=1), -1)
        if width < k:  # the index holds fewer than k items: pad as FAISS does
            pad = ((0, 0), (0, k - width))
            scores = np.pad(scores, pad, constant_values=PAD_SCORE)
            ids = np.pad(ids, pad, constant_values=-1)
        return scores, ids.astype(np.int64)


def refined(base: faiss.Index, embeddings: np.ndarray | None, k_factor: int | None, **kwargs: Any) -> Any:
    """`base` re-ranked by `RefinedIndex` when `k_factor` asks for it and embeddings are at hand, else `base`."""
    if not k_factor or embeddings is None:
        return base
    return RefinedIndex(base, embeddings, k_factor, **kwargs)
