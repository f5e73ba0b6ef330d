"""Contrastive (sampled-softmax) scoring of positives against sampled negatives.

Reads top to bottom like the computation it performs:
dot-product scores -> temperature -> logQ correction -> accidental-hit masking -> hard-negative mining.
logQ comes after the temperature so that the correction is not rescaled with it (as in TFRS).
The positive is always column 0, so the loss is categorical cross-entropy with label 0.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

# The most negative value that float16 represents with margin; masked logits stay finite under mixed precision.
FALSE_NEGATIVE_SCORE = -655.04


@keras.saving.register_keras_serializable(package="retrieval")
class ContrastiveScorer(keras.layers.Layer):
    """Scores each query against its positive item and a shared set of negative candidates.

    Logits are computed in float32 even under a mixed-precision policy.

    Args:
        temperature: logits are divided by this positive value.
        logq_correction: subtract the log sampling probability of every candidate (Yi et al. 2019), which
            removes the popularity bias of in-batch and popularity sampling. Requires `negative_log_q`.
        false_negative_score: logit given to a negative whose id equals the row's positive id
            (an accidental hit) and to invalid negative slots.
        hard_negatives: if set, keep only this many highest-scoring negatives per row.
        normalize: L2-normalise queries and candidates before the dot product (cosine similarity).
        return_negative_ids: also return the [batch_size, num_negatives] ids of the kept negatives.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        logq_correction: bool = False,
        false_negative_score: float = FALSE_NEGATIVE_SCORE,
        hard_negatives: int | None = None,
        normalize: bool = False,
        return_negative_ids: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if hard_negatives is not None and hard_negatives < 1:
            raise ValueError(f"hard_negatives must be >= 1 or None, got {hard_negatives}")
        self.temperature = float(temperature)
        self.logq_correction = bool(logq_correction)
        self.false_negative_score = float(false_negative_score)
        self.hard_negatives = None if hard_negatives is None else int(hard_negatives)
        self.normalize = bool(normalize)
        self.return_negative_ids = bool(return_negative_ids)

    def call(
        self,
        query: Any,
        positive: Any,
        positive_ids: Any,
        negative_embeddings: Any,
        negative_ids: Any,
        negative_log_q: Any = None,
        positive_log_q: Any = None,
        negative_valid: Any = None,
        negative_mask: Any = None,
    ) -> Any:
        """Computes the logits.

        Args:
            query: [batch_size, d] query embeddings.
            positive: [batch_size, d] embeddings of each row's positive item.
            positive_ids: [batch_size] integer ids of the positives.
            negative_embeddings: [num_negatives, d] candidate embeddings shared by all rows.
            negative_ids: [num_negatives] integer ids of the candidates.
            negative_log_q: [num_negatives] log sampling probabilities (needed for logQ correction).
            positive_log_q: [batch_size] log sampling probabilities of the positives; when given with
                logQ correction, the positive logit is corrected too.
            negative_valid: optional [num_negatives] booleans; invalid slots get `false_negative_score`.
            negative_mask: optional [batch_size, num_negatives] booleans; True gives that row's negative
                `false_negative_score` too (e.g. an item the row's user already interacted with).

        Returns:
            [batch_size, 1 + k] float32 logits with the positive in column 0 (k = num_negatives, or
            `hard_negatives`), and, if `return_negative_ids`, the [batch_size, k] ids of those negatives.
        """
        query = ops.cast(query, "float32")
        positive = ops.cast(positive, "float32")
        negatives = ops.cast(negative_embeddings, "float32")
        if self.normalize:
            query, positive, negatives = (_l2(query), _l2(positive), _l2(negatives))

        positive_logits = ops.sum(query * positive, axis=-1, keepdims=True)
        negative_logits = ops.matmul(query, ops.transpose(negatives))

        positive_logits = positive_logits / self.temperature
        negative_logits = negative_logits / self.temperature

        if self.logq_correction:
            if negative_log_q is None:
                raise ValueError(
                    "logq_correction=True needs the sampling probabilities of the negatives, but the "
                    "sampler provided none (negative_log_q is None)"
                )
            negative_logits = negative_logits - ops.expand_dims(ops.cast(negative_log_q, "float32"), 0)
            if positive_log_q is not None:
                positive_logits = positive_logits - ops.expand_dims(ops.cast(positive_log_q, "float32"), 1)

        masked = ops.equal(
            ops.expand_dims(ops.cast(positive_ids, "int64"), 1),
            ops.expand_dims(ops.cast(negative_ids, "int64"), 0),
        )
        if negative_valid is not None:
            masked = ops.logical_or(masked, ops.expand_dims(ops.logical_not(negative_valid), 0))
        if negative_mask is not None:
            masked = ops.logical_or(masked, ops.cast(negative_mask, "bool"))
        negative_logits = ops.where(masked, ops.full_like(negative_logits, self.false_negative_score), negative_logits)

        batch_negative_ids = ops.broadcast_to(
            ops.expand_dims(ops.cast(negative_ids, "int64"), 0), ops.shape(negative_logits)
        )
        if self.hard_negatives is not None:
            k = min(self.hard_negatives, negative_logits.shape[-1] or self.hard_negatives)
            negative_logits, top = ops.top_k(negative_logits, k=k, sorted=True)
            batch_negative_ids = ops.take_along_axis(batch_negative_ids, top, axis=1)

        logits = ops.concatenate([positive_logits, negative_logits], axis=1)
        if self.return_negative_ids:
            return logits, batch_negative_ids
        return logits

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "logq_correction": self.logq_correction,
            "false_negative_score": self.false_negative_score,
            "hard_negatives": self.hard_negatives,
            "normalize": self.normalize,
            "return_negative_ids": self.return_negative_ids,
        }


def contrastive_loss(logits: Any, sample_weight: Any = None) -> Any:
    """Categorical cross-entropy with the positive in column 0, averaged over the batch.

    Args:
        logits: [batch_size, 1 + k] from `ContrastiveScorer`.
        sample_weight: optional [batch_size] weights.

    Returns:
        Scalar float32 loss.
    """
    logits = ops.cast(logits, "float32")
    per_row = ops.logsumexp(logits, axis=1) - logits[:, 0]
    if sample_weight is None:
        return ops.mean(per_row)
    weight = ops.cast(sample_weight, "float32")
    return ops.sum(per_row * weight) / ops.maximum(ops.sum(weight), 1e-12)


def loss_logs(tracker: keras.metrics.Mean, strategy: tf.distribute.Strategy) -> dict[str, Any]:
    """A train or test step's logs: {"loss": the tracker's running mean}.

    Keras reduces multi-worker step outputs with reduce("MEAN", axis=0), which needs a batch axis, so under
    `MultiWorkerMirroredStrategy` the scalar becomes a one-element vector.
    """
    loss = tracker.result()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        loss = tf.reshape(loss, [1])
    return {"loss": loss}


def _l2(x: Any) -> Any:
    return x / ops.sqrt(ops.maximum(ops.sum(x * x, axis=-1, keepdims=True), 1e-12))
