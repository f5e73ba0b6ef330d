"""tf.data input from Parquet example shards: record batches, a shuffle buffer, and each worker its own files.

The examples (internal user id, item id, weight; `model.data.prepared_log`) are read file by file in record
batches with pyarrow, mixed in a shuffle buffer of `shuffle_buffer` rows, and batched; a parallel map gathers the
users' raw features, as in the in-memory pipeline (`model.training.pipeline`). Memory holds the buffer, the
user-feature tables and one record batch, never the log.

Sharding is by FILE and explicit: input pipeline p of P (one per worker under MultiWorkerMirroredStrategy)
reads shards p, p + P, p + 2P, ... TensorFlow's `AutoShardPolicy.FILE` cannot see the files behind a Python
generator, so the assignment is done here and auto-sharding is turned off. Every pipeline runs the same number
of steps (collectives need it): the smallest share's full batches, so with equal shares (`prepare_log` deals
rows round-robin, and shards are a multiple of the workers) an epoch reads every example once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf

from model.data.prepared_log import ShardedExamples

logger = logging.getLogger(__name__)

READ_BATCH_ROWS = 65536


@dataclass(frozen=True)
class ShardPlan:
    """What every input pipeline reads in an epoch.

    Attributes:
        pipelines: number of input pipelines (workers).
        batch_size: rows of one batch a pipeline yields (the per-replica batch size).
        batches_per_step: batches a pipeline yields per training step (its local replicas).
        steps: training steps per epoch, the same for every pipeline.
    """

    pipelines: int
    batch_size: int
    batches_per_step: int
    steps: int

    def files(self, examples: ShardedExamples, pipeline: int) -> tuple[int, ...]:
        """Indices of the shards that `pipeline` reads."""
        return tuple(range(pipeline, len(examples.files), self.pipelines))

    @property
    def examples_per_epoch(self) -> int:
        return self.steps * self.batch_size * self.batches_per_step * self.pipelines


def plan_shards(
    examples: ShardedExamples, *, global_batch: int, pipelines: int = 1, replicas: int = 1, max_steps: int = 0
) -> ShardPlan:
    """The per-epoch plan for `pipelines` pipelines feeding `replicas` replicas in sync, `global_batch` per step.

    Raises:
        ValueError: fewer shards than pipelines, a batch that does not divide among the replicas, or a share
            smaller than one step.
    """
    if len(examples.files) < pipelines:
        raise ValueError(
            f"data.prepared has {len(examples.files)} example shards, fewer than the {pipelines} workers; "
            "prepare it with more (retrieval-prepare --shards)"
        )
    if global_batch % replicas:
        raise ValueError(f"train.batch_size {global_batch} does not divide among {replicas} replicas")
    batch = global_batch // replicas
    per_step = replicas // pipelines
    shares = [sum(examples.rows[i] for i in range(p, len(examples.files), pipelines)) for p in range(pipelines)]
    steps = min(shares) // (batch * per_step)
    if steps == 0:
        raise ValueError(f"an input pipeline holds {min(shares)} examples, fewer than one step of {batch * per_step}")
    if max_steps > 0:
        steps = min(steps, max_steps)
    return ShardPlan(pipelines=pipelines, batch_size=batch, batches_per_step=per_step, steps=steps)


def shuffled_batches(
    chunks: Iterable[tuple[np.ndarray, ...]], batch_size: int, buffer: int, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, ...]]:
    """Full batches of `batch_size` rows of `chunks` (tuples of arrays aligned on their first axis), the rows
    mixed in a buffer of at least `buffer` rows; the rows left after the last full batch are dropped."""
    pending: list[tuple[np.ndarray, ...]] = []
    held = 0

    def drain(final: bool) -> Iterator[tuple[np.ndarray, ...]]:
        nonlocal pending, held
        columns = tuple(np.concatenate([part[k] for part in pending]) for k in range(len(pending[0])))
        order = rng.permutation(len(columns[0]))
        full = len(order) // batch_size * batch_size
        for start in range(0, full, batch_size):
            rows = order[start : start + batch_size]
            yield tuple(column[rows] for column in columns)
        rest = order[full:]
        pending = [] if final else [tuple(column[rest] for column in columns)]
        held = 0 if final else len(rest)

    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk[0])
        if held >= buffer:
            yield from drain(final=False)
    if held:
        yield from drain(final=True)


def _example_chunks(
    examples: ShardedExamples, files: Iterable[int]
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(users, items, weights) record batches of the given shards, in that order."""
    columns = ["user", "item", "weight"] if examples.use_weights else ["user", "item"]
    for index in files:
        for record in pq.ParquetFile(examples.files[index]).iter_batches(batch_size=READ_BATCH_ROWS, columns=columns):
            users = record.column(0).to_numpy().astype(np.int64)
            weights = (
                record.column(2).to_numpy().astype(np.float32) if examples.use_weights else np.ones(len(users), "f4")
            )
            yield users, record.column(1).to_numpy().astype(np.int64), weights


