"""Every catalog item as a negative: the full softmax, cheap when the catalog has a few thousand items."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from model.samplers.base import ItemEncoder, NegativeSampler, NegativeSamples


@keras.saving.register_keras_serializable(package="retrieval")
class FullCatalogSampler(NegativeSampler):
    """Returns all `num_items` items as the negatives of every batch (the row's own positive is masked).

    Every item is a candidate with probability 1, so the logQ correction is a constant shift of all
    logits, which changes nothing: `log_q` is uniform (-log num_items) only to satisfy the interface.

    Args:
        num_items: catalog size N; the negatives are ids [0, N).
    """

    def __init__(self, num_items: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.num_items = int(num_items)

    @property
    def provides_probabilities(self) -> bool:
        return True

    def sample(self, positive_ids: Any, positive_embeddings: Any, item_encoder: ItemEncoder) -> NegativeSamples:
        ids = ops.arange(self.num_items, dtype="int64")
        return NegativeSamples(ids=ids, embeddings=item_encoder(ids), log_q=self.log_q(ids))

    def log_q(self, ids: Any) -> Any:
        return ops.full(ops.shape(ids), -math.log(self.num_items), dtype="float32")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_items": self.num_items}
