"""The training job: load, split, prepare, train, evaluate on test once, write outputs, export a bundle."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf

from model.bundle.attributes import AttributeColumn
from model.bundle.export import export_bundle
from model.bundle.index import IndexKind, choose_index_spec
from model.data import (
    FeatureTable,
    InteractionLog,
    Split,
    global_time_split,
    leave_last_out,
    load_feature_table,
    load_interactions,
    load_movielens_100k,
)
from model.data.prepared_log import PreparedLog
from model.evaluation import full_report
from model.synthetic import SyntheticConfig, make_synthetic, synthetic_tables
from model.training.config import DataConfig, ModelConfig, RunConfig, TrainConfig, to_dict
from model.training.distribute import is_chief, make_strategy, worker_index
from model.training.factory import tower_shape
from model.training.filterable import attribute_columns, effective_entries
from model.training.filterable import resolve as resolve_filterable
from model.training.pipeline import user_feature_rows
from model.training.prepare import PreparedData, prepare, sample_queries
from model.training.pushgateway import push_run_metrics
from model.training.report import plot_history, summary_markdown, write_metrics
from model.training.sequential import SequenceData, sequence_data, streamed_sequence_data, train_sequential
from model.training.sequential import check_config as check_sequence_config
from model.training.streaming_data import is_streaming, open_prepared, prepare_streaming
from model.training.trainer import TrainedRun, build_model, train, write_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What a finished run produced."""

    metrics: dict[str, Any]
    model: keras.Model
    data: PreparedData
    run_dir: Path
    bundle: Path | None


def load_side_tables(config: DataConfig) -> tuple[FeatureTable | None, FeatureTable | None]:
    """The user and item tables of data.source = "files", as the config names them (None where not given)."""
    users = (
        load_feature_table(
            config.user_features,
            key=config.user_col,
            categorical=config.user_categorical,
            numeric=config.user_numeric,
        )
        if config.user_features
        else None
    )
    item_categorical = config.item_categorical + ((config.display_column,) if config.display_column else ())
    items = (
        load_feature_table(
            config.item_features,
            key=config.item_col,
            categorical=item_categorical,
            numeric=config.item_numeric,
            multi_categorical=config.item_multi_categorical,
        )
        if config.item_features
        else None
    )
    return users, items


def load_data(config: DataConfig) -> tuple[InteractionLog, FeatureTable | None, FeatureTable | None, str | None]:
    """The interaction log, user and item tables, and the display column, as the config names them."""
    users: FeatureTable | None
    items: FeatureTable | None
    if config.source == "movielens-100k":
        ml = load_movielens_100k()
        return ml.interactions, ml.users, ml.items, config.display_column or "movie_title"
    if config.source == "synthetic":
        log, users, items = synthetic_tables(make_synthetic(SyntheticConfig()))
        return log, users, items, None
    if config.source != "files":
        raise ValueError(f"data.source must be 'movielens-100k', 'synthetic' or 'files', got {config.source!r}")
    if not config.interactions:
        raise ValueError("data.source = 'files' needs data.interactions (a Parquet or CSV path)")
    log = load_interactions(
        config.interactions,
        user_col=config.user_col,
        item_col=config.item_col,
        time_col=config.time_col,
        weight_col=config.weight_col or None,
    )
    users, items = load_side_tables(config)
    return log, users, items, config.display_column or None


def split_log(log: InteractionLog, config: DataConfig) -> Split:
    if config.split == "leave-last-out":
        return leave_last_out(log)
    if config.split == "time":
        return global_time_split(log, validation_cutoff=config.validation_cutoff, test_cutoff=config.test_cutoff)
    raise ValueError(f"data.split must be 'leave-last-out' or 'time', got {config.split!r}")


def refit_split(split: Split) -> Split:
    """`split` with its validation interactions moved into train, leaving no validation pairs."""
    train = np.sort(np.concatenate([split.train, split.validation]))
    return Split(train=train, validation=np.zeros(0, np.int64), test=split.test)


