"""Training the sequential query tower: sequences from the log, the model, training and test.

The split and the prepared data (catalog, user rows, exclusions) are the two-tower's, so both models are
evaluated on the same queries with the same exclusions. What differs is the query: per validation pair the
user's training events (the latest `max_length` of them) and per test pair the training and validation
events, in time order; the training windows (of the objective's `window_length`) are cut from the training
events only.
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
from model.training.trainer import TrainedRun, train

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SequenceData:
    """Token windows of a split, aligned with a `PreparedData`.

    Attributes:
        train: training windows, cut from the training events.
        validation: one history per validation pair (the user's training events).
        test: one history per test pair (the user's training and validation events).
        context_spec: the user side features fed to the encoder's head, or None.
        context_values: raw values of those features per user row (empty without context).
    """

    train: Sequences
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
    context_spec, context_values = None, {}
    if config.user_features:
        features = tuple(f for f in data.query_spec.features if f.name != USER_ID_FEATURE)
        if features:
            context_spec = TowerSpec(
                "user", features, hidden_units=(), output_dim=32, embedding_rule=data.query_spec.embedding_rule
            )
            context_values = {f.name: data.user_features[f.name] for f in features}
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
    log: InteractionLog,
    split: Split,
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
    """Trains, validates every epoch (early stopping, checkpoints, resume as the two-tower) and tests once."""
    check_config(config)
    sequences = sequence_data(log, split, data, config)
    logger.info(
        "sequences windows=%d positions=%d validation=%d test=%d",
        len(sequences.train),
        int(sequences.train.lengths.sum()),
        len(sequences.validation),
        len(sequences.test),
    )
    with strategy.scope():
        model = build_sequential_model(data, sequences, model_config, config, train_config)
    dataset = sequence_dataset(
        sequences.train,
        sequences.context_values or None,
        batch_size=train_config.batch_size,
        seed=train_config.seed,
    )
    started = time.perf_counter()
    state = train(
        model,
        data,
        train_config,
        run_dir,
        resume=resume,
        extra_callbacks=callbacks,
        dataset=dataset,
        num_examples=int(sequences.train.lengths.sum()),
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
        num_examples=int(sequences.train.lengths.sum()),
        test=test,
        item_embeddings=item_embeddings,
        query_tower=build_query_model(model),
        query_spec=query_spec(model, sequences.context_spec),
    )
