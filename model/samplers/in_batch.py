"""In-batch negatives: the other positives of the batch."""

from __future__ import annotations

from typing import Any

import keras

from model.samplers.base import ItemEncoder, NegativeSampler, NegativeSamples
from model.samplers.frequency import ItemFrequency


@keras.saving.register_keras_serializable(package="retrieval")
class InBatchSampler(NegativeSampler):
    """Uses the batch's positives as negatives for every row.

    The row's own positive appears among the candidates too; the scorer masks it as an accidental hit.
    In-batch candidates are drawn with the items' interaction frequency, so logQ correction needs an
    item frequency: counted from data (`CountedFrequency`) or estimated while training
    (`StreamingFrequency`, updated after every step).

    Args:
        frequency: the item frequency that gives sampling probabilities; None disables logQ.
    """

    def __init__(self, frequency: ItemFrequency | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frequency = frequency

    @property
    def provides_probabilities(self) -> bool:
        return self.frequency is not None

    def sample(self, positive_ids: Any, positive_embeddings: Any, item_encoder: ItemEncoder) -> NegativeSamples:
        return NegativeSamples(ids=positive_ids, embeddings=positive_embeddings, log_q=self.log_q(positive_ids))

    def log_q(self, ids: Any) -> Any:
        return None if self.frequency is None else self.frequency.log_probability(ids)

    def update(self, positive_ids: Any, positive_embeddings: Any) -> None:
        if self.frequency is not None:
            self.frequency.update(positive_ids)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["frequency"] = None if self.frequency is None else keras.saving.serialize_keras_object(self.frequency)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> InBatchSampler:
        config = dict(config)
        if config.get("frequency") is not None:
            config["frequency"] = keras.saving.deserialize_keras_object(config["frequency"])
        return cls(**config)
