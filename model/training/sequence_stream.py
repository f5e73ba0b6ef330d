"""The sequential tower's input from a prepared log: windows cut per record batch, never the whole log.

A prepared log written with sequences (`retrieval-prepare --sequences`) holds every training and validation
event in Parquet shards, user u's in shard u % shards, each shard sorted by user and then time. Reading a
shard in record batches, the users whose events are complete in a batch (the last user's may go on in the
next one, so they are carried over) are cut into token windows by the same `build_sequences` as the in-memory
path, and the windows are mixed in a shuffle buffer of `train.shuffle_buffer` windows. Memory holds one record
batch, the carried user, the buffer and the vocabularies, never the log.

- Counts: the windows and positions of an epoch follow from each user's training-event count in the
  vocabulary (`window_counts`), so the learning-rate schedule and the plan are known without a pass.
- Validation and test histories: one scan of the shards holding the sampled query users keeps only those
  users' events.
- Workers: shards are dealt to input pipelines as the two-tower's example shards are (`distributed_input`);
  every pipeline runs the smallest share's full batches, and shares differ by the users they hold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tensorflow as tf

from model.data.prepared_log import PreparedLog, ShardedExamples
from model.sequence.pipeline import with_user_features
from model.sequence.sequences import Padding, Sequences, build_sequences, window_counts
from model.training.shard_pipeline import READ_BATCH_ROWS, ShardPlan, epoch_batches

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceShards:
    """The training windows of a prepared log's sequence shards, read as a stream.

    Attributes:
        files: the shards (user u's events in file u % len(files)).
        windows: the number of windows each shard gives.
        positions: real items over all windows (the examples of an epoch).
        window_length: columns of a window.
        stride: items between the ends of a user's consecutive windows.
        padding: side on which short windows are padded.
    """

    files: tuple[Path, ...]
    windows: tuple[int, ...]
    positions: int
    window_length: int
    stride: int
    padding: Padding

    def __len__(self) -> int:
        return sum(self.windows)

    @property
    def shards(self) -> ShardedExamples:
        """The shards with their window counts as rows, for `plan_shards`."""
        return ShardedExamples(files=self.files, rows=self.windows)


def sequence_shards(
    prepared: PreparedLog, *, window_length: int, stride: int, padding: Padding, field: str = "data.prepared"
) -> SequenceShards:
    """The windows `build_sequences(..., max_length=window_length, stride=stride)` cuts from the training events
    of `prepared`, counted from the users' training counts; a log without sequences is a `DataError`."""
    files = prepared.sequence_files(field=field)
    _, train_counts = prepared.vocabulary("user")
    windows, positions = window_counts(train_counts, max_length=window_length, stride=stride)
    shard = np.arange(len(train_counts)) % len(files)
    per_shard = np.bincount(shard, weights=windows, minlength=len(files)).astype(np.int64)
    return SequenceShards(
        files=files,
        windows=tuple(int(w) for w in per_shard),
        positions=int(positions.sum()),
        window_length=window_length,
        stride=stride,
        padding=padding,
    )


def _user_chunks(path: Path) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(users, items, validation) of a sequence shard in record batches that hold whole users."""
    carry: tuple[np.ndarray, ...] | None = None
    for record in pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH_ROWS):
        chunk: tuple[np.ndarray, ...] = (
            record.column(0).to_numpy(),
            record.column(1).to_numpy(),
            record.column(2).to_numpy(zero_copy_only=False),
        )
        if carry is not None:
            chunk = tuple(np.concatenate([a, b]) for a, b in zip(carry, chunk, strict=True))
        users = chunk[0]
        if not len(users):
            continue
        cut = int(np.searchsorted(users, users[-1]))  # the last user may go on in the next batch
        carry = tuple(column[cut:] for column in chunk)
        if cut:
            yield chunk[0][:cut], chunk[1][:cut], chunk[2][:cut]
    if carry is not None and len(carry[0]):
        yield carry[0], carry[1], carry[2]


def _cut(users: np.ndarray, items: np.ndarray, *, max_length: int, padding: Padding, stride: int) -> Sequences:
    """The strided training windows of `build_sequences` over events already in time order per user;
    `user_rows` are the users' global rows."""
    present, local = np.unique(users, return_inverse=True)
    cut = build_sequences(
        local,
        items,
        np.arange(len(items), dtype=np.float64),  # already in time order: the stable sort keeps it
        num_users=len(present),
        max_length=max_length,
        padding=padding,
        stride=stride,
    )
    return Sequences(cut.tokens, cut.padding_mask, present[cut.user_rows], cut.lengths)


def training_windows(shards: SequenceShards, files: Iterable[int]) -> Iterator[tuple[np.ndarray, ...]]:
    """(tokens, padding mask, user rows) of the training windows of the given shards, in file order."""
    for index in files:
        for users, items, validation in _user_chunks(shards.files[index]):
            train = ~validation
            if not train.any():
                continue
            windows = _cut(
                users[train], items[train], max_length=shards.window_length, padding=shards.padding,
                stride=shards.stride,
            )  # fmt: skip
            yield windows.tokens, windows.padding_mask, windows.user_rows


def histories(
    prepared: PreparedLog,
    users: np.ndarray,
    *,
    with_validation: bool,
    max_length: int,
    padding: Padding,
    field: str = "data.prepared",
) -> Sequences:
    """One window per entry of `users` ([n] user rows): the user's latest `max_length` training events (and
    validation events, `with_validation`), as `build_sequences(...).take(users)` gives in memory.

    Reads only the shards those users live in, and keeps only their events.
    """
    users = np.asarray(users, dtype=np.int64)
    files = prepared.sequence_files(field=field)
    wanted = np.unique(users)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for index in np.unique(wanted % len(files)):
        value_set = pa.array(wanted[wanted % len(files) == index])
        for record in pq.ParquetFile(files[index]).iter_batches(batch_size=READ_BATCH_ROWS):
            keep = pc.is_in(record.column(0), value_set=value_set)
            if not with_validation:
                keep = pc.and_(keep, pc.invert(record.column(2)))
            picked = record.filter(keep)
            found.append((picked.column(0).to_numpy(), picked.column(1).to_numpy()))
    # A window per wanted user (all padding for one without events), then each query user's window.
    event_users = np.concatenate([f[0] for f in found]) if found else np.zeros(0, np.int64)
    event_items = np.concatenate([f[1] for f in found]) if found else np.zeros(0, np.int64)
    local = np.searchsorted(wanted, event_users)
    cut = build_sequences(
        local,
        event_items,
        np.arange(len(event_items), dtype=np.float64),  # each user's events come from one shard, in time order
        num_users=len(wanted),
        max_length=max_length,
        padding=padding,
    )
    rows = np.searchsorted(wanted, users)
    return Sequences(cut.tokens[rows], cut.padding_mask[rows], users, cut.lengths[rows])


def window_dataset(
    shards: SequenceShards,
    user_features: Mapping[str, np.ndarray] | None,
    plan: ShardPlan,
    *,
    pipeline: int = 0,
    seed: int = 0,
    shuffle_buffer: int = 262144,
) -> tf.data.Dataset:
    """Pipeline `pipeline`'s batches of the model's feature dicts, repeated forever; pass
    `steps_per_epoch=plan.steps` to `fit`. Each epoch visits the pipeline's shards in a new order."""
    batch, length = plan.batch_size, shards.window_length
    spec = (
        tf.TensorSpec([batch, length], tf.int64),
        tf.TensorSpec([batch, length], tf.bool),
        tf.TensorSpec([batch], tf.int64),
    )
    windows = epoch_batches(
        shards.shards,
        plan,
        lambda order: training_windows(shards, order),
        spec,
        pipeline=pipeline,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
    )
    return with_user_features(windows, user_features).repeat().prefetch(tf.data.AUTOTUNE)
