"""Training the sequential query tower: sequences from the log, the model, training and test.

The split and the prepared data (catalog, user rows, exclusions) are the two-tower's, so both models are
evaluated on the same queries with the same exclusions. What differs is the query: per validation pair the
user's training events (the latest `max_length` of them) and per test pair the training and validation
events, in time order; the training windows (of the objective's `window_length`) are cut from the training
events only.

From a prepared log (data.prepared or data.streaming), the windows stream from its sequence shards
(`model.training.sequence_stream`) and the histories are read for the sampled query users only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from model.bundle.reserved import USER_ID_FEATURE
from model.data import InteractionLog, Split
from model.data.prepared_log import PreparedLog
from model.evaluation import evaluate_embeddings, full_report
from model.features import TowerSpec
from model.sequence.catalog_sampler import FullCatalogSampler
from model.sequence.history_average import HistoryAverageEncoder
from model.sequence.objectives import CausalObjective, MaskedItemObjective, SequenceObjective
from model.sequence.pipeline import sequence_dataset
from model.sequence.retrieval_model import SequentialRetrievalModel
from model.sequence.sequences import Padding, Sequences, build_sequences
from model.sequence.serving import build_query_model, query_spec
from model.sequence.transformer import TransformerSequenceEncoder
from model.sequence.vocabulary import SequenceVocabulary
from model.towers import build_tower
from model.training.config import ModelConfig, SequenceConfig, TrainConfig
from model.training.factory import compile_model, make_sampler, make_scorer
from model.training.prepare import PreparedData
from model.training.sequence_stream import SequenceShards, histories, sequence_shards, window_dataset
from model.training.shard_pipeline import ShardPlan, distributed_input
from model.training.trainer import TrainedRun, train

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SequenceData:
    """Token windows of a split, aligned with a `PreparedData`.

    Attributes:
        train: training windows, cut from the training events (in memory, or streamed from a prepared log).
        validation: one history per validation pair (the user's training events).
        test: one history per test pair (the user's training and validation events).
        context_spec: the user side features fed to the encoder's head, or None.
        context_values: raw values of those features per user row (empty without context).
    """

    train: Sequences | SequenceShards
    validation: Sequences
    test: Sequences
    context_spec: TowerSpec | None
    context_values: dict[str, np.ndarray]

    def context(self, users: np.ndarray) -> dict[str, np.ndarray]:
        """Raw context features of the given user rows."""
        return {name: values[users] for name, values in self.context_values.items()}


def check_config(config: SequenceConfig) -> None:
    """Rejects unknown names and impossible sizes, naming the field and the value."""
    choices = {"encoder": ("transformer", "average"), "objective": ("masked", "causal"), "padding": ("left", "right")}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"sequence.{name} must be one of {allowed}, got {getattr(config, name)!r}")
    if config.max_length < 1 or config.stride < 0 or config.max_targets < 0:
        raise ValueError(
            f"need sequence.max_length >= 1, stride >= 0, max_targets >= 0; got {config.max_length}, "
            f"{config.stride}, {config.max_targets}"
        )


def make_objective(config: SequenceConfig) -> SequenceObjective:
    """The training objective a configuration names."""
    return CausalObjective() if config.objective == "causal" else MaskedItemObjective(config.mask_probability)


def sequence_data(log: InteractionLog, split: Split, data: PreparedData, config: SequenceConfig) -> SequenceData:
    """Training windows and validation/test histories of `split`, in `data`'s user rows and item ids."""
    users = np.searchsorted(data.user_ids, log.user_ids)
    items = np.searchsorted(data.catalog.external_ids, log.item_ids)

    def latest(indices: np.ndarray, stride: int | None = None, max_length: int = config.max_length) -> Sequences:
        return build_sequences(
            users[indices],
            items[indices],
            log.timestamps[indices],
            num_users=len(data.user_ids),
            max_length=max_length,
            padding=Padding(config.padding),
            stride=stride,
        )

    before_test = np.concatenate([split.train, split.validation])
    context_spec, context_values = _context(data, config)
    return SequenceData(
        train=latest(
            split.train,
            stride=config.stride or config.max_length,
            max_length=make_objective(config).window_length(config.max_length),
        ),
        validation=latest(split.train).take(data.validation.users),
        test=latest(before_test).take(data.test.users),
        context_spec=context_spec,
        context_values=context_values,
    )


def streamed_sequence_data(prepared: PreparedLog, data: PreparedData, config: SequenceConfig) -> SequenceData:
    """`sequence_data` of a prepared log (read with `prepare_streaming` into `data`): the training windows stay
    in its sequence shards; the histories of `data`'s sampled validation and test users are read now.

    Raises:
        DataError: the log was prepared without sequences (naming data.prepared).
    """
    padding = Padding(config.padding)
    context_spec, context_values = _context(data, config)
    return SequenceData(
        train=sequence_shards(
            prepared,
            window_length=make_objective(config).window_length(config.max_length),
            stride=config.stride or config.max_length,
            padding=padding,
        ),
        validation=histories(
            prepared, data.validation.users, with_validation=False, max_length=config.max_length, padding=padding
        ),
        test=histories(prepared, data.test.users, with_validation=True, max_length=config.max_length, padding=padding),
        context_spec=context_spec,
        context_values=context_values,
    )


def _context(data: PreparedData, config: SequenceConfig) -> tuple[TowerSpec | None, dict[str, np.ndarray]]:
    """The user side features the encoder's head reads (`sequence.user_features`), and their values per user."""
    if not config.user_features:
        return None, {}
    features = tuple(f for f in data.query_spec.features if f.name != USER_ID_FEATURE)
    if not features:
        return None, {}
    spec = TowerSpec("user", features, hidden_units=(), output_dim=32, embedding_rule=data.query_spec.embedding_rule)
    return spec, {f.name: data.user_features[f.name] for f in features}


def _encoder(config: SequenceConfig, dim: int, context: bool) -> keras.layers.Layer:
    output_dim = dim if context or config.head_units else None
    if config.encoder == "average":
        return HistoryAverageEncoder(config.last_n, config.head_units, output_dim, config.dropout, name="encoder")
    return TransformerSequenceEncoder(
        config.max_length,
        dim,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        ff_dim=config.ff_dim or None,
        dropout=config.dropout,
        causal=config.objective == "causal",
        hidden_units=config.head_units,
        output_dim=output_dim,
        name="encoder",
    )


def build_sequential_model(
    data: PreparedData,
    sequences: SequenceData,
    model_config: ModelConfig,
    config: SequenceConfig,
    train_config: TrainConfig,
) -> SequentialRetrievalModel:
    """The sequential model a configuration describes, compiled with Adam."""
    check_config(config)
    dim = model_config.embedding_dim
    objective = make_objective(config)
    sampler = (
        FullCatalogSampler(len(data.catalog))
        if config.full_softmax
        else make_sampler(model_config, train_config, data.catalog.popularity)
    )
    item_tower = None
    if not config.tied_item_embeddings:
        item_tower = build_tower(dataclasses.replace(data.item_spec, output_dim=dim, l2_normalize=False))
    context = sequences.context_spec
    model = SequentialRetrievalModel(
        keras.layers.Embedding(SequenceVocabulary(len(data.catalog)).size, dim, name="item_embedding"),
        _encoder(config, dim, context is not None),
        data.catalog,
        sampler,
        make_scorer(model_config),
        objective,
        max_length=config.max_length,
        item_tower=item_tower,
        context_tower=build_tower(context) if context is not None else None,
        padding=Padding(config.padding),
        l2_normalize=model_config.similarity == "cosine",
        max_targets=config.max_targets or None,
        mask_seen_negatives=config.mask_seen_negatives,
        seed=train_config.seed,
    )
    compile_model(model, train_config, len(sequences.train))
    return model


def query_embeddings(model: SequentialRetrievalModel, histories: Sequences, sequences: SequenceData) -> np.ndarray:
    """[len(histories), d] next-item query embeddings, with the users' context features."""
    context = sequences.context(histories.user_rows) if sequences.context_values else None
    return model.query_embeddings(histories.tokens, histories.padding_mask, context)


def validation_metrics(
    model: SequentialRetrievalModel, data: PreparedData, sequences: SequenceData, ks: tuple[int, ...], seed: int
) -> dict[str, float]:
    """Full-catalog metrics of the validation pairs, excluding every item the user saw before."""
    queries = query_embeddings(model, sequences.validation, sequences)
    return evaluate_embeddings(
        queries, model.item_embeddings(), data.validation.items, ks=ks, exclude=data.validation_exclusions, seed=seed
    )


def train_sequential(
    sequences: SequenceData,
    data: PreparedData,
    model_config: ModelConfig,
    config: SequenceConfig,
    train_config: TrainConfig,
    strategy: tf.distribute.Strategy,
    run_dir: Path,
    *,
    resume: bool = False,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainedRun:
    """Trains, validates every epoch (early stopping, checkpoints, resume as the two-tower) and tests once.

    `sequences` comes from `sequence_data` (a log in memory) or `streamed_sequence_data` (a prepared log).
    """
    logger.info(
        "sequences windows=%d positions=%d validation=%d test=%d",
        len(sequences.train),
        sequences.train.positions,
        len(sequences.validation),
        len(sequences.test),
    )
    with strategy.scope():
        model = build_sequential_model(data, sequences, model_config, config, train_config)
    dataset, num_examples, steps_per_epoch = _training_input(sequences, train_config, strategy)
    started = time.perf_counter()
    state = train(
        model,
        data,
        train_config,
        run_dir,
        resume=resume,
        extra_callbacks=callbacks,
        dataset=dataset,
        num_examples=num_examples,
        steps_per_epoch=steps_per_epoch,
        validate=(
            (lambda m: validation_metrics(m, data, sequences, (train_config.eval_k,), train_config.seed))
            if len(data.validation)
            else None  # a refit on train + validation: no selection, the last epoch is kept
        ),
    )
    seconds = time.perf_counter() - started
    item_embeddings = model.item_embeddings()
    test = full_report(
        query_embeddings(model, sequences.test, sequences),
        item_embeddings,
        data.test.items,
        data.catalog.popularity,
        data.test_exclusions,
        seed=train_config.seed,
    )
    return TrainedRun(
        model=model,
        state=state,
        seconds=seconds,
        num_examples=num_examples,
        test=test,
        item_embeddings=item_embeddings,
        query_tower=build_query_model(model),
        query_spec=query_spec(model, sequences.context_spec),
    )


def _training_input(
    sequences: SequenceData, train_config: TrainConfig, strategy: tf.distribute.Strategy
) -> tuple[tf.data.Dataset | tf.distribute.DistributedDataset, int, int | None]:
    """The training windows as a dataset, the positions of an epoch, and the steps of an epoch (None: one pass)."""
    train = sequences.train
    if isinstance(train, Sequences):
        dataset = sequence_dataset(
            train, sequences.context_values or None, batch_size=train_config.batch_size, seed=train_config.seed
        )
        if train_config.steps_per_epoch > 0:  # an epoch of this many steps, as the two-tower's in-memory input
            windows = train_config.steps_per_epoch * train_config.batch_size
            positions = round(train.positions * windows / max(len(train), 1))
            return dataset.repeat(), positions, train_config.steps_per_epoch
        return dataset, train.positions, None

    def build(plan: ShardPlan, pipeline: int) -> tf.data.Dataset:  # each worker reads its own sequence shards
        return window_dataset(
            train,
            sequences.context_values or None,
            plan,
            pipeline=pipeline,
            seed=train_config.seed,
            shuffle_buffer=train_config.shuffle_buffer,
        )

    streamed, plan = distributed_input(
        strategy,
        train.shards,
        build,
        global_batch=train_config.batch_size,
        max_steps=train_config.steps_per_epoch,
        unit="windows",
    )
    # The positions of the windows an epoch reads (the plan drops each pipeline's last partial batch).
    return streamed, round(train.positions * plan.examples_per_epoch / max(len(train), 1)), plan.steps
