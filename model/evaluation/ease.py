"""EASE (Steck, 2019): a closed-form item-item ridge regression over each user's history, no self-weights."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


def interaction_matrix(rows: npt.ArrayLike, items: npt.ArrayLike, num_rows: int, num_items: int) -> FloatArray:
    """Binary [num_rows, num_items] matrix with a 1 at each (row, item) pair; repeated pairs count once.

    Args:
        rows: [n] row (user or query) of each pair, in [0, num_rows).
        items: [n] item id of each pair, in [0, num_items).
        num_rows: number of rows.
        num_items: number of items.
    """
    row_ids, item_ids = np.asarray(rows, dtype=np.int64), np.asarray(items, dtype=np.int64)
    if row_ids.shape != item_ids.shape or row_ids.ndim != 1:
        raise ValueError(f"rows and items must be 1-D of one length, got shapes {row_ids.shape}, {item_ids.shape}")
    for name, ids, size in (("rows", row_ids, num_rows), ("items", item_ids, num_items)):
        if ids.size and (ids.min() < 0 or ids.max() >= size):
            raise ValueError(f"{name} must lie in [0, {size}), got [{ids.min()}, {ids.max()}]")
    matrix = np.zeros((num_rows, num_items), dtype=np.float32)
    matrix[row_ids, item_ids] = 1.0
    return matrix


def fit_ease(interactions: npt.ArrayLike, l2: float) -> FloatArray:
    """EASE's item-item weights B = I - P diag(1 / diag(P)), P = (XᵀX + λI)⁻¹, so that diag(B) = 0.

    Column j of B is the ridge regression of item j's column of X on the other items' columns, which is
    what makes the closed form exact (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019).

    Args:
        interactions: X, [U, N] user-item matrix (binary for implicit feedback).
        l2: λ > 0, the ridge penalty.

    Returns:
        [N, N] float32 B; a user's scores are `x_user @ B`.
    """
    x = np.asarray(interactions, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"interactions must be 2-D [U, N], got shape {x.shape}")
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0, got {l2}")
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def ease_scores(histories: npt.ArrayLike, weights: npt.ArrayLike) -> FloatArray:
    """[Q, N] scores `histories @ weights` of the queries' histories ([Q, N]) under EASE weights ([N, N])."""
    h, b = np.asarray(histories, dtype=np.float32), np.asarray(weights, dtype=np.float32)
    if h.ndim != 2 or b.shape != (h.shape[1], h.shape[1]):
        raise ValueError(f"need histories [Q, N] and weights [N, N], got shapes {h.shape}, {b.shape}")
    return h @ b
