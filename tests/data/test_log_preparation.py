"""DuckDB log preparation against the in-memory split as the oracle; sharded Parquet inputs; retrieval-prepare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.data import DataError, InteractionLog, global_time_split, leave_last_out, load_interactions
from model.data.log_preparation import LogColumns, SplitRule, prepare_log
from model.data.parquet_files import resolve_parquet_files
from model.data.prepared_log import PreparedLog
from model.training.job import refit_split

ROOT = Path(__file__).resolve().parents[2]


def _write_log(directory: Path, n: int = 3000, files: int = 4, seed: int = 0) -> InteractionLog:
    """A random log over `files` Parquet files, with many equal timestamps (ties break by file order)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 200, n).astype(str)
    items = rng.integers(0, 300, n).astype(str)
    times = rng.integers(0, 40, n).astype(float)
    weights = rng.integers(1, 6, n).astype(np.float32)
    directory.mkdir(parents=True)
    for k in range(files):
        part = slice(k * n // files, (k + 1) * n // files)
        table = pa.table({"user_id": users[part], "item_id": items[part], "timestamp": times[part], "r": weights[part]})
        pq.write_table(table, directory / f"part-{k:03d}.parquet")
    (directory / "_SUCCESS").write_text("")  # what Spark leaves beside its files: skipped
    return InteractionLog(users, items, times, weights)


def _pairs(prepared: PreparedLog, users: np.ndarray, items: np.ndarray) -> list[tuple[str, str]]:
    user_ids, _ = prepared.vocabulary("user")
    item_ids, _ = prepared.vocabulary("item")
    return sorted(zip(user_ids[users].tolist(), item_ids[items].tolist(), strict=True))


def _train(prepared: PreparedLog) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in prepared.train_examples().files])


@pytest.mark.parametrize(
    "rule",
    [
        SplitRule(),
        SplitRule("time", validation_cutoff=30.0, test_cutoff=36.0),
        SplitRule(refit=True),
        SplitRule("time", validation_cutoff=30.0, test_cutoff=36.0, refit=True),
    ],
    ids=["leave-last-out", "time", "leave-last-out-refit", "time-refit"],
)
def test_prepared_split_vocabularies_and_frequencies_match_the_in_memory_path(tmp_path: Path, rule: SplitRule) -> None:
    log = _write_log(tmp_path / "log")
    files = resolve_parquet_files(tmp_path / "log", field="data.interactions")
    assert [f.name for f in files] == ["part-000.parquet", "part-001.parquet", "part-002.parquet", "part-003.parquet"]
    prepared = prepare_log(files, tmp_path / "prepared", columns=LogColumns(weight="r"), split=rule, shards=3)
    if rule.kind == "time":
        split = global_time_split(log, validation_cutoff=30.0, test_cutoff=36.0)
    else:
        split = leave_last_out(log)
    if rule.refit:  # validation events train, as in memory
        split = refit_split(split)
        assert prepared.manifest["split"]["refit"] is True
    expected = {part: sorted(zip(log.user_ids[rows], log.item_ids[rows], strict=True)) for part, rows in
                (("train", split.train), ("validation", split.validation), ("test", split.test))}  # fmt: skip
    for part in ("validation", "test"):
        held = prepared.held_out(part)
        assert _pairs(prepared, held.users, held.items) == expected[part]
    train = _train(prepared)
    assert _pairs(prepared, train["user"].to_numpy(), train["item"].to_numpy()) == expected["train"]
    assert float(pa.compute.sum(train["weight"]).as_py()) == pytest.approx(float(log.weights[split.train].sum()))

    item_ids, train_counts = prepared.vocabulary("item")
    assert item_ids.tolist() == sorted(set(log.item_ids.tolist()))  # sorted: row = internal id
    counted = dict(zip(*np.unique(log.item_ids[split.train], return_counts=True), strict=True))
    np.testing.assert_array_equal(train_counts, [counted.get(item, 0) for item in item_ids])
    assert prepared.counts == {"interactions": 3000, "users": len(set(log.user_ids.tolist())),
                               "items": len(item_ids), "train": len(split.train),
                               "validation": len(split.validation), "test": len(split.test)}  # fmt: skip
    rows = [s["rows"] for s in prepared.manifest["train_shards"]]
    assert max(rows) - min(rows) <= 1 and sum(rows) == len(split.train)  # dealt round-robin


