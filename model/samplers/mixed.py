"""Several samplers at once: their candidates are concatenated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from model.samplers.base import ItemEncoder, NegativeSampler, NegativeSamples


@keras.saving.register_keras_serializable(package="retrieval")
class MixedSampler(NegativeSampler):
    """Concatenates the negatives of several samplers (e.g. in-batch + popularity, or in-batch + memory bank).

    It provides probabilities only when every component does. The positives' own log probability
    (`log_q`) is the first component's, the one whose candidates include the positives when it is
    `InBatchSampler`.

    Args:
        samplers: the component samplers, in candidate order.
    """

    def __init__(self, samplers: Sequence[NegativeSampler], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not samplers:
            raise ValueError("MixedSampler needs at least one sampler")
        self.samplers = list(samplers)

    @property
    def provides_probabilities(self) -> bool:
        return all(s.provides_probabilities for s in self.samplers)

    def sample(self, positive_ids: Any, positive_embeddings: Any, item_encoder: ItemEncoder) -> NegativeSamples:
        parts = [s.sample(positive_ids, positive_embeddings, item_encoder) for s in self.samplers]
        ids = ops.concatenate([ops.cast(p.ids, "int64") for p in parts], axis=0)
        embeddings = ops.concatenate([ops.cast(p.embeddings, "float32") for p in parts], axis=0)
        log_q = None
        if all(p.log_q is not None for p in parts):
            log_q = ops.concatenate([ops.cast(p.log_q, "float32") for p in parts], axis=0)
        valid = None
        if any(p.valid is not None for p in parts):
            valid = ops.concatenate(
                [p.valid if p.valid is not None else ops.ones_like(p.ids, dtype="bool") for p in parts], axis=0
            )
        return NegativeSamples(ids=ids, embeddings=embeddings, log_q=log_q, valid=valid)

    def log_q(self, ids: Any) -> Any:
        return self.samplers[0].log_q(ids)

    def update(self, positive_ids: Any, positive_embeddings: Any) -> None:
        for sampler in self.samplers:
            sampler.update(positive_ids, positive_embeddings)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "samplers": [keras.saving.serialize_keras_object(s) for s in self.samplers],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MixedSampler:
        config = dict(config)
        config["samplers"] = [keras.saving.deserialize_keras_object(s) for s in config["samplers"]]
        return cls(**config)
