"""tf.distribute: two worker processes on loopback train together and match single-worker quality."""

import json
import os
import socket
import subprocess
import sys

import pytest

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

    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(
            subprocess.Popen(
                [*cmd, "--train.strategy", "multi-worker", "--output_dir", str(tmp_path / "multi")],
                env={**env, "TF_CONFIG": json.dumps(tf_config)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, stderr = proc.communicate(timeout=500)
        assert proc.returncode == 0, stderr[-3000:]
    assert "multi-worker strategy: 2 workers, 2 replicas in sync" in stderr  # one collective group

    chief, other = tmp_path / "multi", tmp_path / "multi" / ".worker-1"
    assert (chief / "metrics.json").exists() and (other / "metrics.json").exists()
    assert _recall(chief) == pytest.approx(_recall(tmp_path / "single"), abs=0.04)
    assert _recall(chief) == pytest.approx(_recall(other), abs=1e-6)  # replicas hold the same weights
