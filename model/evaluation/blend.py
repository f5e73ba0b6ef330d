"""A linear mix of two recommenders' score matrices, each first scaled per query to a maximum of 1."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def _row_scaled(scores: np.ndarray) -> np.ndarray:
    peak = np.abs(scores).max(axis=1, keepdims=True)
    return scores / np.where(peak > 0, peak, 1.0)


def blend_scores(first: npt.ArrayLike, second: npt.ArrayLike, weight: float) -> FloatArray:
    """`weight * first + (1 - weight) * second`, each row divided by its largest absolute score first.

    Per-query scaling puts scores of different kinds (regression outputs, probabilities) on one scale
    without changing either recommender's own ranking.

    Args:
        first: [Q, N] scores.
        second: [Q, N] scores.
        weight: the first recommender's share, in [0, 1].
    """
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"first and second must be [Q, N] of one shape, got {a.shape}, {b.shape}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    return (weight * _row_scaled(a) + (1.0 - weight) * _row_scaled(b)).astype(np.float32)
