"""tf.data input of sequential training: shuffled windows, user side features gathered per batch."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from model.sequence.retrieval_model import PADDING_MASK, TOKENS
from model.sequence.sequences import Sequences


def sequence_dataset(
    sequences: Sequences,
    user_features: Mapping[str, np.ndarray] | None = None,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """Batches of feature dicts {TOKENS: [B, L], PADDING_MASK: [B, L], **user features of each window's user}.

    Args:
        sequences: the training windows.
        user_features: raw context-tower inputs per user row ([U] or [U, n]), or None.
        batch_size: windows per batch.
        seed: shuffling seed.
        shuffle: shuffle every epoch and drop the last short batch.
    """
    data = tf.data.Dataset.from_tensor_slices((sequences.tokens, sequences.padding_mask, sequences.user_rows))
    if shuffle:
        data = data.shuffle(len(sequences), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size, drop_remainder=shuffle and len(sequences) >= batch_size)
    return with_user_features(data, user_features).prefetch(tf.data.AUTOTUNE)


def with_user_features(windows: tf.data.Dataset, user_features: Mapping[str, np.ndarray] | None) -> tf.data.Dataset:
    """Batches of (tokens, padding mask, user rows) mapped to the model's feature dicts, the users' raw side
    features gathered per batch."""
    reserved = {TOKENS, PADDING_MASK} & set(user_features or {})
    if reserved:
        raise ValueError(f"user feature names {sorted(reserved)} are reserved for the sequence inputs")
    tables = {name: tf.constant(values) for name, values in (user_features or {}).items()}

    def gather(tokens: tf.Tensor, mask: tf.Tensor, users: tf.Tensor) -> dict[str, tf.Tensor]:
        return {TOKENS: tokens, PADDING_MASK: mask, **{name: tf.gather(t, users) for name, t in tables.items()}}

    return windows.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
