"""Full-catalog evaluation of a model's embeddings and of query-independent baselines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from model.evaluation.exclusions import Exclusions
from model.evaluation.metrics import retrieval_metrics
from model.evaluation.ranking import exact_top_k

FloatArray = npt.NDArray[np.float32]


def evaluate_embeddings(
    query_embeddings: npt.ArrayLike,
    item_embeddings: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    ks: Sequence[int] = (10, 50, 100),
    exclude: Exclusions | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Recall, NDCG and MRR at each k from exact top-max(ks) retrieval over the whole catalog.

    Args:
        query_embeddings: Query embeddings [U, d].
        item_embeddings: Item embeddings [N, d]; row i is item id i.
        targets: Held-out item id per query [U].
        ks: Cutoffs, each >= 1.
        exclude: Items to leave out per query (e.g. training items), or None.
        seed: Seed of the random tie-breaking.
        batch_size: Queries scored per matmul.

    Returns:
        `{"recall@k": ..., "ndcg@k": ..., "mrr@k": ...}` for each k.
    """
    if not ks:
        raise ValueError("ks must be non-empty")
    top_ids, _ = exact_top_k(
        query_embeddings,
        item_embeddings,
        max(ks),
        exclude=exclude,
        rng=np.random.default_rng(seed),
        batch_size=batch_size,
    )
    return retrieval_metrics(top_ids, targets, ks)


def evaluate_scores(
    item_scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    ks: Sequence[int] = (10, 50, 100),
    exclude: Exclusions | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Evaluates one score vector shared by all queries (e.g. popularity) like a model.

    The scores go through the same top-k, exclusion and tie-breaking code as `evaluate_embeddings`, as
    one-dimensional item embeddings `item_scores[:, None]` against query embeddings of ones.

    Args:
        item_scores: Score per item [N]; higher ranks first.
        targets: Held-out item id per query [U].
        ks: Cutoffs, each >= 1.
        exclude: Items to leave out per query, or None.
        seed: Seed of the random tie-breaking.
        batch_size: Queries scored per matmul.

    Returns:
        `{"recall@k": ..., "ndcg@k": ..., "mrr@k": ...}` for each k.
    """
    scores = np.asarray(item_scores, dtype=np.float32)
    if scores.ndim != 1:
        raise ValueError(f"item_scores must be 1-D [N], got shape {scores.shape}")
    num_queries = np.asarray(targets).shape[0]
    return evaluate_embeddings(
        np.ones((num_queries, 1), dtype=np.float32),
        scores[:, None],
        targets,
        ks=ks,
        exclude=exclude,
        seed=seed,
        batch_size=batch_size,
    )


def evaluate_query_scores(
    scores: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    ks: Sequence[int] = (10, 50, 100),
    exclude: Exclusions | None = None,
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Evaluates a per-query score matrix (e.g. EASE or a transition baseline) like a model.

    The scores go through the same top-k, exclusion and tie-breaking code as `evaluate_embeddings`, as
    query embeddings `scores` against the identity as item embeddings.

    Args:
        scores: Score of each item for each query [U, N]; higher ranks first.
        targets: Held-out item id per query [U].
        ks: Cutoffs, each >= 1.
        exclude: Items to leave out per query, or None.
        seed: Seed of the random tie-breaking.
        batch_size: Queries scored per matmul.

    Returns:
        `{"recall@k": ..., "ndcg@k": ..., "mrr@k": ...}` for each k.
    """
    matrix = np.asarray(scores, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"scores must be 2-D [U, N], got shape {matrix.shape}")
    return evaluate_embeddings(
        matrix,
        np.eye(matrix.shape[1], dtype=np.float32),
        targets,
        ks=ks,
        exclude=exclude,
        seed=seed,
        batch_size=batch_size,
    )


def popularity_scores(item_counts: npt.ArrayLike) -> FloatArray:
    """Popularity baseline scores: the dense rank of each item's interaction count.

    Ranks keep the order and the ties of the counts exactly in float32, which raw counts above 2**24
    would not.

    Args:
        item_counts: Training interactions per item [N], >= 0.

    Returns:
        [N] float32 scores; equal counts give equal scores, more interactions a higher score.
    """
    counts = np.asarray(item_counts)
    if counts.ndim != 1:
        raise ValueError(f"item_counts must be 1-D [N], got shape {counts.shape}")
    if counts.size and counts.min() < 0:
        raise ValueError(f"item_counts must be >= 0, got min {counts.min()}")
    _, dense_rank = np.unique(counts, return_inverse=True)
    return dense_rank.astype(np.float32)
