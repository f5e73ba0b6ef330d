"""Cross-batch negatives: a FIFO memory bank of item embeddings from recent batches (no gradient)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from model.samplers.base import ItemEncoder, NegativeSampler, NegativeSamples
from model.samplers.frequency import ItemFrequency


@keras.saving.register_keras_serializable(package="retrieval")
class CrossBatchSampler(NegativeSampler):
    """Serves the positives of the last `capacity` examples as negatives (cross-batch memory, XBM).

    The bank stores embeddings as they were when enqueued; no gradient flows into it. Slots not yet
    filled are returned with `valid=False` so the scorer masks them. Combine it with `InBatchSampler`
    through `MixedSampler` to add the bank to the in-batch candidates.

    Args:
        capacity: number of (id, embedding) entries kept, e.g. batch_size * number of batches.
        embedding_dim: size of the item embeddings.
        frequency: item frequency used as sampling probability of the bank's entries (for logQ);
            it is updated by whichever sampler owns it, not by the bank.
        warmup_steps: the bank serves no negatives during the first `warmup_steps` updates, while item
            embeddings still move fast and stale entries would be misleading (as in XBM, Wang et al. 2020).
    """

    def __init__(
        self,
        capacity: int,
        embedding_dim: int,
        frequency: ItemFrequency | None = None,
        warmup_steps: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if capacity < 1 or embedding_dim < 1:
            raise ValueError(f"capacity and embedding_dim must be >= 1, got {capacity} and {embedding_dim}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.warmup_steps = int(warmup_steps)
        self.capacity = int(capacity)
        self.embedding_dim = int(embedding_dim)
        self.frequency = frequency
        self.bank_embeddings = self.add_weight(
            shape=(self.capacity, self.embedding_dim),
            initializer="zeros",
            dtype="float32",
            trainable=False,
            aggregation="only_first_replica",
            name="bank_embeddings",
        )
        self.bank_ids = self.add_weight(
            shape=(self.capacity,),
            initializer=keras.initializers.Constant(-1),
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
            name="bank_ids",
        )
        self.enqueued = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
            name="enqueued",
        )
        self.updates = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
            name="updates",
        )

    @property
    def provides_probabilities(self) -> bool:
        return self.frequency is not None

    def sample(self, positive_ids: Any, positive_embeddings: Any, item_encoder: ItemEncoder) -> NegativeSamples:
        ids = ops.convert_to_tensor(self.bank_ids)
        valid = ops.logical_and(ops.greater_equal(ids, 0), ops.greater_equal(self.updates, self.warmup_steps))
        safe_ids = ops.maximum(ids, 0)
        embeddings = ops.stop_gradient(ops.convert_to_tensor(self.bank_embeddings))
        return NegativeSamples(ids=ids, embeddings=embeddings, log_q=self.log_q(safe_ids), valid=valid)

    def log_q(self, ids: Any) -> Any:
        return None if self.frequency is None else self.frequency.log_probability(ids)

    def update(self, positive_ids: Any, positive_embeddings: Any) -> None:
        """Enqueues the batch, overwriting the oldest entries; keeps the last `capacity` rows of the batch."""
        ids = ops.cast(ops.reshape(positive_ids, (-1,)), "int64")[-self.capacity :]
        embeddings = ops.stop_gradient(ops.cast(positive_embeddings, "float32"))[-self.capacity :]
        n = ops.shape(ids)[0]
        slots = ops.expand_dims(ops.mod(self.enqueued + ops.arange(n, dtype="int64"), self.capacity), 1)
        self.bank_embeddings.assign(ops.scatter_update(self.bank_embeddings, slots, embeddings))
        self.bank_ids.assign(ops.scatter_update(self.bank_ids, slots, ids))
        self.enqueued.assign(self.enqueued + ops.cast(n, "int64"))
        self.updates.assign(self.updates + 1)

    def contents(self) -> tuple[Any, Any]:
        """The bank in FIFO order, oldest first: ([m] ids, [m, d] embeddings), m = filled slots."""
        filled = int(min(int(self.enqueued.numpy()), self.capacity))
        start = int(self.enqueued.numpy()) % self.capacity if filled == self.capacity else 0
        order = [(start + i) % self.capacity for i in range(filled)]
        return ops.take(self.bank_ids, order, axis=0), ops.take(self.bank_embeddings, order, axis=0)

    def get_config(self) -> dict[str, Any]:
        config = {
            **super().get_config(),
            "capacity": self.capacity,
            "embedding_dim": self.embedding_dim,
            "warmup_steps": self.warmup_steps,
        }
        config["frequency"] = None if self.frequency is None else keras.saving.serialize_keras_object(self.frequency)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CrossBatchSampler:
        config = dict(config)
        if config.get("frequency") is not None:
            config["frequency"] = keras.saving.deserialize_keras_object(config["frequency"])
        return cls(**config)
