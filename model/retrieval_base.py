"""The base of the retrieval models (`TwoTowerModel`, `SequentialRetrievalModel`): what they share."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from model.catalog import ItemCatalog
from model.inference import cached_function, catalog_embeddings
from model.samplers import NegativeSampler
from model.scorer import ContrastiveScorer


class RetrievalModel(keras.Model):
    """A Keras model trained with a negative sampler and a contrastive scorer to retrieve items of a catalog.

    It checks that the scorer's logQ correction gets its probabilities from the sampler, tracks the loss (the
    only metric), embeds the whole catalog, and skips Keras's symbolic build of an already built model, which
    fails under a multi-worker strategy. Subclasses set `catalog` and implement `encode_items`.

    Args:
        sampler: where negatives come from.
        scorer: turns embeddings into logits.

    Raises:
        ValueError: if the scorer needs logQ probabilities that the sampler cannot give.
    """

    catalog: ItemCatalog

    def __init__(self, sampler: NegativeSampler, scorer: ContrastiveScorer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if scorer.logq_correction and not sampler.provides_probabilities:
            raise ValueError(
                f"logq_correction=True but {type(sampler).__name__} provides no sampling probabilities; "
                "give it an item frequency or disable logQ correction"
            )
        self._loss_tracker = keras.metrics.Mean(name="loss")

    def encode_items(self, item_ids: Any, training: bool = False) -> Any:
        """[n, d] embeddings of the given internal item ids."""
        raise NotImplementedError(f"{type(self).__name__} must implement encode_items")

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        # Keras (3.15, TF backend) builds a model under a multi-worker strategy by averaging one distributed
        # batch with reduce("MEAN"), which fails on string features. The subclasses build every layer in their
        # constructor and the trainer builds the optimizer (`training.factory.compile_model`), so there is
        # nothing to build symbolically.
        if self.built and self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self._loss_tracker]

    def item_embeddings(self, batch_size: int = 4096) -> np.ndarray:
        """[num_items, d] float32 embeddings of the whole catalog, row i = item id i."""
        encode = cached_function(self, "items", lambda ids: self.encode_items(ids, training=False))
        return catalog_embeddings(encode, len(self.catalog), batch_size)
