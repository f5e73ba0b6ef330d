"""Exact top-k retrieval over the whole catalog, with random tie-breaking.

Every query gets its own random total order of the items, used only to break ties between exactly equal
scores: item `a` ranks before item `b` when `score_a > score_b`, or when the scores are equal and
`key(u, a) > key(u, b)`. The key is a SplitMix64 hash of (salt, query row, item id), with the salt drawn
once from the caller's generator. Hence:

- a constant model retrieves a uniformly random set, so its recall@k is k/N in expectation;
- ties at the k-th position are broken at random too, not only the order inside the top k;
- results do not depend on `batch_size`, and top-k for a smaller k is a prefix of top-k for a larger one.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from model.evaluation.exclusions import Exclusions

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
_UInt64Array = npt.NDArray[np.uint64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_ABOVE_THRESHOLD = np.int64(1 << 62)  # tie keys are < 2**62, see _tie_keys


# Memory budget of one block of query scores in `exact_top_k` (scores plus ranking scratch).
BLOCK_MEMORY_BYTES = 1 << 30


def _splitmix64(state: _UInt64Array) -> _UInt64Array:
    """The SplitMix64 output function, elementwise; uint64 arithmetic wraps by design."""
    z = state + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def _tie_keys(salt: np.uint64, rows: IntArray, items: IntArray) -> IntArray:
    """Random tie-breaking keys in [0, 2**62).

    Args:
        salt: Per-call random salt.
        rows: Global query rows [r].
        items: Item ids [r, m] (or [m], broadcast over rows).

    Returns:
        [r, m] int64 keys, a deterministic function of (salt, row, item).
    """
    with np.errstate(over="ignore"):
        row_seeds = _splitmix64(salt ^ (rows.astype(np.uint64) * _GOLDEN))
        keys = _splitmix64(row_seeds[:, None] + items.astype(np.uint64) * _GOLDEN)
    return (keys >> np.uint64(2)).astype(np.int64)


def _select_top(scores: FloatArray, rows: IntArray, k: int, salt: np.uint64) -> IntArray:
    """Item ids [b, k] of the k best items per row, as a set (unordered), ties broken by tie key.

    Args:
        scores: Scores [b, N], excluded items already at -inf.
        rows: Global query rows [b] of the score rows.
        k: Number of items to select, 1 <= k <= N.
        salt: Tie-breaking salt.
    """
    num_items = scores.shape[1]
    if k == num_items:
        return np.broadcast_to(np.arange(num_items, dtype=np.int64), scores.shape).copy()
    candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    threshold = np.take_along_axis(scores, candidates[:, k - 1 : k], axis=1)  # k-th best score [b, 1]
    # Rows with more items at or above the threshold than k: which tied items enter is up to chance.
    tied = np.flatnonzero(np.count_nonzero(scores >= threshold, axis=1) > k)
    if tied.size:
        sub_scores, sub_threshold = scores[tied], threshold[tied]
        keys = _tie_keys(salt, rows[tied], np.arange(num_items, dtype=np.int64))
        keys[sub_scores > sub_threshold] = _ABOVE_THRESHOLD
        keys[sub_scores < sub_threshold] = -1
        candidates[tied] = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    return candidates.astype(np.int64, copy=False)


def _top_k_block(scores: FloatArray, rows: IntArray, k: int, salt: np.uint64) -> tuple[IntArray, FloatArray]:
    """Sorted top-k ids [b, k] and scores [b, k] of one block; -inf results become id -1."""
    ids = _select_top(scores, rows, k, salt)
    top_scores = np.take_along_axis(scores, ids, axis=1)
    order = np.lexsort((-_tie_keys(salt, rows, ids), -top_scores), axis=1)
    ids = np.take_along_axis(ids, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    ids[np.isneginf(top_scores)] = -1
    return ids, top_scores


def _validate(query_embeddings: np.ndarray, item_embeddings: np.ndarray, k: int, batch_size: int) -> None:
    if query_embeddings.ndim != 2 or item_embeddings.ndim != 2:
        raise ValueError(f"embeddings must be 2-D, got query {query_embeddings.shape} and item {item_embeddings.shape}")
    if query_embeddings.shape[1] != item_embeddings.shape[1]:
        raise ValueError(f"embedding dims differ: query {query_embeddings.shape} vs item {item_embeddings.shape}")
    if item_embeddings.shape[0] == 0:
        raise ValueError("the catalog is empty: item_embeddings has 0 rows")
    if k < 1 or batch_size < 1:
        raise ValueError(f"k and batch_size must be >= 1, got k={k}, batch_size={batch_size}")
    for name, array in (("query_embeddings", query_embeddings), ("item_embeddings", item_embeddings)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} holds NaN or infinite values")


def exact_top_k(
    query_embeddings: npt.ArrayLike,
    item_embeddings: npt.ArrayLike,
    k: int,
    *,
    exclude: Exclusions | None = None,
    rng: np.random.Generator,
    batch_size: int = 1024,
) -> tuple[IntArray, FloatArray]:
    """Exact top-k items by dot product over the whole catalog.

    Scores are computed at most `batch_size` queries at a time, and fewer when the catalog is large, so that
    a block's scores and ranking scratch stay within about `BLOCK_MEMORY_BYTES` (at 24 bytes per score, up to
    48 for blocks with ties at the k-th position): a 1M-item catalog is scored about 40 queries at a time.

    Args:
        query_embeddings: Query embeddings [U, d], cast to float32.
        item_embeddings: Item embeddings [N, d], cast to float32; row i is item id i.
        k: Number of items per query; clipped to N.
        exclude: Items to leave out per query (U rows), or None. Excluded items score -inf.
        rng: Generator for the tie-breaking salt; one 64-bit draw per call.
        batch_size: Queries scored per matmul.

    Returns:
        ids: Item ids [U, min(k, N)] int64, best first, ties in random order.
        scores: Their scores [U, min(k, N)] float32. When a query has fewer than `min(k, N)` items left
            after exclusion, the trailing positions hold id -1 and score -inf (the FAISS convention):
            excluded items never appear.
    """
    queries = np.asarray(query_embeddings, dtype=np.float32)
    items = np.asarray(item_embeddings, dtype=np.float32)
    _validate(queries, items, k, batch_size)
    num_queries, num_items = queries.shape[0], items.shape[0]
    if exclude is not None:
        if exclude.num_queries != num_queries:
            raise ValueError(f"exclude has {exclude.num_queries} rows, expected {num_queries} queries")
        if exclude.nnz and exclude.indices.max() >= num_items:
            raise ValueError(f"exclude holds item id {int(exclude.indices.max())} >= N={num_items}")
    k = min(k, num_items)
    batch_size = max(1, min(batch_size, BLOCK_MEMORY_BYTES // (24 * num_items)))
    salt = rng.integers(0, np.iinfo(np.uint64).max, dtype=np.uint64, endpoint=True)
    top_ids = np.empty((num_queries, k), dtype=np.int64)
    top_scores = np.empty((num_queries, k), dtype=np.float32)
    items_t = np.ascontiguousarray(items.T)
    for start in range(0, num_queries, batch_size):
        stop = min(start + batch_size, num_queries)
        scores = queries[start:stop] @ items_t
        if exclude is not None:
            local_rows, excluded = exclude.slice_pairs(start, stop)
            scores[local_rows, excluded] = -np.inf
        rows = np.arange(start, stop, dtype=np.int64)
        top_ids[start:stop], top_scores[start:stop] = _top_k_block(scores, rows, k, salt)
    logger.debug("exact_top_k queries=%d items=%d k=%d batch_size=%d", num_queries, num_items, k, batch_size)
    return top_ids, top_scores
