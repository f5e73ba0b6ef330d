"""Ranking metrics for one held-out target item per query (leave-last-out)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def rank_of_target(top_ids: npt.ArrayLike, targets: npt.ArrayLike) -> IntArray:
    """0-based position of each query's target in its retrieved list.

    Args:
        top_ids: Retrieved item ids [U, K], best first; -1 marks an empty slot.
        targets: Held-out item id per query [U], >= 0.

    Returns:
        [U] int64 rank in [0, K), or -1 where the target was not retrieved.
    """
    ids = np.asarray(top_ids)
    target_ids = np.asarray(targets)
    if ids.ndim != 2 or target_ids.ndim != 1 or ids.shape[0] != target_ids.shape[0]:
        raise ValueError(f"expected top_ids [U, K] and targets [U], got {ids.shape} and {target_ids.shape}")
    if target_ids.size and target_ids.min() < 0:
        raise ValueError(f"targets must be >= 0, got min {int(target_ids.min())}")
    hits = ids == target_ids[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), -1).astype(np.int64)


def metrics_from_ranks(ranks: npt.ArrayLike, ks: Sequence[int] = (10, 50, 100)) -> dict[str, float]:
    """Recall, NDCG and MRR at each k, averaged over queries, from target ranks.

    With a single target per query: recall@k is the hit rate; ndcg@k is `1 / log2(rank + 2)` on a hit
    (the ideal DCG is 1); mrr@k is `1 / (rank + 1)` on a hit; a miss scores 0 on all three.

    Args:
        ranks: 0-based target rank per query [U], -1 when not retrieved.
        ks: Cutoffs, each >= 1.

    Returns:
        `{"recall@k": ..., "ndcg@k": ..., "mrr@k": ...}` for each k, in the order of `ks`.
    """
    rank = np.asarray(ranks, dtype=np.int64)
    if rank.ndim != 1 or rank.size == 0:
        raise ValueError(f"ranks must be 1-D and non-empty, got shape {rank.shape}")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be non-empty and positive, got {tuple(ks)}")
    found = rank >= 0
    position = np.where(found, rank, 0).astype(np.float64)
    result: dict[str, float] = {}
    for k in ks:
        hit = found & (rank < k)
        result[f"recall@{k}"] = float(hit.mean())
        result[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(position + 2.0), 0.0).mean())
        result[f"mrr@{k}"] = float(np.where(hit, 1.0 / (position + 1.0), 0.0).mean())
    return result


def retrieval_metrics(
    top_ids: npt.ArrayLike, targets: npt.ArrayLike, ks: Sequence[int] = (10, 50, 100)
) -> dict[str, float]:
    """Recall, NDCG and MRR at each k for retrieved lists and one target per query.

    A target beyond the K retrieved columns counts as a miss, so pass K >= max(ks), or K = N when the
    catalog is smaller than max(ks) (then recall@k for k >= N is the share of non-excluded targets).

    Args:
        top_ids: Retrieved item ids [U, K], best first.
        targets: Held-out item id per query [U].
        ks: Cutoffs, each >= 1.

    Returns:
        `{"recall@k": ..., "ndcg@k": ..., "mrr@k": ...}` for each k, averaged over the U queries.
    """
    return metrics_from_ranks(rank_of_target(top_ids, targets), ks)