def test_item_table_ids_join_the_catalog_with_zero_frequency(tmp_path: Path) -> None:
    _write_log(tmp_path / "log", n=200)
    pq.write_table(pa.table({"item_id": ["zzz-new", "0"], "genre": ["a", "b"]}), tmp_path / "items.parquet")
    files = resolve_parquet_files(str(tmp_path / "log" / "*.parquet"), field="data.interactions")
    prepared = prepare_log(files, tmp_path / "p", item_table=([tmp_path / "items.parquet"], "item_id"), shards=2)
    item_ids, counts = prepared.vocabulary("item")
    assert item_ids[-1] == "zzz-new" and counts[-1] == 0


def test_held_out_sample_and_histories_are_bounded_reads(tmp_path: Path) -> None:
    log = _write_log(tmp_path / "log")
    prepared = prepare_log(resolve_parquet_files(tmp_path / "log", field="f"), tmp_path / "p", shards=2)
    full = prepared.held_out("test")
    sample = prepared.held_out("test", limit=25, seed=3)
    assert len(sample.users) == 25
    assert set(zip(sample.users.tolist(), sample.items.tolist(), strict=True)) <= set(
        zip(full.users.tolist(), full.items.tolist(), strict=True)
    )
    users, items = prepared.histories(sample.users[:2], ("train", "validation"))
    user_ids, _ = prepared.vocabulary("user")
    split = leave_last_out(log)
    seen = np.concatenate([split.train, split.validation])
    wanted = set(user_ids[sample.users[:2]].tolist())
    expected = sorted((u, i) for u, i in zip(log.user_ids[seen], log.item_ids[seen], strict=True) if u in wanted)
    assert _pairs(prepared, users, items) == expected


def test_bad_inputs_name_the_field_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.interactions: .*nothing-here.*: no such file or directory"):
        resolve_parquet_files(tmp_path / "nothing-here", field="data.interactions")
    with pytest.raises(DataError, match=r"--interactions: .*\*.parquet: matches no files"):
        resolve_parquet_files(str(tmp_path / "*.parquet"), field="--interactions")
    pq.write_table(pa.table({"user_id": ["a", None], "item_id": ["x", "y"], "timestamp": [1, 2]}), tmp_path / "a.pq")
    files = [tmp_path / "a.pq"]
    with pytest.raises(DataError, match=r"data.interactions: .*a.pq: missing column\(s\) \['t'\]"):
        prepare_log(files, tmp_path / "p1", columns=LogColumns(time="t"))
    with pytest.raises(DataError, match="column 'user_id' has 1 null or empty ids"):
        prepare_log(files, tmp_path / "p2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pq"]  # nothing left behind
    with pytest.raises(DataError, match=r"no prepared\.json"):
        PreparedLog.open(tmp_path)


def test_in_memory_loader_reads_a_directory_of_parquet_files(tmp_path: Path) -> None:
    log = _write_log(tmp_path / "log", n=100)
    loaded = load_interactions(tmp_path / "log", weight_col="r")
    assert loaded.user_ids.tolist() == log.user_ids.tolist() and loaded.weights.tolist() == log.weights.tolist()


def test_retrieval_prepare_writes_a_prepared_log_and_refuses_an_existing_output(tmp_path: Path) -> None:
    _write_log(tmp_path / "log", n=300)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "model.prepare_cli", "--interactions", "log", "--output", "out", "--shards", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("wrote out from 4 files: ")
    counts = json.loads(done.stdout.split(": ", 1)[1])
    assert counts == PreparedLog.open(tmp_path / "out").counts and counts["interactions"] == 300
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert again.returncode == 1 and again.stderr == "retrieval-prepare: error: out: already exists (a prepared " \
        "log is written once; choose a new directory)\n"  # fmt: skip
    bad = subprocess.run([*cmd[:-4], "--output", "o2", "--split", "time", "--test-cutoff", "-1"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--validation-cutoff/--test-cutoff: cutoffs must increase" in bad.stderr
    with_sequences = subprocess.run([*cmd[:-4], "--output", "o3", "--shards", "3", "--sequences"],
                                    capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)  # fmt: skip
    assert with_sequences.returncode == 0, with_sequences.stderr
    sequences = PreparedLog.open(tmp_path / "o3").sequence_files()
    assert [f.name for f in sequences] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    events = pa.concat_tables([pq.read_table(f) for f in sequences])
    assert events.num_rows == counts["train"] + counts["validation"]  # every event but the test ones
    assert int(pa.compute.sum(events["validation"]).as_py()) == counts["validation"]
    for k, path in enumerate(sequences):  # user u in file u % 3, sorted by user
        users = pq.read_table(path)["user"].to_numpy()
        assert (users % 3 == k).all() and (np.diff(users) >= 0).all()
    assert "sequence_shards" not in PreparedLog.open(tmp_path / "out").manifest  # only when asked
