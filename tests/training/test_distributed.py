"""tf.distribute: two worker processes on loopback train together and match single-worker quality; streaming
workers read disjoint example shards (two-tower) or sequence shards (sequential tower)."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from model.data.log_preparation import prepare_log
from model.data.parquet_files import resolve_parquet_files
from model.sequence.sequences import Padding
from model.training.config import SequenceConfig
from model.training.sequence_stream import sequence_shards
from model.training.sequential import make_objective
from tests.training.test_streaming import write_synthetic_parquet

ARGS = [
    "--data.source", "synthetic", "--train.epochs", "3", "--train.batch_size", "256",
    "--train.learning_rate", "0.01", "--train.patience", "0", "--train.verbose", "0", "--export.enabled", "false",
]  # fmt: skip
TOWERS = {
    "two-tower": [],
    # a causal transformer over each user's recent items, overlapping windows, in-batch negatives
    "sequential": [
        "--model.tower", "sequential", "--sequence.max_length", "8", "--sequence.stride", "4",
        "--sequence.num_layers", "1", "--train.batch_size", "64", "--train.learning_rate", "0.005",
    ],
}  # fmt: skip


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _two_workers(cmd, output_dir, env):
    """Runs `cmd` as both workers of a two-worker cluster on loopback; their stderr, once both succeeded."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(
            subprocess.Popen(
                [*cmd, "--train.strategy", "multi-worker", "--output_dir", str(output_dir)],
                env={**env, "TF_CONFIG": json.dumps(tf_config)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    errors = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=500)
        assert proc.returncode == 0, stderr[-3000:]
        errors.append(stderr)
    return errors


def _recall(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics["test"]["model"]["excluding_train"]["recall@10"]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("tower", list(TOWERS))
def test_two_worker_multi_worker_training_matches_single_worker(tmp_path, tower):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "model.cli", *ARGS, *TOWERS[tower]]
    single = subprocess.run([*cmd, "--output_dir", str(tmp_path / "single")], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]

    stderr = _two_workers(cmd, tmp_path / "multi", env)[-1]
    assert "multi-worker strategy: 2 workers, 2 replicas in sync" in stderr  # one collective group

    chief, other = tmp_path / "multi", tmp_path / "multi" / ".worker-1"
    assert (chief / "metrics.json").exists() and (other / "metrics.json").exists()
    assert _recall(chief) == pytest.approx(_recall(tmp_path / "single"), abs=0.04)
    assert _recall(chief) == pytest.approx(_recall(other), abs=1e-6)  # replicas hold the same weights


SHARD_LINE = re.compile(
    r"input pipeline (\d) of 2 reads shards ([\d,]+): (\d+) (?:examples|windows), (\d+) steps of (\d+) per epoch"
)


def _shard_reads(cmd, output_dir, env):
    """Runs `cmd` on two workers; per input pipeline: (its shards, its rows, the rows an epoch reads), as each
    worker logs them once."""
    reads = {}
    for stderr in _two_workers(cmd, output_dir, env):
        (match,) = {m.groups() for m in SHARD_LINE.finditer(stderr)}  # logged once per worker
        pipeline, shards, rows, steps, batch = match
        reads[int(pipeline)] = ({int(s) for s in shards.split(",")}, int(rows), int(steps) * int(batch))
    return reads


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_stream_disjoint_shards_and_match_single_worker(tmp_path):
    """FILE sharding: each worker reads its own example shards; together they read every example once."""
    write_synthetic_parquet(tmp_path)  # 2000 users x 20 events; leave-last-out: 36000 training examples
    files = resolve_parquet_files(tmp_path / "log", field="f")
    items = ([tmp_path / "items.parquet"], "item_id")
    prepared = prepare_log(files, tmp_path / "prepared", item_table=items, shards=4)
    assert prepared.counts["train"] == 36000
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    streaming = [
        "--data.source", "files", "--data.prepared", str(tmp_path / "prepared"),
        "--data.user_features", str(tmp_path / "users.parquet"), "--data.user_categorical", "segment",
        "--data.item_features", str(tmp_path / "items.parquet"), "--data.item_categorical", "category",
        "--train.batch_size", "240",  # 120 per worker: 18000 examples per worker = 150 steps, nothing left over
    ]  # fmt: skip
    cmd = [sys.executable, "-m", "model.cli", *ARGS, *streaming]
    single = subprocess.run([*cmd, "--output_dir", str(tmp_path / "single")], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]

    reads = _shard_reads(cmd, tmp_path / "multi", env)
    assert reads[0][0] == {0, 2} and reads[1][0] == {1, 3}  # disjoint files, together all of them
    assert reads[0][1] + reads[1][1] == 36000  # every training example belongs to exactly one worker
    assert reads[0][2] == reads[0][1] and reads[1][2] == reads[1][1]  # and each epoch reads all of its share

    chief, other = tmp_path / "multi", tmp_path / "multi" / ".worker-1"
    history = json.loads((chief / "metrics.json").read_text())["training"]["history"]
    assert len(history) == 3 and all(round(row["examples_per_second"] * row["seconds"]) == 36000 for row in history)
    assert _recall(chief) == pytest.approx(_recall(tmp_path / "single"), abs=0.04)
    assert _recall(chief) == pytest.approx(_recall(other), abs=1e-6)  # replicas hold the same weights


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_stream_their_own_sequence_shards_and_match_single_worker(tmp_path):
    """The sequential tower from a prepared log: each worker cuts the windows of its own sequence shards."""
    write_synthetic_parquet(tmp_path)
    files = resolve_parquet_files(tmp_path / "log", field="f")
    prepared = prepare_log(files, tmp_path / "prepared", shards=4, sequences=True)
    length = make_objective(SequenceConfig()).window_length(8)  # the TOWERS flags: max_length 8, stride 4
    windows = sequence_shards(prepared, window_length=length, stride=4, padding=Padding.LEFT).windows
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "model.cli", *ARGS, *TOWERS["sequential"], "--data.source", "files",
           "--data.prepared", str(tmp_path / "prepared")]  # fmt: skip
    single = subprocess.run([*cmd, "--output_dir", str(tmp_path / "single")], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]

    reads = _shard_reads(cmd, tmp_path / "multi", env)
    assert reads[0][0] == {0, 2} and reads[1][0] == {1, 3}  # disjoint files, together all of them
    assert reads[0][1] == windows[0] + windows[2] and reads[1][1] == windows[1] + windows[3]
    per_epoch = min(reads[0][1], reads[1][1]) // 32 * 32  # both run the smaller share's full batches of 32
    assert reads[0][2] == reads[1][2] == per_epoch > 0.45 * sum(windows)

    chief, other = tmp_path / "multi", tmp_path / "multi" / ".worker-1"
    assert _recall(chief) == pytest.approx(_recall(tmp_path / "single"), abs=0.05)
    assert _recall(chief) == pytest.approx(_recall(other), abs=1e-6)  # replicas hold the same weights
