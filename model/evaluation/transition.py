"""First-order item-to-item transitions: the next item given the user's last one, smoothed towards popularity."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def _time_order(users: npt.ArrayLike, timestamps: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """Event order by user, then time; equal timestamps keep input order (as `leave_last_out`)."""
    user_arr, time_arr = np.asarray(users, dtype=np.int64), np.asarray(timestamps)
    if user_arr.shape != time_arr.shape or user_arr.ndim != 1:
        raise ValueError(f"users and timestamps must be 1-D of one length, got {user_arr.shape}, {time_arr.shape}")
    by_time = np.argsort(time_arr, kind="stable")
    order = by_time[np.argsort(user_arr[by_time], kind="stable")]
    return order, user_arr[order]


def consecutive_pairs(
    users: npt.ArrayLike, items: npt.ArrayLike, timestamps: npt.ArrayLike
) -> tuple[IntArray, IntArray]:
    """(previous item, next item) for each pair of consecutive events of one user, in time order."""
    order, grouped = _time_order(users, timestamps)
    ordered_items = np.asarray(items, dtype=np.int64)[order]
    same_user = grouped[1:] == grouped[:-1]
    return ordered_items[:-1][same_user], ordered_items[1:][same_user]


def last_items(users: npt.ArrayLike, items: npt.ArrayLike, timestamps: npt.ArrayLike, num_users: int) -> IntArray:
    """[num_users] each user's latest item (ties: the later input row), -1 for a user without events."""
    order, grouped = _time_order(users, timestamps)
    last = np.full(num_users, -1, dtype=np.int64)
    last[grouped] = np.asarray(items, dtype=np.int64)[order]  # later assignments win: the latest event
    return last


def transition_probabilities(
    previous: npt.ArrayLike, following: npt.ArrayLike, prior: npt.ArrayLike, smoothing: float
) -> FloatArray:
    """P(next = j | last = i) = (count(i → j) + s * prior[j]) / (count(i → ·) + s).

    An item never followed by anything backs off to the prior (e.g. the popularity distribution).

    Args:
        previous: [n] item of each transition's first event.
        following: [n] item of each transition's second event.
        prior: [N] distribution over items (non-negative, sums to 1).
        smoothing: s > 0, the weight of the prior, in transitions.

    Returns:
        [N, N] float32; row i is the next-item distribution after item i.
    """
    p = np.asarray(prior, dtype=np.float64)
    if p.ndim != 1 or p.min(initial=0.0) < 0 or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"prior must be a 1-D distribution, got shape {p.shape} and sum {p.sum()}")
    if not smoothing > 0:
        raise ValueError(f"smoothing must be > 0, got {smoothing}")
    counts = np.zeros((p.shape[0], p.shape[0]), dtype=np.float64)
    np.add.at(counts, (np.asarray(previous, dtype=np.int64), np.asarray(following, dtype=np.int64)), 1.0)
    probabilities = (counts + smoothing * p[None, :]) / (counts.sum(axis=1, keepdims=True) + smoothing)
    return probabilities.astype(np.float32)


def transition_scores(last: npt.ArrayLike, probabilities: npt.ArrayLike, prior: npt.ArrayLike) -> FloatArray:
    """[Q, N] next-item scores: the row of each query's last item, the prior where it has none (-1)."""
    last_arr = np.asarray(last, dtype=np.int64)
    table = np.asarray(probabilities, dtype=np.float32)
    scores = table[np.maximum(last_arr, 0)]
    scores[last_arr < 0] = np.asarray(prior, dtype=np.float32)
    return scores
