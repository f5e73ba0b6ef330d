"""The training loop: fit with per-epoch full-catalog validation, checkpoints, resume and early stopping."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import keras
import numpy as np
import tensorflow as tf

from model.data.prepared_log import ShardedExamples
from model.evaluation import evaluate_embeddings
from model.features import TowerSpec
from model.towers import build_tower
from model.training.config import ModelConfig, TrainConfig
from model.training.factory import compile_model, make_sampler, make_scorer
from model.training.pipeline import training_dataset, user_feature_rows
from model.training.prepare import PreparedData
from model.training.shard_pipeline import distributed_shard_dataset
from model.two_tower import TwoTowerModel

logger = logging.getLogger(__name__)

Validator = Callable[[keras.Model], dict[str, float]]
"""Full-catalog validation metrics ({"recall@k": ...}) of a model in training."""

STATE_FILE = "state.json"
BEST_WEIGHTS = "best.weights.h5"


@dataclass
class TrainingState:
    """What a resumed run needs besides the weights: per-epoch history and early-stopping bookkeeping."""

    epochs_done: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float = -1.0
    best_epoch: int = -1
    stopped_early: bool = False

    @classmethod
    def load(cls, path: Path) -> TrainingState:
        return cls(**json.loads(path.read_text())) if path.exists() else cls()

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.__dict__, indent=2))


@dataclass(frozen=True, eq=False)
class TrainedRun:
    """A trained model with what the job reports and exports.

    Attributes:
        model: the trained model (best validation epoch's weights).
        state: the training history and early-stopping bookkeeping.
        seconds: wall time of training (validation included).
        num_examples: training examples per epoch.
        test: `full_report` of the test queries.
        item_embeddings: [num_items, d] catalog embeddings.
        query_tower: the served query tower (raw features -> [B, d]).
        query_spec: its feature schema for the bundle manifest.
        item_tower: the item tower (raw item features -> [B, d]) exported beside the query tower, or None for
            a model without one (the sequential model's items are an embedding table).
        item_spec: its feature schema, or None.
    """

    model: keras.Model
    state: TrainingState
    seconds: float
    num_examples: int
    test: dict[str, Any]
    item_embeddings: np.ndarray
    query_tower: keras.Model
    query_spec: TowerSpec
    item_tower: keras.Model | None = None
    item_spec: TowerSpec | None = None


def write_atomic(path: Path, text: str) -> None:
    """Writes a text file through a temporary file and a rename, so readers never see half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_model(data: PreparedData, model_config: ModelConfig, train_config: TrainConfig) -> TwoTowerModel:
    """Towers, sampler and scorer for the prepared data, compiled with Adam."""
    model = TwoTowerModel(
        build_tower(data.query_spec),
        build_tower(data.item_spec),
        data.catalog,
        make_sampler(model_config, train_config, data.catalog.popularity),
        make_scorer(model_config),
    )
    compile_model(model, train_config, len(data.train))
    return model


def validation_metrics(model: TwoTowerModel, data: PreparedData, ks: tuple[int, ...], seed: int) -> dict[str, float]:
    """Full-catalog metrics on the validation pairs, excluding what each user saw before."""
    queries = model.query_embeddings(user_feature_rows(data.user_features, data.validation.users))
    return evaluate_embeddings(
        queries, model.item_embeddings(), data.validation.items, ks=ks, exclude=data.validation_exclusions, seed=seed
    )


class EpochEnd(keras.callbacks.Callback):
    """Validates, records history, keeps the best weights, checkpoints and decides early stopping.

    Args:
        validate: the model's validation metrics; None trains without validation (a refit): no early
            stopping, no best weights, and the last epoch counts as the best.
        num_examples: training examples per epoch, for examples/s.
    """

    def __init__(
        self,
        validate: Validator | None,
        num_examples: int,
        config: TrainConfig,
        state: TrainingState,
        run_dir: Path,
        checkpoint: tf.train.CheckpointManager,
    ) -> None:
        super().__init__()
        self.validate, self.num_examples = validate, num_examples
        self.config, self.state, self.run_dir, self.checkpoint = config, state, run_dir, checkpoint
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        seconds = time.perf_counter() - self._started
        metrics = self.validate(self.model) if self.validate is not None else {}
        row = {
            "epoch": epoch + 1,
            "loss": float(logs.get("loss", np.nan)),
            "seconds": seconds,
            "examples_per_second": self.num_examples / max(seconds, 1e-9),
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        self.state.history.append(row)
        self.state.epochs_done = epoch + 1
        if metrics:
            self._select(metrics[f"recall@{self.config.eval_k}"], epoch, logs)
        else:
            self.state.best_epoch = epoch + 1
        self.checkpoint.save(checkpoint_number=epoch + 1)
        self.state.save(self.run_dir / STATE_FILE)
        logger.info(
            "epoch %d loss=%.4f val_recall@%d=%s examples/s=%.0f",
            epoch + 1,
            row["loss"],
            self.config.eval_k,
            f"{metrics[f'recall@{self.config.eval_k}']:.4f}" if metrics else "-",
            row["examples_per_second"],
        )

    def _select(self, recall: float, epoch: int, logs: dict[str, Any]) -> None:
        """Keeps the best weights and stops after `patience` epochs without a better validation recall."""
        logs[f"val_recall@{self.config.eval_k}"] = recall
        if recall > self.state.best_metric:
            self.state.best_metric, self.state.best_epoch = recall, epoch + 1
            self.model.save_weights(str(self.run_dir / BEST_WEIGHTS))
        patience = self.config.patience
        if patience > 0 and self.state.epochs_done - self.state.best_epoch >= patience:
            self.state.stopped_early = True
            self.model.stop_training = True


def keras_verbosity(verbose: int, stream: TextIO | None = None) -> int:
    """Keras' `verbose` for `TrainConfig.verbose`: -1 is a progress bar on a terminal and none otherwise.

    Without a bar, `EpochEnd` logs the one line per epoch: redirected output gets plain lines, no ANSI codes.
    """
    if verbose >= 0:
        return verbose
    stream = stream if stream is not None else sys.stdout
    return 1 if stream.isatty() else 0


def default_dataset(
    model: keras.Model, data: PreparedData, config: TrainConfig
) -> tuple[tf.data.Dataset | tf.distribute.DistributedDataset, int, int | None]:
    """The two-tower's training input, its examples per epoch and its steps per epoch (None: one pass).

    Examples in Parquet shards stream, each worker of the model's distribution reading its own shards.
    """
    if isinstance(data.train, ShardedExamples):
        dataset, plan = distributed_shard_dataset(
            model.distribute_strategy,
            data.train,
            data.user_features,
            global_batch=config.batch_size,
            seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            max_steps=config.steps_per_epoch,
        )
        return dataset, plan.examples_per_epoch, plan.steps
    memory = training_dataset(data.train, data.user_features, batch_size=config.batch_size, seed=config.seed)
    if config.steps_per_epoch > 0:
        return memory.repeat(), config.steps_per_epoch * config.batch_size, config.steps_per_epoch
    return memory, len(data.train), None


def train(
    model: keras.Model,
    data: PreparedData,
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
    dataset: tf.data.Dataset | None = None,
    num_examples: int | None = None,
    validate: Validator | None = None,
    steps_per_epoch: int | None = None,
) -> TrainingState:
    """Fits `model`, checkpointing every epoch into `run_dir/checkpoints`; ends with the best weights loaded.

    With `resume`, weights, optimizer and sampler state come from the latest checkpoint and training goes
    on from the epoch after it. A model other than the two-tower (e.g. the sequential one) passes its own
    `dataset` (with `num_examples` per epoch, and `steps_per_epoch` when it repeats) and `validate`; the
    defaults train a `TwoTowerModel` on `data`, streaming its examples when they are Parquet shards (each
    worker of a distribution reading its own shards).
    Without `validate` and without validation pairs in `data` (a refit on train + validation), every epoch
    up to `config.epochs` runs and the last one's weights are kept.
    """
    selecting = validate is not None or len(data.validation) > 0
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=2)
    state = TrainingState()
    if resume:
        if manager.latest_checkpoint is None:
            raise FileNotFoundError(f"--resume: no checkpoint under {run_dir / 'checkpoints'}")
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        state = TrainingState.load(run_dir / STATE_FILE)
        logger.info("resumed from %s after epoch %d", manager.latest_checkpoint, state.epochs_done)
    if not state.stopped_early and state.epochs_done < config.epochs:
        if dataset is None:
            dataset, num_examples, steps_per_epoch = default_dataset(model, data, config)
        if validate is None and selecting:
            validate = lambda m: validation_metrics(m, data, (config.eval_k,), config.seed)  # noqa: E731
        epoch_end = EpochEnd(validate, num_examples or 0, config, state, run_dir, manager)
        logger.info(  # the first epoch takes seconds (tracing the step); say that it started
            "training epochs %d-%d on %d examples per epoch, batch size %d",
            state.epochs_done + 1,
            config.epochs,
            num_examples or 0,
            config.batch_size,
        )
        model.fit(
            dataset,
            epochs=config.epochs,
            initial_epoch=state.epochs_done,
            steps_per_epoch=steps_per_epoch,
            verbose=keras_verbosity(config.verbose),
            shuffle=False,  # the dataset shuffles itself
            callbacks=[epoch_end, *(extra_callbacks or [])],
        )
    if selecting and (run_dir / BEST_WEIGHTS).exists():
        model.load_weights(str(run_dir / BEST_WEIGHTS))
    return state
