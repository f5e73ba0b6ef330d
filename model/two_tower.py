"""The two-tower retrieval model: query tower, item tower, negative sampler and contrastive scorer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from model.catalog import ItemCatalog
from model.inference import cached_function
from model.retrieval_base import RetrievalModel
from model.sampled_logits import sampled_logits
from model.samplers import NegativeSampler
from model.scorer import ContrastiveScorer, contrastive_loss, loss_logs


class TwoTowerModel(RetrievalModel):
    """Trains a query tower and an item tower so that q · item is high for observed (query, item) pairs.

    Training data are `(query_features, item_ids[, sample_weight])` batches: a dict of raw query-tower
    inputs and the [batch_size] internal ids of the positive items. Item-tower inputs are looked up in
    the catalog, so positives, sampled negatives and full-catalog embeddings use one code path.

    Args:
        query_tower: maps query features to [batch_size, d].
        item_tower: maps item features to [batch_size, d].
        catalog: the items; row i of its features is item id i.
        sampler: where negatives come from.
        scorer: turns embeddings into logits.

    Raises:
        ValueError: if the scorer needs logQ probabilities that the sampler cannot give, or the towers'
            output sizes differ.
    """

    def __init__(
        self,
        query_tower: keras.Model,
        item_tower: keras.Model,
        catalog: ItemCatalog,
        sampler: NegativeSampler,
        scorer: ContrastiveScorer,
        **kwargs: Any,
    ) -> None:
        super().__init__(sampler, scorer, **kwargs)
        q_dim, i_dim = query_tower.outputs[0].shape[-1], item_tower.outputs[0].shape[-1]
        if q_dim != i_dim:
            raise ValueError(f"query tower outputs {q_dim} dims but item tower outputs {i_dim}")
        self.query_tower = query_tower
        self.item_tower = item_tower
        self.sampler = sampler
        self.scorer = scorer
        self.catalog = catalog
        self.embedding_dim = int(q_dim)
        self._item_table = {name: tf.constant(values) for name, values in catalog.features.items()}
        self.built = True  # every sub-layer is built: the towers are functional models

    def item_features(self, item_ids: Any) -> dict[str, Any]:
        """Raw item-tower inputs of the given internal ids."""
        ids = tf.cast(item_ids, tf.int64)
        return {name: tf.gather(table, ids) for name, table in self._item_table.items()}

    def encode_items(self, item_ids: Any, training: bool = False) -> Any:
        """[n, d] item embeddings of the given internal ids."""
        return self.item_tower(self.item_features(item_ids), training=training)

    def call(self, inputs: Mapping[str, Any], training: bool = False) -> Any:
        """Query embeddings [batch_size, d] for a dict of query features."""
        return self.query_tower(inputs, training=training)

    def compute_logits(self, query_features: Mapping[str, Any], item_ids: Any, training: bool) -> tuple[Any, Any]:
        """Logits [batch_size, 1 + k] (positive in column 0) and the positives' embeddings."""
        item_ids = tf.cast(item_ids, tf.int64)
        query = self.query_tower(query_features, training=training)
        positive = self.encode_items(item_ids, training=training)
        encode = lambda ids: self.encode_items(ids, training=training)  # noqa: E731
        logits = sampled_logits(query, positive, item_ids, self.sampler, self.scorer, encode)
        return logits, positive

    def train_step(self, data: Any) -> dict[str, Any]:
        query_features, item_ids, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            logits, positive = self.compute_logits(query_features, item_ids, training=True)
            loss = contrastive_loss(logits, sample_weight)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        self.sampler.update(tf.cast(item_ids, tf.int64), tf.stop_gradient(tf.cast(positive, tf.float32)))
        self._loss_tracker.update_state(loss)
        return loss_logs(self._loss_tracker, self.distribute_strategy)

    def test_step(self, data: Any) -> dict[str, Any]:
        query_features, item_ids, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logits, _ = self.compute_logits(query_features, item_ids, training=False)
        self._loss_tracker.update_state(contrastive_loss(logits, sample_weight))
        return loss_logs(self._loss_tracker, self.distribute_strategy)

    def query_embeddings(self, query_features: Mapping[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
        """[num_queries, d] float32 embeddings of the given raw query features."""
        n = len(next(iter(query_features.values())))
        encode = cached_function(self, "queries", lambda x: self.query_tower(x, training=False))
        parts = [
            encode({k: v[start : start + batch_size] for k, v in query_features.items()}).numpy()
            for start in range(0, n, batch_size)
        ]
        return np.concatenate(parts, axis=0).astype(np.float32)
