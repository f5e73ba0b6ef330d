"""The negative-sampler interface shared by every sampler."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import keras

ItemEncoder = Callable[[Any], Any]
"""Maps [n] integer item ids to [n, d] embeddings through the item tower (with gradient)."""


class NegativeSamples(NamedTuple):
    """Negative candidates shared by all rows of a batch.

    Attributes:
        ids: [num_negatives] int64 item ids.
        embeddings: [num_negatives, d] item embeddings.
        log_q: [num_negatives] float32 log sampling probabilities, or None if the sampler has none.
        valid: [num_negatives] booleans marking usable slots, or None when all are valid.
    """

    ids: Any
    embeddings: Any
    log_q: Any = None
    valid: Any = None


class NegativeSampler(keras.layers.Layer, metaclass=abc.ABCMeta):
    """Draws negatives for a batch of positives.

    Samplers are Keras layers so that their state (memory banks, frequency estimates) is tracked,
    checkpointed and restored with the model.
    """

    @property
    @abc.abstractmethod
    def provides_probabilities(self) -> bool:
        """Whether `sample` returns log sampling probabilities (required for logQ correction)."""

    @abc.abstractmethod
    def sample(self, positive_ids: Any, positive_embeddings: Any, item_encoder: ItemEncoder) -> NegativeSamples:
        """Returns the negatives for a batch.

        Args:
            positive_ids: [batch_size] int64 ids of the batch's positive items.
            positive_embeddings: [batch_size, d] their embeddings (with gradient).
            item_encoder: computes embeddings of other item ids through the item tower.
        """

    def log_q(self, ids: Any) -> Any:
        """[n] log probability that this sampler draws each of `ids`; None if it has no probabilities."""
        return None

    def update(self, positive_ids: Any, positive_embeddings: Any) -> None:
        """Called once after each training step with the batch's positives; stateless samplers ignore it."""

    def call(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} is used through sample(), not called as a layer")
