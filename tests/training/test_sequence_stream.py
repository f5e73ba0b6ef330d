"""The sequential tower from a prepared log: windows and histories equal the in-memory ones, every window once
per epoch, a clear refusal without sequences, and a streamed run that matches the in-memory run."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from model.data import DataError, InteractionLog, global_time_split, leave_last_out
from model.data.log_preparation import SplitRule, prepare_log
from model.data.parquet_files import resolve_parquet_files
from model.data.prepared_log import PreparedLog
from model.sequence.retrieval_model import PADDING_MASK, TOKENS
from model.sequence.sequences import Padding, Sequences, build_sequences, window_counts
from model.sequence.vocabulary import ITEM_OFFSET
from model.training import sequence_stream
from model.training.config import SequenceConfig, TrainConfig, build_config
from model.training.job import run
from model.training.prepare import PreparedData, prepare
from model.training.sequence_stream import training_windows, window_dataset
from model.training.sequential import _training_input, sequence_data, streamed_sequence_data
from model.training.shard_pipeline import plan_shards
from model.training.streaming_data import prepare_streaming


def _write_log(directory: Path, n: int = 2400, files: int = 3, seed: int = 0) -> InteractionLog:
    """A random log over `files` Parquet files with many equal timestamps (ties keep file, then row order)."""
    rng = np.random.default_rng(seed)
    users = np.char.add("u", rng.integers(0, 150, n).astype(str)).astype(object)
    items = np.char.add("i", rng.integers(0, 200, n).astype(str)).astype(object)
    times = rng.integers(0, 30, n).astype(float)
    directory.mkdir(parents=True)
    for k in range(files):
        part = slice(k * n // files, (k + 1) * n // files)
        table = {"user_id": users[part].astype(str), "item_id": items[part].astype(str), "timestamp": times[part]}
        pq.write_table(pa.table(table), directory / f"part-{k:03d}.parquet")
    return InteractionLog(users, items, times, np.ones(n, np.float32))


def _rows(windows: Sequences, data: PreparedData) -> Counter[tuple[str, tuple[str, ...]]]:
    """Each window as (external user id, its item ids in column order with '' for padding), counted."""
    items = data.catalog.external_ids.astype(str)
    rows: Counter[tuple[str, tuple[str, ...]]] = Counter()
    for user, tokens, mask in zip(windows.user_rows, windows.tokens, windows.padding_mask, strict=True):
        window = tuple(items[t - ITEM_OFFSET] if m else "" for t, m in zip(tokens, mask, strict=True))
        rows[(str(data.user_ids[user]), window)] += 1
    return rows


def _both(tmp_path: Path, rule: SplitRule, config: SequenceConfig) -> tuple:
    log = _write_log(tmp_path / "log")
    files = resolve_parquet_files(tmp_path / "log", field="data.interactions")
    prepared = prepare_log(files, tmp_path / "prepared", split=rule, shards=3, sequences=True)
    if rule.kind == "time":
        split = global_time_split(log, validation_cutoff=18.0, test_cutoff=24.0)
    else:
        split = leave_last_out(log)
    memory_data = prepare(log, split)
    memory = sequence_data(log, split, memory_data, config)
    streamed_data = prepare_streaming(prepared)
    streamed = streamed_sequence_data(prepared, streamed_data, config)
    return prepared, memory_data, memory, streamed_data, streamed


@pytest.mark.parametrize(
    ("rule", "objective", "stride", "padding"),
    [
        (SplitRule(), "masked", 0, "left"),
        (SplitRule(), "causal", 3, "right"),
        (SplitRule("time", validation_cutoff=18.0, test_cutoff=24.0), "masked", 2, "left"),
    ],
    ids=["leave-last-out-masked", "leave-last-out-causal-stride3", "time-masked-stride2"],
)
def test_streamed_windows_and_histories_equal_the_in_memory_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rule: SplitRule, objective: str, stride: int, padding: str
) -> None:
    monkeypatch.setattr(sequence_stream, "READ_BATCH_ROWS", 97)  # many record batches: users span batches
    config = SequenceConfig(max_length=5, objective=objective, stride=stride, padding=padding)
    prepared, memory_data, memory, streamed_data, streamed = _both(tmp_path, rule, config)
    shards = streamed.train
    assert isinstance(shards, sequence_stream.SequenceShards) and isinstance(memory.train, Sequences)
    assert len(shards.files) == 3
    assert len(shards) == len(memory.train) and shards.positions == int(memory.train.lengths.sum())
    chunks = list(training_windows(shards, range(len(shards.files))))
    assert len(chunks) > 3
    assert sum(len(c[0]) for c in chunks) == len(shards)
    for k, count in enumerate(shards.windows):  # the per-shard counts from the vocabulary match the files
        assert sum(len(c[0]) for c in training_windows(shards, [k])) == count
    streamed_windows = Sequences(
        np.concatenate([c[0] for c in chunks]),
        np.concatenate([c[1] for c in chunks]),
        np.concatenate([c[2] for c in chunks]),
        np.concatenate([c[1].sum(axis=1) for c in chunks]),
    )
    assert _rows(streamed_windows, streamed_data) == _rows(memory.train, memory_data)
    for part in ("validation", "test"):
        got, want = getattr(streamed, part), getattr(memory, part)
        assert len(got) == len(want) > 0
        assert _rows(got, streamed_data) == _rows(want, memory_data)
        np.testing.assert_array_equal(got.user_rows, getattr(streamed_data, part).users)  # aligned with the pairs
    assert prepared.manifest["counts"]["train"] == len(streamed_data.train)


def test_histories_of_sampled_users_are_aligned_with_the_sampled_pairs(tmp_path: Path) -> None:
    config = SequenceConfig(max_length=4)
    log = _write_log(tmp_path / "log")
    prepared = prepare_log(resolve_parquet_files(tmp_path / "log", field="f"), tmp_path / "p", shards=2, sequences=True)
    data = prepare_streaming(prepared, eval_queries=30, seed=5)
    streamed = streamed_sequence_data(prepared, data, config)
    split = leave_last_out(log)
    memory_data = prepare(log, split)
    memory = sequence_data(log, split, memory_data, config)
    by_user = {str(memory_data.user_ids[u]): row for row, u in enumerate(memory.test.user_rows)}
    assert len(streamed.test) == 30
    for row, user in enumerate(streamed.test.user_rows):
        want = by_user[str(data.user_ids[user])]
        np.testing.assert_array_equal(streamed.test.padding_mask[row], memory.test.padding_mask[want])
        streamed_tokens = streamed.test.tokens[row][streamed.test.padding_mask[row]]
        memory_tokens = memory.test.tokens[want][memory.test.padding_mask[want]]
        streamed_items = data.catalog.external_ids[streamed_tokens - ITEM_OFFSET]
        memory_items = memory_data.catalog.external_ids[memory_tokens - ITEM_OFFSET]
        assert streamed_items.tolist() == memory_items.tolist()


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    max_length=st.integers(1, 9),
    stride=st.integers(1, 9),
)
def test_window_counts_equal_the_windows_build_sequences_cuts(counts: list[int], max_length: int, stride: int) -> None:
    users = np.repeat(np.arange(len(counts)), counts)
    cut = build_sequences(
        users, np.zeros(len(users), np.int64), np.arange(len(users)), num_users=len(counts), max_length=max_length,
        stride=stride,
    )  # fmt: skip
    windows, positions = window_counts(counts, max_length=max_length, stride=stride)
    np.testing.assert_array_equal(windows, np.bincount(cut.user_rows, minlength=len(counts)))
    np.testing.assert_array_equal(positions, np.bincount(cut.user_rows, weights=cut.lengths, minlength=len(counts)))


def test_two_pipelines_see_every_window_once_per_epoch_in_a_new_order(tmp_path: Path) -> None:
    # 40 users x 9 events, leave-last-out: 7 training events each; windows of 3, stride 3, end at 7, 4 and 1.
    directory = tmp_path / "log"
    directory.mkdir()
    user = np.repeat(np.arange(40), 9)
    item = (user * 11 + np.tile(np.arange(9), 40)) % 500
    pq.write_table(
        pa.table({"user_id": user.astype(str), "item_id": item.astype(str), "timestamp": np.tile(np.arange(9.0), 40)}),
        directory / "0.parquet",
    )
    prepared = prepare_log([directory / "0.parquet"], tmp_path / "p", shards=4, sequences=True)
    shards = sequence_stream.sequence_shards(prepared, window_length=3, stride=3, padding=Padding.LEFT)
    assert len(shards) == 120 and shards.windows == (30, 30, 30, 30)
    plan = plan_shards(shards.shards, global_batch=20, pipelines=2, replicas=2)  # 10 per replica, 6 steps
    assert plan.steps == 6
    segment = np.array([f"s{u % 5}" for u in range(40)])
    epochs: list[list[tuple[int, tuple[int, ...]]]] = [[], []]
    for pipeline in range(2):
        dataset = window_dataset(shards, {"segment": segment}, plan, pipeline=pipeline, seed=3, shuffle_buffer=16)
        for step, batch in enumerate(dataset.take(2 * plan.steps).as_numpy_iterator()):
            assert batch[TOKENS].shape == batch[PADDING_MASK].shape == (10, 3)
            for tokens, seg in zip(batch[TOKENS].tolist(), batch["segment"].tolist(), strict=True):
                epochs[step // plan.steps].append((int(seg.decode()[1:]), tuple(tokens)))
    everything = Counter(
        (u % 5, tuple(w))
        for c in training_windows(shards, range(4))
        for u, w in zip(c[2].tolist(), c[0].tolist(), strict=True)
    )
    for seen in epochs:
        assert Counter(seen) == everything  # each window once across the two pipelines, with its user's feature
    assert epochs[0] != epochs[1]


def test_a_sequential_run_refuses_a_prepared_log_without_sequences(tmp_path: Path) -> None:
    _write_log(tmp_path / "log", n=600)
    prepare_log(resolve_parquet_files(tmp_path / "log", field="f"), tmp_path / "prepared", shards=2)
    assert "sequence_shards" not in PreparedLog.open(tmp_path / "prepared").manifest
    config = build_config(
        {
            "data": {"source": "files", "prepared": str(tmp_path / "prepared")},
            "model": {"tower": "sequential"},
            "export": {"enabled": False},
            "output_dir": str(tmp_path / "run"),
        }
    )
    with pytest.raises(DataError, match=r"data\.prepared: .* no time-ordered sequences .* --sequences"):
        run(config)
    assert not (tmp_path / "run").exists()  # refused before any run directory


def _run_config(tmp_path: Path, name: str, **data: object) -> object:
    return build_config(
        {
            "data": {
                "source": "files",
                "interactions": str(tmp_path / "log"),
                "user_features": str(tmp_path / "users.parquet"),
                "user_categorical": ["segment"],
                **data,
            },
            "model": {"tower": "sequential", "embedding_dim": 32, "temperature": 0.1},
            "sequence": {"max_length": 8, "num_layers": 1, "dropout": 0.1, "user_features": True},
            "train": {"epochs": 5, "batch_size": 64, "learning_rate": 0.005, "patience": 0, "verbose": 0},
            "export": {"models_dir": str(tmp_path / "models"), "name": name},
            "output_dir": str(tmp_path / name),
        }
    )


def _sequential_world(directory: Path, users: int = 300, events: int = 14, num_items: int = 120) -> None:
    """Each user walks through one cluster of consecutive items (i is followed by i + 1), 10% noise; two files."""
    rng = np.random.default_rng(0)
    size = num_items // 6
    cluster, start = rng.integers(6, size=users), rng.integers(size, size=users)
    items = cluster[:, None] * size + (start[:, None] + np.arange(events)) % size
    items = np.where(rng.random(items.shape) < 0.1, rng.integers(num_items, size=items.shape), items)
    user = np.repeat(np.arange(users), events)
    table = pa.table(
        {
            "user_id": np.char.add("u", user.astype(str)),
            "item_id": np.char.add("i", items.reshape(-1).astype(str)),
            "timestamp": (1000 * user + np.tile(np.arange(events), users)).astype(float),
        }
    )
    (directory / "log").mkdir(parents=True)
    half = len(table) // 2
    pq.write_table(table.slice(0, half), directory / "log" / "part-0.parquet")
    pq.write_table(table.slice(half), directory / "log" / "part-1.parquet")
    names = np.char.add("u", np.arange(users).astype(str))
    segments = [f"s{u % 3}" for u in range(users)]
    pq.write_table(pa.table({"user_id": names, "segment": segments}), directory / "users.parquet")


@pytest.mark.slow
def test_a_streamed_sequential_run_matches_the_in_memory_run_and_exports(tmp_path: Path) -> None:
    _sequential_world(tmp_path)
    memory = run(_run_config(tmp_path, "memory"))  # type: ignore[arg-type]
    streamed = run(_run_config(tmp_path, "streamed", streaming=True, shards=2))  # type: ignore[arg-type]
    prepared = json.loads((tmp_path / "streamed" / "prepared" / "prepared.json").read_text())
    assert len(prepared["sequence_shards"]) == 2
    m, s = (json.loads((r.run_dir / "metrics.json").read_text()) for r in (memory, streamed))
    counts = ("train", "validation", "test", "users", "items")
    assert {k: s["data"][k] for k in counts} == {k: m["data"][k] for k in counts}
    recall = [r["test"]["model"]["excluding_train"]["recall@10"] for r in (m, s)]
    popularity = m["test"]["popularity"]["excluding_train"]["recall@10"]
    assert recall[1] > 3 * popularity and recall[1] > 0.4, recall
    assert recall[1] == pytest.approx(recall[0], abs=0.1)
    assert len(s["training"]["history"]) == 5
    assert s["bundle"] and (Path(s["bundle"]) / "manifest.json").exists()


@pytest.mark.parametrize("steps", [0, 10])
def test_train_steps_per_epoch_sets_the_epoch_of_both_sequential_inputs(tmp_path: Path, steps: int) -> None:
    """An epoch of train.steps_per_epoch steps, in memory as streamed (the windows repeat), with its positions;
    0 is one pass (the in-memory input then runs to its end, the streamed one runs its plan's full batches)."""
    _write_log(tmp_path / "log", n=1200)
    prepared = prepare_log(resolve_parquet_files(tmp_path / "log", field="f"), tmp_path / "p", shards=2, sequences=True)
    streamed = streamed_sequence_data(prepared, prepare_streaming(prepared), SequenceConfig(max_length=4, stride=2))
    assert isinstance(streamed.train, sequence_stream.SequenceShards)
    chunks = list(training_windows(streamed.train, range(2)))
    tokens, mask, users = (np.concatenate([c[k] for c in chunks]) for k in range(3))
    in_memory = dataclasses.replace(streamed, train=Sequences(tokens, mask, users, mask.sum(axis=1)))
    total, positions = len(streamed.train), streamed.train.positions
    assert total > 40  # more than two batches: an epoch of 10 steps repeats the windows
    batches = total // 16 if steps == 0 else steps
    for sequences in (in_memory, streamed):
        train_config = TrainConfig(batch_size=16, steps_per_epoch=steps)
        dataset, examples, steps_per_epoch = _training_input(sequences, train_config, tf.distribute.get_strategy())
        if steps == 0 and sequences is in_memory:
            assert (steps_per_epoch, examples) == (None, positions)
        else:
            assert (steps_per_epoch, examples) == (batches, round(positions * batches * 16 / total))
        shapes = [b[TOKENS].shape for b in dataset.take(batches).as_numpy_iterator()]
        assert shapes == [(16, streamed.train.window_length)] * batches
