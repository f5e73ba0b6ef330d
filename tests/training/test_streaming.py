"""Streaming training input: shard plans, every example once per epoch across pipelines, and a streaming run
that matches the in-memory run on the same log."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.data.log_preparation import prepare_log
from model.data.parquet_files import resolve_parquet_files
from model.data.prepared_log import ShardedExamples
from model.synthetic import SyntheticConfig, make_synthetic, synthetic_tables
from model.training.config import build_config
from model.training.job import run
from model.training.shard_pipeline import plan_shards, shard_dataset


def write_synthetic_parquet(directory: Path, files: int = 4, config: SyntheticConfig | None = None) -> None:
    """The synthetic world as a sharded Parquet log plus user and item tables (tests and the benchmark)."""
    log, users, items = synthetic_tables(make_synthetic(config or SyntheticConfig()))
    (directory / "log").mkdir(parents=True)
    bounds = np.linspace(0, len(log), files + 1).astype(int)
    for k in range(files):
        part = slice(bounds[k], bounds[k + 1])
        table = {"user_id": log.user_ids[part], "item_id": log.item_ids[part], "timestamp": log.timestamps[part]}
        pq.write_table(pa.table(table), directory / "log" / f"part-{k:05d}.parquet")
    pq.write_table(pa.table({"user_id": users.ids, "segment": users.columns["segment"]}), directory / "users.parquet")
    pq.write_table(pa.table({"item_id": items.ids, "category": items.columns["category"]}), directory / "items.parquet")


def _unique_pairs_log(directory: Path, users: int, per_user: int) -> None:
    """A log whose (user, item) pairs are all distinct, so that a pair identifies an example."""
    user = np.repeat(np.arange(users), per_user)
    item = (user * 7 + np.tile(np.arange(per_user), users)) % 1000
    time = np.tile(np.arange(per_user, dtype=float), users)
    directory.mkdir(parents=True)
    for k, part in enumerate(np.array_split(np.arange(len(user)), 3)):
        table = pa.table(
            {"user_id": user[part].astype(str), "item_id": item[part].astype(str), "timestamp": time[part]}
        )
        pq.write_table(table, directory / f"{k}.parquet")


def test_plan_divides_shards_between_pipelines_and_refuses_what_cannot_work() -> None:
    examples = ShardedExamples(files=tuple(Path(f"{k}") for k in range(4)), rows=(10, 10, 9, 9))
    plan = plan_shards(examples, global_batch=4, pipelines=2, replicas=2)
    assert (plan.batch_size, plan.batches_per_step, plan.steps) == (2, 1, 9)  # the smaller share: 18 rows
    assert plan.files(examples, 0) == (0, 2) and plan.files(examples, 1) == (1, 3)
    assert plan.examples_per_epoch == 36
    assert plan_shards(examples, global_batch=4, max_steps=3).steps == 3
    with pytest.raises(ValueError, match="4 example shards, fewer than the 8 workers"):
        plan_shards(examples, global_batch=4, pipelines=8, replicas=8)
    with pytest.raises(ValueError, match=r"train\.batch_size 5 does not divide among 2 replicas"):
        plan_shards(examples, global_batch=5, pipelines=2, replicas=2)


def test_two_pipelines_read_disjoint_shards_and_see_every_example_once_per_epoch(tmp_path: Path) -> None:
    # 120 users x 12 events; leave-last-out holds out 2 each: 1200 training pairs in 4 shards of 300.
    _unique_pairs_log(tmp_path / "log", users=120, per_user=12)
    prepared = prepare_log(resolve_parquet_files(tmp_path / "log", field="f"), tmp_path / "p", shards=4)
    examples = prepared.train_examples()
    assert examples.rows == (300, 300, 300, 300)
    plan = plan_shards(examples, global_batch=100, pipelines=2, replicas=2)  # 50 per replica, 12 steps
    user_ids = prepared.vocabulary("user")[0].astype(str)
    row_of = {user: row for row, user in enumerate(user_ids.tolist())}
    epochs: list[list[tuple[int, int]]] = [[], []]
    for pipeline in range(2):
        dataset = shard_dataset(examples, {"user_id": user_ids}, plan, pipeline=pipeline, seed=1, shuffle_buffer=128)
        batches = list(dataset.take(2 * plan.steps).as_numpy_iterator())  # two epochs
        for step, (query, items, _weights) in enumerate(batches):
            users = [row_of[user.decode()] for user in query["user_id"].tolist()]  # the gathered user feature
            epochs[step // plan.steps] += list(zip(users, items.tolist(), strict=True))
    train = pa.concat_tables([pq.read_table(f) for f in examples.files])
    everything = sorted(zip(train["user"].to_pylist(), train["item"].to_pylist(), strict=True))
    assert len(everything) == len(set(everything)) == 1200
    for seen in epochs:
        assert sorted(seen) == everything  # each example exactly once across the two pipelines, every epoch
    assert epochs[0] != epochs[1]  # in a new order


def _config(tmp_path: Path, name: str, **data: object) -> object:
    return build_config(
        {
            "data": {
                "source": "files",
                "interactions": str(tmp_path / "log"),
                "user_features": str(tmp_path / "users.parquet"),
                "item_features": str(tmp_path / "items.parquet"),
                "user_categorical": "segment",
                "item_categorical": "category",
                **data,
            },
            "train": {"epochs": 3, "batch_size": 256, "learning_rate": 0.01, "patience": 0, "verbose": 0},
            "export": {"enabled": False},
            "output_dir": str(tmp_path / name),
        }
    )


@pytest.mark.slow
def test_streaming_run_matches_the_in_memory_run_on_the_same_log(tmp_path: Path) -> None:
    write_synthetic_parquet(tmp_path)
    memory = run(_config(tmp_path, "memory"))  # type: ignore[arg-type]
    streaming = run(_config(tmp_path, "streaming", streaming=True, shards=4))  # type: ignore[arg-type]
    assert (tmp_path / "streaming" / "prepared" / "prepared.json").exists()
    assert isinstance(streaming.data.train, ShardedExamples)
    m, s = (json.loads((r.run_dir / "metrics.json").read_text()) for r in (memory, streaming))
    assert {k: s["data"][k] for k in ("train", "validation", "test", "users", "items")} == {
        k: m["data"][k] for k in ("train", "validation", "test", "users", "items")
    }
    assert streaming.data.catalog.external_ids.tolist() == memory.data.catalog.external_ids.tolist()
    np.testing.assert_array_equal(streaming.data.catalog.popularity, memory.data.catalog.popularity)
    recall = [r["test"]["model"]["excluding_train"]["recall@10"] for r in (m, s)]
    popularity = m["test"]["popularity"]["excluding_train"]["recall@10"]
    assert recall[1] >= 2 * popularity
    assert recall[1] == pytest.approx(recall[0], abs=0.04)


def _refit_config(tmp_path: Path, name: str, models: bool = False, **data: object) -> object:
    config = _config(tmp_path, name, refit_on_validation=True, **data)
    return dataclasses.replace(
        config,  # type: ignore[type-var]
        train=dataclasses.replace(config.train, epochs=1),  # type: ignore[attr-defined]
        export=dataclasses.replace(
            config.export,  # type: ignore[attr-defined]
            enabled=models,
            models_dir=str(tmp_path / "models"),
            name=name,
        ),
    )


@pytest.mark.slow
def test_a_refit_streams_train_plus_validation_like_the_in_memory_refit(tmp_path: Path) -> None:
    write_synthetic_parquet(tmp_path, config=SyntheticConfig(num_users=300, num_items=400))
    memory = run(_refit_config(tmp_path, "memory"))  # type: ignore[arg-type]
    streaming = run(_refit_config(tmp_path, "streaming", models=True, streaming=True, shards=2))  # type: ignore[arg-type]
    prepared = json.loads((tmp_path / "streaming" / "prepared" / "prepared.json").read_text())
    assert prepared["split"]["refit"] is True and prepared["counts"]["validation"] == 0
    m, s = (json.loads((r.run_dir / "metrics.json").read_text()) for r in (memory, streaming))
    counts = ("train", "validation", "test", "users", "items")
    assert {k: s["data"][k] for k in counts} == {k: m["data"][k] for k in counts}
    assert s["data"]["validation"] == 0 and len(streaming.data.train) == m["data"]["train"]
    np.testing.assert_array_equal(streaming.data.catalog.popularity, memory.data.catalog.popularity)
    assert s["bundle"] and (Path(s["bundle"]) / "manifest.json").exists()


def test_a_refit_refuses_a_prepared_log_made_without_it(tmp_path: Path) -> None:
    write_synthetic_parquet(tmp_path, config=SyntheticConfig(num_users=100, num_items=200))
    files = resolve_parquet_files(str(tmp_path / "log"), field="data.interactions")
    prepare_log(files, tmp_path / "prepared", shards=2)
    config = _refit_config(tmp_path, "refit", prepared=str(tmp_path / "prepared"))
    with pytest.raises(ValueError, match=r"data\.refit_on_validation is True but the prepared log .* refit=False"):
        run(config)  # type: ignore[arg-type]
    assert not (tmp_path / "refit").exists()
