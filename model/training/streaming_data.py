"""The trainer's inputs from a prepared log: specs, catalog and sampled held-out queries; training examples stay
in their Parquet shards.

The streaming counterpart of `model.training.prepare.prepare`: the same vocabularies (towers see the ids of
the training split; the catalog holds every id of the log and the item table), the same item frequencies
(training counts), the same exclusions. What is held in memory is sized by the vocabularies and by
`eval_queries`, never by the log.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from model.data import DataError, FeatureTable
from model.data.parquet_files import resolve_parquet_files
from model.data.prepared_log import HeldOut, PreparedLog
from model.training.config import DataConfig
from model.training.prepare import (
    Examples,
    PreparedData,
    TowerShape,
    assemble,
    joined,
)

logger = logging.getLogger(__name__)

PREPARED_DIR = "prepared"


def is_streaming(config: DataConfig) -> bool:
    """Whether the run streams its log (data.streaming or data.prepared)."""
    return bool(config.prepared) or config.streaming


def open_prepared(config: DataConfig, output_dir: Path, *, distributed: bool, sequences: bool = False) -> PreparedLog:
    """The prepared log the run trains from: `data.prepared`, or one DuckDB writes into <output_dir>/prepared.

    A run that prepares its own log reuses <output_dir>/prepared when it exists (a resumed run). With
    `sequences` (the sequential tower), the log must hold its time-ordered sequences, and one prepared now does.
    """
    if config.prepared:
        return _checked(PreparedLog.open(config.prepared, field="data.prepared"), config, sequences, "data.prepared")
    if config.source != "files" or not config.interactions:
        raise ValueError("data.streaming needs data.source = 'files' and data.interactions (Parquet), or data.prepared")
    if distributed:
        raise ValueError(
            "multi-worker streaming needs data.prepared: run retrieval-prepare once, then every worker reads its "
            "share of the shards"
        )
    target = output_dir / PREPARED_DIR
    if target.exists():
        logger.info("reusing the prepared log %s", target)
        return _checked(PreparedLog.open(target, field="data.streaming"), config, sequences, "data.streaming")
    from model.data.log_preparation import LogColumns, SplitRule, prepare_log  # DuckDB: only when preparing

    files = resolve_parquet_files(config.interactions, field="data.interactions")
    item_table = None
    if config.item_features:
        item_table = (resolve_parquet_files(config.item_features, field="data.item_features"), config.item_col)
    return prepare_log(
        files,
        target,
        columns=LogColumns(config.user_col, config.item_col, config.time_col, config.weight_col),
        split=SplitRule(config.split, config.validation_cutoff, config.test_cutoff, refit=config.refit_on_validation),
        item_table=item_table,
        shards=config.shards,
        sequences=sequences,
        memory_limit=config.duckdb_memory_limit,
    )


def _checked(prepared: PreparedLog, config: DataConfig, sequences: bool, field: str) -> PreparedLog:
    """`prepared`, when its split agrees with data.refit_on_validation (a refit is decided at preparation) and
    it holds sequences when they are needed (both are `DataError`/`ValueError` before any run directory)."""
    if sequences:
        prepared.sequence_files(field=field)
    refit = bool(prepared.manifest["split"].get("refit", False))
    if refit != config.refit_on_validation:
        raise ValueError(
            f"data.refit_on_validation is {config.refit_on_validation} but the prepared log {prepared.directory} "
            f"was prepared with refit={refit}; prepare it again "
            f"({'with' if config.refit_on_validation else 'without'} retrieval-prepare --refit-on-validation)"
        )
    return prepared


def _examples(held: HeldOut, use_weights: bool) -> Examples:
    weights = held.weights if use_weights else np.ones(len(held.users), np.float32)
    return Examples(users=held.users.astype(np.int64), items=held.items.astype(np.int64), weights=weights)


def prepare_streaming(
    prepared: PreparedLog,
    *,
    users: FeatureTable | None = None,
    items: FeatureTable | None = None,
    shape: TowerShape | None = None,
    use_weights: bool = False,
    display_column: str | None = None,
    eval_queries: int = 0,
    seed: int = 0,
) -> PreparedData:
    """PreparedData whose `train` is the prepared log's example shards (`ShardedExamples`)."""
    shape = shape if shape is not None else TowerShape()
    user_ids, user_counts = prepared.vocabulary("user")
    item_ids, item_counts = prepared.vocabulary("item")
    if items is not None:
        unknown = np.setdiff1d(items.ids.astype(str), item_ids.astype(str))
        if unknown.size:
            raise DataError(
                f"data.item_features: {unknown.size} item ids (e.g. '{unknown[0]}') are not in the prepared log's "
                "vocabulary; prepare it with the item table (retrieval-prepare --items)"
            )
    validation = _examples(prepared.held_out("validation", limit=eval_queries, seed=seed), use_weights)
    test = _examples(prepared.held_out("test", limit=eval_queries, seed=seed + 1), use_weights)
    # Histories of the sampled query users only: one scan of the train shards, one of validation.
    seen_users, seen_items = prepared.histories(np.concatenate([validation.users, test.users]), ("train",))
    val_users, val_items = prepared.histories(test.users, ("validation",))
    train_seen = Examples(seen_users, seen_items, np.ones(len(seen_users), np.float32))
    validation_seen = Examples(val_users, val_items, np.ones(len(val_users), np.float32))
    train = prepared.train_examples(use_weights=use_weights)
    logger.info(
        "prepared log %s: users=%d items=%d train=%d (%d shards) validation=%d test=%d queries",
        prepared.directory,
        len(user_ids),
        len(item_ids),
        len(train),
        len(train.files),
        len(validation),
        len(test),
    )
    return assemble(
        user_ids=user_ids,
        item_ids=item_ids,
        item_counts=item_counts,
        trained_users=user_ids[user_counts > 0],
        trained_items=item_ids[item_counts > 0],
        users=users,
        items=items,
        shape=shape,
        display_column=display_column,
        train=train,
        validation=validation,
        test=test,
        seen_before_validation=train_seen,
        seen_before_test=joined(train_seen, validation_seen),
    )
