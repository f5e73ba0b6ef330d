"""The evaluation report: model and popularity baseline, with and without training-item exclusion."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from model.evaluation.evaluate import evaluate_embeddings, evaluate_scores, popularity_scores
from model.evaluation.exclusions import Exclusions

logger = logging.getLogger(__name__)


def full_report(
    query_embeddings: npt.ArrayLike,
    item_embeddings: npt.ArrayLike,
    targets: npt.ArrayLike,
    item_counts: npt.ArrayLike,
    train_exclusions: Exclusions,
    *,
    ks: Sequence[int] = (10, 50, 100),
    seed: int = 0,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Full-catalog metrics of the model and of the popularity baseline, as a JSON-ready dict.

    Each is evaluated twice: excluding each query's training items (`train_exclusions`, which per the
    leave-last-out protocol should hold every item the user interacted with before the target) and
    including them. All four runs use the same tie-breaking seed.

    Args:
        query_embeddings: Query embeddings [U, d].
        item_embeddings: Item embeddings [N, d]; row i is item id i.
        targets: Held-out item id per query [U].
        item_counts: Training interactions per item [N], for the popularity baseline.
        train_exclusions: Items to exclude per query (U rows).
        ks: Cutoffs, each >= 1.
        seed: Seed of the random tie-breaking.
        batch_size: Queries scored per matmul.

    Returns:
        `{"model": {"excluding_train": {...}, "including_train": {...}}, "popularity": {...},
        "num_queries": U, "num_items": N, "ks": [...], "tie_breaking": "random", "seed": seed,
        "targets_in_exclusions": n}`, where n counts queries whose target is among their excluded items
        (always a miss when excluding; expected 0 under leave-last-out without repeat interactions).
    """
    items = np.asarray(item_embeddings, dtype=np.float32)
    target_ids = np.asarray(targets, dtype=np.int64)
    pop_scores = popularity_scores(item_counts)
    if pop_scores.shape[0] != items.shape[0]:
        raise ValueError(f"item_counts has {pop_scores.shape[0]} items, item_embeddings {items.shape[0]}")
    options: dict[str, Any] = {"ks": ks, "seed": seed, "batch_size": batch_size}
    report: dict[str, Any] = {
        "model": {
            "excluding_train": evaluate_embeddings(
                query_embeddings, items, target_ids, exclude=train_exclusions, **options
            ),
            "including_train": evaluate_embeddings(query_embeddings, items, target_ids, **options),
        },
        "popularity": {
            "excluding_train": evaluate_scores(pop_scores, target_ids, exclude=train_exclusions, **options),
            "including_train": evaluate_scores(pop_scores, target_ids, **options),
        },
        "num_queries": int(target_ids.shape[0]),
        "num_items": int(items.shape[0]),
        "ks": [int(k) for k in ks],
        "tie_breaking": "random",
        "seed": seed,
        "targets_in_exclusions": int(train_exclusions.contains(target_ids).sum()),
    }
    headline = f"recall@{max(ks)}"
    logger.info(
        "evaluation queries=%d items=%d model_%s=%.4f popularity_%s=%.4f (excluding train)",
        report["num_queries"],
        report["num_items"],
        headline,
        report["model"]["excluding_train"][headline],
        headline,
        report["popularity"]["excluding_train"][headline],
    )
    return report