def shard_dataset(
    examples: ShardedExamples,
    user_features: Mapping[str, np.ndarray],
    plan: ShardPlan,
    *,
    pipeline: int = 0,
    seed: int = 0,
    shuffle_buffer: int = 262144,
) -> tf.data.Dataset:
    """Pipeline `pipeline`'s batches of (query features dict, item ids [B], weights [B]), repeated forever.

    Each epoch (`plan.steps * plan.batches_per_step` batches) visits this pipeline's shards in a new order;
    pass `steps_per_epoch=plan.steps` to `fit`.
    """
    batch = plan.batch_size
    spec = (tf.TensorSpec([batch], tf.int64), tf.TensorSpec([batch], tf.int64), tf.TensorSpec([batch], tf.float32))
    rows = epoch_batches(
        examples,
        plan,
        lambda order: _example_chunks(examples, order),
        spec,
        pipeline=pipeline,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
    )
    tables = {name: tf.constant(values) for name, values in user_features.items()}

    def gather(
        users: tf.Tensor, items: tf.Tensor, weights: tf.Tensor
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
        return {name: tf.gather(table, users) for name, table in tables.items()}, items, weights

    return rows.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).repeat().prefetch(tf.data.AUTOTUNE)


def epoch_batches(
    shards: ShardedExamples,
    plan: ShardPlan,
    chunks: Callable[[list[int]], Iterable[tuple[np.ndarray, ...]]],
    spec: tuple[tf.TensorSpec, ...],
    *,
    pipeline: int,
    seed: int,
    shuffle_buffer: int,
) -> tf.data.Dataset:
    """One epoch of pipeline `pipeline`'s full batches (`plan.steps * plan.batches_per_step` of them, `spec`):
    `chunks(files)` reads the pipeline's shards, visited in a new order each epoch, and the rows are mixed in a
    buffer of `shuffle_buffer` rows. tf.data's auto-sharding is off: the plan shards by file."""
    files = plan.files(shards, pipeline)
    rng = np.random.default_rng([seed, pipeline])
    batch = plan.batch_size

    def epoch() -> Iterator[tuple[np.ndarray, ...]]:
        order: list[int] = [int(i) for i in rng.permutation(files)] if files else []
        yield from shuffled_batches(chunks(order), batch, max(shuffle_buffer, batch), rng)

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    batches = tf.data.Dataset.from_generator(epoch, output_signature=spec).take(plan.steps * plan.batches_per_step)
    return batches.with_options(options)


def distributed_shard_dataset(
    strategy: tf.distribute.Strategy,
    examples: ShardedExamples,
    user_features: Mapping[str, np.ndarray],
    *,
    global_batch: int,
    seed: int,
    shuffle_buffer: int,
    max_steps: int = 0,
) -> tuple[tf.data.Dataset | tf.distribute.DistributedDataset, ShardPlan]:
    """The training input for `strategy` and its plan; under a distribution, each worker reads its own shards."""

    def build(plan: ShardPlan, pipeline: int) -> tf.data.Dataset:
        return shard_dataset(examples, user_features, plan, pipeline=pipeline, seed=seed, shuffle_buffer=shuffle_buffer)

    return distributed_input(strategy, examples, build, global_batch=global_batch, max_steps=max_steps)


def distributed_input(
    strategy: tf.distribute.Strategy,
    shards: ShardedExamples,
    build: Callable[[ShardPlan, int], tf.data.Dataset],
    *,
    global_batch: int,
    max_steps: int = 0,
    unit: str = "examples",
) -> tuple[tf.data.Dataset | tf.distribute.DistributedDataset, ShardPlan]:
    """The input `build(plan, pipeline)` makes of `shards` for `strategy`, and its plan: one pipeline without a
    distribution; under one, a pipeline per worker, each reading its own files (`ShardPlan.files`). `unit` names
    what a row of `shards` is, in the log."""
    replicas = strategy.num_replicas_in_sync
    pipelines = _input_pipelines(strategy)
    if replicas == 1 and pipelines == 1:
        plan = plan_shards(shards, global_batch=global_batch, max_steps=max_steps)
        return build(plan, 0), plan
    plan = plan_shards(shards, global_batch=global_batch, pipelines=pipelines, replicas=replicas, max_steps=max_steps)

    def make(context: tf.distribute.InputContext) -> tf.data.Dataset:
        pipeline = context.input_pipeline_id
        files = plan.files(shards, pipeline)
        logger.info(
            "input pipeline %d of %d reads shards %s: %d %s, %d steps of %d per epoch",
            pipeline,
            context.num_input_pipelines,
            ",".join(map(str, files)),
            sum(shards.rows[i] for i in files),
            unit,
            plan.steps,
            plan.batch_size * plan.batches_per_step,
        )
        return build(plan, pipeline)

    return strategy.distribute_datasets_from_function(make), plan


def _input_pipelines(strategy: tf.distribute.Strategy) -> int:
    """One input pipeline per worker (the hosts of a multi-worker strategy; 1 otherwise)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec()
    return max(1, sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs))
