"""tf.data input pipeline: shuffled (user row, item id) pairs, user features gathered in a parallel map."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from model.training.prepare import Examples


def training_dataset(
    examples: Examples,
    user_features: Mapping[str, np.ndarray],
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """Batches of (query features dict, item ids [B], weights [B]).

    Only int ids are shuffled and batched; the raw user features are gathered per batch from in-memory
    tables in a parallel map, and batches are prefetched so the model never waits on input.
    """
    tables = {name: tf.constant(values) for name, values in user_features.items()}
    data = tf.data.Dataset.from_tensor_slices((examples.users, examples.items, examples.weights))
    if shuffle:
        data = data.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size, drop_remainder=shuffle and len(examples) >= batch_size)

    def gather(
        users: tf.Tensor, items: tf.Tensor, weights: tf.Tensor
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        return {name: tf.gather(table, users) for name, table in tables.items()}, items, weights

    data = data.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return data.prefetch(tf.data.AUTOTUNE)


def user_feature_rows(user_features: Mapping[str, np.ndarray], users: np.ndarray) -> dict[str, np.ndarray]:
    """Raw query-tower inputs of the given user rows."""
    return {name: values[users] for name, values in user_features.items()}
