"""Builds the model objects a run configuration describes (the one place that maps config names to objects)."""

from __future__ import annotations

import keras
import numpy as np

from model.features import EmbeddingDimRule
from model.samplers import (
    CountedFrequency,
    CrossBatchSampler,
    InBatchSampler,
    MixedSampler,
    NegativeSampler,
    PopularitySampler,
    StreamingFrequency,
)
from model.scorer import ContrastiveScorer
from model.training.config import ModelConfig, TrainConfig
from model.training.prepare import TowerShape

SAMPLERS = ("in-batch", "mixed", "cross-batch")


def tower_shape(config: ModelConfig) -> TowerShape:
    if config.similarity not in ("cosine", "dot"):
        raise ValueError(f"model.similarity must be 'cosine' or 'dot', got {config.similarity!r}")
    rule = EmbeddingDimRule(
        default_dim=config.feature_dim,
        multiplier=config.feature_dim_multiplier if config.feature_dim_multiplier > 0 else None,
    )
    return TowerShape(
        hidden_units=config.hidden_units,
        output_dim=config.embedding_dim,
        dropout=config.dropout,
        l2_normalize=config.similarity == "cosine",
        embedding_rule=rule,
    )


LR_SCHEDULES = ("constant", "cosine")


def learning_rate(train: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Adam's learning rate: `train.learning_rate`, or its cosine decay over `train.decay_epochs` epochs."""
    if train.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"train.lr_schedule must be one of {LR_SCHEDULES}, got {train.lr_schedule!r}")
    if train.decay_epochs < 0 or steps_per_epoch < 1:
        raise ValueError(
            f"need train.decay_epochs >= 0 and steps_per_epoch >= 1, got {train.decay_epochs} and {steps_per_epoch}"
        )
    if train.lr_schedule == "constant":
        return train.learning_rate
    epochs = train.decay_epochs or train.epochs
    return keras.optimizers.schedules.CosineDecay(train.learning_rate, decay_steps=max(1, epochs * steps_per_epoch))


def compile_model(model: keras.Model, train: TrainConfig, num_examples: int) -> None:
    """Compiles `model` with Adam (`learning_rate`'s schedule for `num_examples` per epoch, or the epoch of
    `train.steps_per_epoch` steps when that is fewer), builds its variables."""
    if train.steps_per_epoch > 0:  # an epoch of fewer steps: the learning-rate schedule counts those
        num_examples = min(num_examples, train.steps_per_epoch * train.batch_size)
    steps = max(1, -(-num_examples // train.batch_size))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate(train, steps)), jit_compile=train.jit_compile)
    model.optimizer.build(model.trainable_variables)


def make_sampler(config: ModelConfig, train: TrainConfig, item_counts: np.ndarray) -> NegativeSampler:
    """The negative sampler named by `config.sampler`, with item frequencies for logQ."""
    if config.sampler not in SAMPLERS:
        raise ValueError(f"model.sampler must be one of {SAMPLERS}, got {config.sampler!r}")
    counts = np.asarray(item_counts, dtype=np.float64)
    frequency = StreamingFrequency(len(counts)) if config.streaming_frequency else CountedFrequency(counts)
    in_batch = InBatchSampler(frequency)
    if config.sampler == "in-batch":
        return in_batch
    if config.sampler == "mixed":
        popularity = PopularitySampler.from_counts(counts, config.popularity_samples, seed=train.seed)
        return MixedSampler([in_batch, popularity])
    bank = CrossBatchSampler(
        capacity=config.memory_batches * train.batch_size,
        embedding_dim=config.embedding_dim,
        frequency=frequency,
        warmup_steps=config.memory_warmup_steps,
    )
    return MixedSampler([in_batch, bank])


def make_scorer(config: ModelConfig) -> ContrastiveScorer:
    return ContrastiveScorer(
        temperature=config.temperature,
        logq_correction=config.logq_correction,
        hard_negatives=config.hard_negatives or None,
        normalize=False,  # cosine towers already L2-normalise their outputs
    )
