"""tf.data input pipeline: batches of shuffled example rows, their user features gathered in a parallel map.

Each epoch draws one permutation of the example rows (numpy, from a generator seeded once, so epochs differ
and runs repeat) and batches its row ids; a parallel map gathers users, items, weights and the users' raw
features for a whole batch at once. The element-wise `shuffle` of (user, item, weight) tuples this replaces
cost a tenth of the two-tower's step time on 2 cores (docs/benchmarks.md, "Performance").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

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
    """Batches of (query features dict, item ids [B], weights [B]); one pass over the examples per iteration.

    With `shuffle`, every iteration (epoch) visits the examples in a new order and drops the last partial
    batch (unless there are fewer examples than one batch); without it, the examples' own order, all of them.
    """
    tables = {name: tf.constant(values) for name, values in user_features.items()}
    users, items = tf.constant(examples.users), tf.constant(examples.items)
    weights = tf.constant(examples.weights)
    n = len(examples)
    if shuffle:
        rng = np.random.default_rng(seed)

        def permutations() -> Iterator[np.ndarray]:
            yield rng.permutation(n).astype(np.int64)

        order = tf.data.Dataset.from_generator(permutations, output_signature=tf.TensorSpec([n], tf.int64))
        # The batching stays a `batch` op, which tf.distribute knows how to split between replicas.
        batches = order.unbatch().batch(batch_size, drop_remainder=n >= batch_size)
        # The generator hides the length: state it, so Keras knows the epoch's steps (and does not warn).
        batches = batches.apply(tf.data.experimental.assert_cardinality(max(1, n // batch_size)))
        # Every worker draws the same permutations and keeps its share of the batches (no files to shard).
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        batches = batches.with_options(options)
    else:
        batches = tf.data.Dataset.range(n).batch(batch_size)

    def gather(rows: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        batch_users = tf.gather(users, rows)
        features = {name: tf.gather(table, batch_users) for name, table in tables.items()}
        return features, tf.gather(items, rows), tf.gather(weights, rows)

    return batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def user_feature_rows(user_features: Mapping[str, np.ndarray], users: np.ndarray) -> dict[str, np.ndarray]:
    """Raw query-tower inputs of the given user rows."""
    return {name: values[users] for name, values in user_features.items()}
