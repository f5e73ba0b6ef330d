"""The training job pushes its metrics to a real Prometheus Pushgateway."""

import urllib.request

import pytest

from model.training.config import build_config
from model.training.job import run
from tests.process_helpers import free_port, require_binary, running


def _samples(text, name):
    return {line.split(" ")[0]: float(line.split(" ")[-1]) for line in text.splitlines() if line.startswith(name)}


@pytest.mark.slow
def test_training_job_pushes_to_pushgateway(tmp_path):
    binary = require_binary("prometheus-pushgateway")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.interval=0"]
    with running(args, f"{url}/-/ready"):
        config = build_config(
            {
                "data": {"source": "synthetic"},
                "train": {"epochs": 1, "verbose": 0},
                "export": {"enabled": False, "name": "pushed"},
                "output_dir": str(tmp_path / "run"),
                "pushgateway": f"127.0.0.1:{port}",
            }
        )
        result = run(config)
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    training, test = result.metrics["training"], result.metrics["test"]["model"]
    speed = _samples(text, "retrieval_train_examples_per_second")
    assert speed == {'retrieval_train_examples_per_second{instance="",job="retrieval_train",model="pushed"}':
                     pytest.approx(training["examples_per_second"], rel=1e-6)}  # fmt: skip
    recall = _samples(text, "retrieval_train_test_recall")
    key = (
        'retrieval_train_test_recall{exclusion="excluding_train",instance="",job="retrieval_train",'
        'k="10",model="pushed"}'
    )
    assert recall[key] == pytest.approx(test["excluding_train"]["recall@10"], rel=1e-6)
    loss = _samples(text, "retrieval_train_loss")
    assert list(loss.values()) == [pytest.approx(training["history"][-1]["loss"], rel=1e-6)]
