"""The sequential retrieval model: a sequence query tower trained with the contrastive scorer over all targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from model.catalog import ItemCatalog
from model.inference import cached_function
from model.retrieval_base import RetrievalModel
from model.sampled_logits import sampled_logits
from model.samplers import NegativeSampler
from model.scorer import ContrastiveScorer, contrastive_loss, loss_logs
from model.sequence.masking import gather_positions
from model.sequence.objectives import SequenceObjective
from model.sequence.sequences import Padding
from model.sequence.vocabulary import ITEM_OFFSET, SequenceVocabulary

TOKENS = "tokens"
PADDING_MASK = "padding_mask"


class SequentialRetrievalModel(RetrievalModel):
    """Trains a sequence encoder so that its output at a target position scores that position's item high.

    Batches are `(features[, sample_weight])`: `features[TOKENS]` [B, W] int tokens and
    `features[PADDING_MASK]` [B, W] bool (see `build_sequences`; W = `training_window_length`, which is
    L + 1 for the causal objective), plus the raw inputs of `context_tower` (user side features) when there
    is one; `sample_weight` is per window [B]. Queries (`call`, `query_embeddings`) take [B, L]. The
    objective picks the target positions (random masks, or every next item); all of them, from all rows,
    are flattened into the batch dimension of the scorer, so in-batch negatives, logQ correction and
    false-negative masking work exactly as in the two-tower model.

    Args:
        item_embedding: token embedding table with `SequenceVocabulary(len(catalog)).size` rows, the
            encoder's input; without `item_tower` it is also the item tower (weight tying).
        encoder: `TransformerSequenceEncoder` or `HistoryAverageEncoder` (anything with the call signature
            (embeddings [B, L, d], padding_mask [B, L], context [B, c] | None) -> [B, L, d_out]).
        catalog: the items; row i is item id i.
        sampler: where negatives come from.
        scorer: turns embeddings into logits.
        objective: `MaskedItemObjective` or `CausalObjective`.
        max_length: window length L of the training sequences and of served histories.
        item_tower: a separate item tower (raw catalog features -> [n, d]) instead of weight tying.
        mask_seen_negatives: the items of a target's own window are never its negatives (masked like
            accidental hits): the user already interacted with them, and evaluation and serving exclude them.
        context_tower: optional model of raw user side features -> [B, c], fed to the encoder's head.
        padding: layout of the windows.
        l2_normalize: L2-normalise query and item embeddings (cosine similarity).
        max_targets: at most this many target positions per batch are scored (a random subset), which
            bounds the [targets, targets] logits of in-batch negatives; None scores all.
        seed: seed of the masking and target subsampling.
    """

    def __init__(
        self,
        item_embedding: keras.layers.Embedding,
        encoder: keras.layers.Layer,
        catalog: ItemCatalog,
        sampler: NegativeSampler,
        scorer: ContrastiveScorer,
        objective: SequenceObjective,
        *,
        max_length: int,
        item_tower: keras.Model | None = None,
        mask_seen_negatives: bool = False,
        context_tower: keras.Model | None = None,
        padding: Padding = Padding.LEFT,
        l2_normalize: bool = False,
        max_targets: int | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(sampler, scorer, **kwargs)
        self.vocabulary = SequenceVocabulary(len(catalog))
        if item_embedding.input_dim != self.vocabulary.size:
            raise ValueError(
                f"item_embedding has {item_embedding.input_dim} rows, expected {self.vocabulary.size} "
                f"({len(catalog)} items + padding, OOV and mask tokens)"
            )
        if objective.needs_causal_encoder and not getattr(encoder, "causal", False):
            raise ValueError(f"{type(objective).__name__} needs a causal encoder: the targets are later inputs")
        if max_length < 1 or (max_targets is not None and max_targets < 1):
            raise ValueError(f"max_length and max_targets must be >= 1, got {max_length} and {max_targets}")
        self.item_embedding, self.encoder, self.catalog = item_embedding, encoder, catalog
        self.sampler, self.scorer, self.objective = sampler, scorer, objective
        self.item_tower, self.context_tower = item_tower, context_tower
        self.max_length, self.padding, self.l2_normalize = int(max_length), padding, bool(l2_normalize)
        self.max_targets, self.mask_seen_negatives = max_targets, bool(mask_seen_negatives)
        # float32 under mixed precision too: in float16 the normalisation's epsilon overflows its reciprocal
        self.normalization = keras.layers.UnitNormalization(axis=-1, name="query_l2_normalize", dtype="float32")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._item_table = {name: tf.constant(values) for name, values in catalog.features.items()}
        self.embedding_dim = self._build_and_check()
        self.built = True

    def _build_and_check(self) -> int:
        """Builds every layer on a dummy batch; returns d after checking that query and item sizes agree."""
        tokens = np.full((1, self.max_length), ITEM_OFFSET, np.int64)
        context = None
        if self.context_tower is not None:
            context = ops.zeros((1, int(self.context_tower.outputs[0].shape[-1])))
        states = self.encoder(self.item_embedding(tokens), np.ones((1, self.max_length), bool), context)
        q_dim = int(states.shape[-1])
        i_dim = int(self.encode_items(np.zeros((1,), np.int64)).shape[-1])
        if q_dim != i_dim:
            raise ValueError(f"the sequence encoder outputs {q_dim} dims but the items have {i_dim}")
        self.normalization.build((None, q_dim))
        return q_dim

    @property
    def mask_token(self) -> int:
        return self.vocabulary.mask_token

    @property
    def training_window_length(self) -> int:
        """Columns W of a training window (the objective's; the encoder's inputs are `max_length` long)."""
        return self.objective.window_length(self.max_length)

    def encode_items(self, item_ids: Any, training: bool = False) -> Any:
        """[n, d] embeddings of internal item ids: rows of the shared table, or the separate item tower."""
        ids = tf.cast(item_ids, tf.int64)
        if self.item_tower is None:
            items = self.item_embedding(ids + ITEM_OFFSET)
        else:
            features = {name: tf.gather(table, ids) for name, table in self._item_table.items()}
            items = self.item_tower(features, training=training)
        return self.normalization(items) if self.l2_normalize else items

    def _context(self, features: Mapping[str, Any], training: bool) -> Any:
        if self.context_tower is None:
            return None
        return self.context_tower({t.name: features[t.name] for t in self.context_tower.inputs}, training=training)

    def sequence_states(self, inputs: Any, padding_mask: Any, features: Mapping[str, Any], training: bool) -> Any:
        """[B, L, d] encoder outputs for token inputs (before normalisation)."""
        embeddings = self.item_embedding(inputs)
        return self.encoder(embeddings, padding_mask, self._context(features, training), training=training)

    def call(self, features: Mapping[str, Any], training: bool = False) -> Any:
        """[B, d] next-item query embeddings of the histories in `features` (the objective's inference rule)."""
        query = self.objective.inference(
            features[TOKENS], features[PADDING_MASK], mask_token=self.mask_token, padding=self.padding
        )
        states = self.sequence_states(query.inputs, query.padding_mask, features, training)
        embedding = gather_positions(states, query.positions)
        return self.normalization(embedding) if self.l2_normalize else embedding

    def _targets(self, features: Mapping[str, Any], sample_weight: Any, training: bool) -> tuple[Any, ...]:
        """Query embeddings [M, d], internal target ids [M], weights [M] (or None) of the scored positions,
        and, with `mask_seen_negatives`, the internal ids [M, W] of each one's window items (-1 elsewhere)."""
        masked = self.objective.targets(
            features[TOKENS], features[PADDING_MASK], mask_token=self.mask_token, seed=self.seed_generator
        )
        states = self.sequence_states(masked.inputs, masked.padding_mask, features, training)
        length = tf.shape(masked.targets, out_type=tf.int64)[1]
        scored = tf.logical_and(masked.target_mask, masked.targets >= ITEM_OFFSET)
        index = tf.where(tf.reshape(scored, [-1]))[:, 0]
        if self.max_targets is not None:
            keys = keras.random.uniform(tf.shape(index), seed=self.seed_generator)
            keep = tf.math.top_k(keys, k=tf.minimum(self.max_targets, tf.size(index))).indices
            index = tf.gather(index, tf.sort(keep))
        query = tf.gather(tf.reshape(states, [-1, tf.shape(states)[-1]]), index)
        if self.l2_normalize:
            query = self.normalization(query)
        targets = tf.gather(tf.reshape(tf.cast(masked.targets, tf.int64), [-1]), index) - ITEM_OFFSET
        weights = None if sample_weight is None else tf.gather(tf.reshape(sample_weight, [-1]), index // length)
        if not self.mask_seen_negatives:
            return query, targets, weights, None
        window = tf.cast(features[TOKENS], tf.int64) - ITEM_OFFSET
        window = tf.where(tf.logical_and(window >= 0, window < len(self.catalog)), window, -1)
        return query, targets, weights, tf.gather(window, index // length)

    def compute_logits(
        self, features: Mapping[str, Any], sample_weight: Any, training: bool
    ) -> tuple[Any, Any, Any, Any]:
        """Logits [M, 1 + k] (positive in column 0), positives [M, d], target ids [M] and weights [M]."""
        query, targets, weights, seen = self._targets(features, sample_weight, training)
        positive = self.encode_items(targets, training=training)
        encode = lambda ids: self.encode_items(ids, training=training)  # noqa: E731
        logits = sampled_logits(query, positive, targets, self.sampler, self.scorer, encode, seen_ids=seen)
        return logits, positive, targets, weights

    def train_step(self, data: Any) -> dict[str, Any]:
        features, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            logits, positive, targets, weights = self.compute_logits(features, sample_weight, training=True)
            loss = contrastive_loss(logits, weights)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        self.sampler.update(targets, tf.stop_gradient(tf.cast(positive, tf.float32)))
        self._loss_tracker.update_state(loss)
        return loss_logs(self._loss_tracker, self.distribute_strategy)

    def test_step(self, data: Any) -> dict[str, Any]:
        features, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logits, _, _, weights = self.compute_logits(features, sample_weight, training=False)
        self._loss_tracker.update_state(contrastive_loss(logits, weights))
        return loss_logs(self._loss_tracker, self.distribute_strategy)

    def query_embeddings(
        self,
        tokens: np.ndarray,
        padding_mask: np.ndarray,
        context_features: Mapping[str, np.ndarray] | None = None,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """[n, d] float32 next-item query embeddings of histories laid out like the training windows."""
        encode = cached_function(self, "queries", lambda x: self(x, training=False))
        features = {TOKENS: np.asarray(tokens, np.int64), PADDING_MASK: np.asarray(padding_mask, bool)}
        features.update(context_features or {})
        parts = [
            encode({k: v[start : start + batch_size] for k, v in features.items()}).numpy()
            for start in range(0, len(features[TOKENS]), batch_size)
        ]
        return np.concatenate(parts, axis=0).astype(np.float32)
