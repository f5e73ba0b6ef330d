"""Model metrics across hot reloads: model_info follows the serving version, a refused bundle counts as failure."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.observability.helpers import scrape, value
from tests.service.helpers import MODEL, ServerThread, export_test_bundle, server_config


def _wait_for(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.05)


def _model_info(port: int) -> list[dict[str, str]]:
    return [dict(labels) for (name, labels), v in scrape(port).items() if name == "retrieval_model_info" and v == 1]


@pytest.mark.slow
def test_model_info_and_reload_counts_follow_hot_reloads(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    (models_dir / MODEL).mkdir(parents=True)
    config = server_config(models_dir, reload_interval_s=0.05, metrics_port=0)
    with ServerThread(config).start(wait_ready=False) as server:
        assert server.handles is not None and server.handles.metrics_port
        port = server.handles.metrics_port
        assert _model_info(port) == [] and value(scrape(port), "retrieval_index_items") == 0

        export_test_bundle(models_dir, version=1)
        _wait_for(lambda: len(_model_info(port)) == 1)
        export_test_bundle(models_dir, version=2, seed=2, num_items=300)
        _wait_for(lambda: _model_info(port)[0]["version"] == "2")
        assert _model_info(port) == [{"model": MODEL, "version": "2", "index_type": "Flat", "device": "cpu"}]

        broken = export_test_bundle(tmp_path / "staging", version=3, seed=3)
        (broken / "index.faiss").write_bytes(b"not an index")
        os.rename(broken, models_dir / MODEL / "3")
        _wait_for(lambda: value(scrape(port), "retrieval_model_reloads_total", result="failure") == 1)
        samples = scrape(port)
    assert value(samples, "retrieval_model_reloads_total", result="success") == 2
    assert value(samples, "retrieval_index_items") == 300
    assert [dict(labels)["version"] for (name, labels) in samples if name == "retrieval_model_info"] == ["2"]
