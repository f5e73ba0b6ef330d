"""Item sampling probabilities for logQ correction: counted from data, or estimated while streaming."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="retrieval")
class CountedFrequency(keras.layers.Layer):
    """Fixed item probabilities p_i = (count_i + smoothing) / sum(count + smoothing).

    Args:
        counts: [num_items] interaction counts per item id.
        smoothing: added to every count so that unseen items keep a finite log probability.
    """

    def __init__(self, counts: Sequence[float] | np.ndarray, smoothing: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        values = np.asarray(counts, dtype=np.float64)
        if values.ndim != 1 or values.size == 0 or np.any(values < 0) or not np.all(np.isfinite(values)):
            raise ValueError(f"counts must be a non-empty 1-D array of finite values >= 0, got shape {values.shape}")
        if smoothing < 0 or (smoothing == 0 and np.any(values == 0)):
            raise ValueError(f"smoothing must be >= 0 and > 0 when some counts are 0, got {smoothing}")
        self.counts = [float(c) for c in values]
        self.smoothing = float(smoothing)
        smoothed = values + self.smoothing
        self._log_p = ops.convert_to_tensor(np.log(smoothed / smoothed.sum()).astype(np.float32))

    @property
    def num_items(self) -> int:
        return len(self.counts)

    def log_probability(self, ids: Any) -> Any:
        """[n] log p of the given item ids."""
        return ops.take(self._log_p, ops.cast(ids, "int64"), axis=0)

    def probabilities(self) -> np.ndarray:
        return np.exp(np.asarray(self._log_p, dtype=np.float64))

    def update(self, ids: Any) -> None:
        """Counted frequencies are fixed."""

    def call(self, ids: Any) -> Any:
        return self.log_probability(ids)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "counts": self.counts, "smoothing": self.smoothing}


@keras.saving.register_keras_serializable(package="retrieval")
class StreamingFrequency(keras.layers.Layer):
    """Streaming estimate of how often each item appears in a batch (Yi et al., RecSys 2019, Algorithm 2).

    For each item it keeps the step it was last seen (A) and a moving average of the gap between
    sightings (B): B <- (1 - alpha) * B + alpha * (t - A). The probability that the item appears in a
    batch is estimated as 1 / B. Item ids here are dense row indices, so arrays are indexed directly
    instead of hashed.

    Args:
        num_items: size of the catalog.
        alpha: learning rate of the moving average.
        initial_gap: B before an item has been seen (a rarely sampled item).
    """

    def __init__(self, num_items: int, alpha: float = 0.01, initial_gap: float = 1000.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not initial_gap >= 1.0:
            raise ValueError(f"initial_gap must be >= 1, got {initial_gap}")
        self.num_items = int(num_items)
        self.alpha = float(alpha)
        self.initial_gap = float(initial_gap)
        self.step = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            aggregation="only_first_replica",
            name="step",
        )
        self.last_seen = self.add_weight(
            shape=(self.num_items,),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            aggregation="only_first_replica",
            name="last_seen",
        )
        self.gap = self.add_weight(
            shape=(self.num_items,),
            initializer=keras.initializers.Constant(self.initial_gap),
            dtype="float32",
            trainable=False,
            aggregation="only_first_replica",
            name="gap",
        )

    def log_probability(self, ids: Any) -> Any:
        """[n] log of the estimated per-batch probability 1 / B of the given ids (at most log 1)."""
        gap = ops.take(self.gap, ops.cast(ids, "int64"), axis=0)
        return -ops.log(ops.maximum(gap, 1.0))

    def update(self, ids: Any) -> None:
        """Records one batch of item ids (duplicates within a batch count once)."""
        ids = ops.cast(ops.reshape(ids, (-1,)), "int64")
        t = self.step + 1.0
        seen = ops.take(self.last_seen, ids, axis=0)
        old_gap = ops.take(self.gap, ids, axis=0)
        new_gap = ops.where(seen > 0, (1.0 - self.alpha) * old_gap + self.alpha * (t - seen), old_gap)
        indices = ops.expand_dims(ids, 1)
        self.gap.assign(ops.scatter_update(self.gap, indices, new_gap))
        self.last_seen.assign(ops.scatter_update(self.last_seen, indices, ops.full_like(new_gap, t)))
        self.step.assign(t)

    def call(self, ids: Any) -> Any:
        return self.log_probability(ids)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_items": self.num_items,
            "alpha": self.alpha,
            "initial_gap": self.initial_gap,
        }


ItemFrequency = CountedFrequency | StreamingFrequency