def run(
    config: RunConfig, *, resume: bool = False, callbacks: list[keras.callbacks.Callback] | None = None
) -> RunResult:
    """Runs the whole job; writes config.json, metrics.json, training.png and summary.md to the run dir.

    The run directory is created once the data is loaded, split and prepared, so that an input error leaves
    none behind.
    """
    strategy = make_strategy(config.train.strategy)  # first: multi-worker collectives configure at start-up
    chief = is_chief()
    run_dir = Path(config.output_dir) if chief else Path(config.output_dir) / f".worker-{worker_index()}"
    keras.utils.set_random_seed(config.train.seed)
    previous_policy = keras.mixed_precision.dtype_policy()
    if config.train.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        return _run(config, strategy, chief, run_dir, resume, callbacks)
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _run(
    config: RunConfig,
    strategy: tf.distribute.Strategy,
    chief: bool,
    run_dir: Path,
    resume: bool,
    callbacks: list[keras.callbacks.Callback] | None,
) -> RunResult:
    sequences: SequenceData | None = None  # the sequential tower's windows and histories
    if config.model.tower == "sequential":
        check_sequence_config(config.sequence)  # before any data is read
    if is_streaming(config.data):
        prepared, data, split_counts, items = _streaming_data(config)
        filterable = resolve_filterable(effective_entries(config.export.filterable, config.data.source), items)
        if config.model.tower == "sequential":
            sequences = streamed_sequence_data(prepared, data, config.sequence)
    else:
        log, users, items, display = load_data(config.data)
        filterable = resolve_filterable(effective_entries(config.export.filterable, config.data.source), items)
        split = split_log(log, config.data)
        if config.data.refit_on_validation:
            split = refit_split(split)
        data = prepare(
            log,
            split,
            users=users,
            items=items,
            shape=tower_shape(config.model),
            use_weights=config.data.use_weights,
            display_column=display,
        )
        data = sample_queries(data, config.data.eval_queries, config.train.seed)
        split_counts = split.describe()
        if config.model.tower == "sequential":
            sequences = sequence_data(log, split, data, config.sequence)
    # Only now, with the inputs read and checked: a bad file, column or value leaves no run directory behind.
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "config.json", json.dumps(to_dict(config), indent=2))
    if config.model.tower == "sequential":
        assert sequences is not None
        trained = train_sequential(
            sequences,
            data,
            config.model,
            config.sequence,
            config.train,
            strategy,
            run_dir,
            resume=resume,
            callbacks=callbacks,
        )
    elif config.model.tower == "two-tower":
        trained = _train_two_tower(data, config.model, config.train, strategy, run_dir, resume, callbacks)
    else:
        raise ValueError(f"model.tower must be 'two-tower' or 'sequential', got {config.model.tower!r}")
    state, test = trained.state, trained.test
    epoch_seconds = sum(row["seconds"] for row in state.history)
    metrics: dict[str, Any] = {
        "model_name": config.export.name,
        "data": {
            "source": config.data.source,
            **split_counts,
            "users": len(data.user_ids),
            "items": len(data.catalog),
        },
        "training": {
            "epochs_done": state.epochs_done,
            "best_epoch": state.best_epoch,
            "stopped_early": state.stopped_early,
            "seconds": trained.seconds,
            "examples_per_second": trained.num_examples * len(state.history) / max(epoch_seconds, 1e-9),
            "history": state.history,
        },
        "test": test,
        "bundle": None,
    }
    attributes = attribute_columns(filterable, items, data.catalog.external_ids)
    bundle = _export(config, trained, data, attributes) if config.export.enabled and chief else None
    metrics["bundle"] = str(bundle) if bundle else None
    write_metrics(run_dir / "metrics.json", metrics)
    if config.pushgateway and chief:
        push_run_metrics(config.pushgateway, config.export.name, metrics)
    if state.history and len(data.validation):  # a refit has no validation curve
        plot_history(state.history, run_dir / "training.png", config.train.eval_k)
    write_atomic(run_dir / "summary.md", summary_markdown(metrics))
    return RunResult(metrics=metrics, model=trained.model, data=data, run_dir=run_dir, bundle=bundle)


def _streaming_data(config: RunConfig) -> tuple[PreparedLog, PreparedData, dict[str, int], FeatureTable | None]:
    """The prepared log (data.prepared, or one prepared now; with sequences for the sequential tower),
    PreparedData from it with the training examples left on disk, the split's counts and the item table."""
    users, items = load_side_tables(config.data)
    prepared = open_prepared(
        config.data,
        Path(config.output_dir),
        distributed=config.train.strategy == "multi-worker",
        sequences=config.model.tower == "sequential",
    )
    counts = {part: prepared.counts[part] for part in ("train", "validation", "test")}
    data = prepare_streaming(
        prepared,
        users=users,
        items=items,
        shape=tower_shape(config.model),
        use_weights=config.data.use_weights,
        display_column=config.data.display_column or None,
        eval_queries=config.data.eval_queries,
        seed=config.train.seed,
    )
    return prepared, data, {**counts, "total": sum(counts.values())}, items


def _train_two_tower(
    data: PreparedData,
    model_config: ModelConfig,
    train_config: TrainConfig,
    strategy: tf.distribute.Strategy,
    run_dir: Path,
    resume: bool,
    callbacks: list[keras.callbacks.Callback] | None,
) -> TrainedRun:
    with strategy.scope():
        model = build_model(data, model_config, train_config)
    started = time.perf_counter()
    state = train(model, data, train_config, run_dir, resume=resume, extra_callbacks=callbacks)
    seconds = time.perf_counter() - started
    epoch_examples = [row["examples_per_second"] * row["seconds"] for row in state.history]

    queries = model.query_embeddings(user_feature_rows(data.user_features, data.test.users))
    item_embeddings = model.item_embeddings()
    test = full_report(
        queries, item_embeddings, data.test.items, data.catalog.popularity, data.test_exclusions, seed=train_config.seed
    )
    return TrainedRun(
        model,
        state,
        seconds,
        round(epoch_examples[-1]) if epoch_examples else len(data.train),
        test,
        item_embeddings,
        model.query_tower,
        data.query_spec,
        item_tower=model.item_tower,
        item_spec=data.item_spec,
    )


def _export(
    config: RunConfig, trained: TrainedRun, data: PreparedData, filterable: dict[str, AttributeColumn]
) -> Path | None:
    item_embeddings, test = trained.item_embeddings, trained.test
    kind = cast(IndexKind, config.export.index)  # choose_index_spec rejects unknown kinds by name
    spec = choose_index_spec(len(data.catalog), item_embeddings.shape[1], kind=kind)
    return export_bundle(
        Path(config.export.models_dir),
        config.export.name,
        query_tower=trained.query_tower,
        query_spec=trained.query_spec,
        item_embeddings=item_embeddings,
        item_ids=data.catalog.external_ids.astype(str),
        popularity=data.catalog.popularity,
        index_spec=spec,
        similarity=config.model.similarity,
        metrics={"test": test},
        display={k: np.asarray(v).astype(str) for k, v in data.catalog.display.items()} or None,
        item_tower=trained.item_tower,
        item_spec=trained.item_spec,
        filterable=filterable,
    )
