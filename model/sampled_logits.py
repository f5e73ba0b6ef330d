"""Logits of positives against sampled negatives: the one step every retrieval model trains with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from model.samplers import NegativeSampler
from model.scorer import ContrastiveScorer


def sampled_logits(
    query: Any,
    positive: Any,
    positive_ids: Any,
    sampler: NegativeSampler,
    scorer: ContrastiveScorer,
    encode_items: Callable[[Any], Any],
    seen_ids: Any = None,
) -> Any:
    """[n, 1 + k] logits (positive in column 0) of each query against its positive and the sampler's negatives.

    Args:
        query: [n, d] query embeddings.
        positive: [n, d] positive item embeddings.
        positive_ids: [n] int64 positive item ids (for accidental-hit masking and logQ).
        sampler: gives the negatives and, for logQ, the positives' sampling probabilities.
        scorer: turns embeddings into logits.
        encode_items: item ids -> embeddings through the item tower (for samplers that draw ids).
        seen_ids: optional [n, s] int64 item ids per row (-1 = none) that are never that row's negatives,
            masked like accidental hits (`seen_negatives`).
    """
    negatives = sampler.sample(positive_ids, positive, encode_items)
    logits = scorer(
        query,
        positive,
        positive_ids,
        negatives.embeddings,
        negatives.ids,
        negative_log_q=negatives.log_q,
        positive_log_q=sampler.log_q(positive_ids) if scorer.logq_correction else None,
        negative_valid=negatives.valid,
        negative_mask=None if seen_ids is None else seen_negatives(seen_ids, negatives.ids),
    )
    return logits[0] if isinstance(logits, tuple) else logits


def seen_negatives(seen_ids: Any, negative_ids: Any) -> Any:
    """[n, k] bool: whether negative j is among row i's `seen_ids` [n, s] (-1 pads); `negative_ids` is [k].

    One sorted search of the k * n (row, item) keys in the at most n * s seen ones, so the cost stays
    O(n k log(n s)) whatever the catalog size.
    """
    seen = tf.cast(seen_ids, tf.int64)
    negatives = tf.cast(negative_ids, tf.int64)
    rows = tf.range(tf.shape(seen, out_type=tf.int64)[0])[:, tf.newaxis]
    largest = tf.reduce_max(tf.concat([tf.reshape(seen, [-1]), negatives, tf.zeros([1], tf.int64)], axis=0))
    width = largest + 1
    keys = tf.sort(tf.boolean_mask(rows * width + seen, seen >= 0))
    keys = tf.concat([tf.constant([-1], tf.int64), keys], axis=0)  # a sentinel: never empty, never matched
    wanted = tf.reshape(rows * width + negatives[tf.newaxis, :], [-1])
    found = tf.searchsorted(keys, wanted, side="left", out_type=tf.int64)
    hit = tf.equal(tf.gather(keys, tf.minimum(found, tf.size(keys, out_type=tf.int64) - 1)), wanted)
    return tf.reshape(hit, [-1, tf.shape(negatives)[0]])
