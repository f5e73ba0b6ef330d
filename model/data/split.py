"""Time-ordered train / validation / test splits of an interaction log, as index arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.data.tables import InteractionLog


@dataclass(frozen=True, eq=False)
class Split:
    """Disjoint positions into an `InteractionLog`, each part in ascending (file) order.

    Attributes:
        train: int64 indices [n_train].
        validation: int64 indices [n_validation].
        test: int64 indices [n_test].
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def describe(self) -> dict[str, int]:
        """Counts of each part and their total."""
        counts = {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}
        return {**counts, "total": sum(counts.values())}


def _split_from_masks(train: np.ndarray, validation: np.ndarray, test: np.ndarray) -> Split:
    return Split(
        train=np.flatnonzero(train).astype(np.int64),
        validation=np.flatnonzero(validation).astype(np.int64),
        test=np.flatnonzero(test).astype(np.int64),
    )


def leave_last_out(log: InteractionLog, *, min_interactions: int = 3) -> Split:
    """Per user, the latest event is test, the one before is validation, the rest is train.

    Events are ordered by timestamp with a stable sort, so equal timestamps keep file order (the later
    row in the file counts as the later event). Users with fewer than `min_interactions` events go
    entirely to train.

    Args:
        log: the interactions.
        min_interactions: smallest number of events for a user to contribute test and validation (>= 2).

    Returns:
        The split; every index of the log appears in exactly one part.
    """
    if min_interactions < 2:
        raise ValueError(f"min_interactions must be at least 2 (one test + one validation), got {min_interactions}")
    n = len(log)
    if n == 0:
        empty = np.zeros(0, dtype=bool)
        return _split_from_masks(empty, empty, empty)
    _, user_codes = np.unique(log.user_ids, return_inverse=True)
    by_time = np.argsort(log.timestamps, kind="stable")
    order = by_time[np.argsort(user_codes[by_time], kind="stable")]
    grouped = user_codes[order]
    starts = np.flatnonzero(np.concatenate(([True], grouped[1:] != grouped[:-1])))
    sizes = np.diff(np.append(starts, n))
    rank_from_end = np.repeat(starts + sizes, sizes) - np.arange(n) - 1
    eligible = np.repeat(sizes >= min_interactions, sizes)
    test = np.zeros(n, dtype=bool)
    validation = np.zeros(n, dtype=bool)
    test[order] = eligible & (rank_from_end == 0)
    validation[order] = eligible & (rank_from_end == 1)
    return _split_from_masks(~(test | validation), validation, test)


def global_time_split(log: InteractionLog, *, validation_cutoff: float, test_cutoff: float) -> Split:
    """Splits by absolute time: t < validation_cutoff -> train, t < test_cutoff -> validation, else test.

    Args:
        log: the interactions.
        validation_cutoff: first time that belongs to validation.
        test_cutoff: first time that belongs to test; must be greater than `validation_cutoff`.

    Returns:
        The split; every index of the log appears in exactly one part.
    """
    if math.isnan(validation_cutoff) or math.isnan(test_cutoff) or not validation_cutoff < test_cutoff:
        raise ValueError(f"cutoffs must increase: validation_cutoff={validation_cutoff} < test_cutoff={test_cutoff}")
    times = log.timestamps
    train = times < validation_cutoff
    validation = ~train & (times < test_cutoff)
    return _split_from_masks(train, validation, ~(train | validation))
