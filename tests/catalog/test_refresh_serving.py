"""A refreshed catalog served: the server hot-swaps to it under load and answers like exact search over it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from bench.load import LoadRunner
from model.catalog_refresh import refresh_catalog
from service.client import RetrievalClient, build_request
from tests.catalog.helpers import export_item_bundle, item_rows, write_table
from tests.reliability.helpers import load_requests, wait_for
from tests.service.helpers import ServerThread, oracle_top_k, server_config

NEW = list(range(1000, 1060))
USERS = [f"u{i}" for i in range(0, 30, 2)] + ["stranger"]


def _features() -> dict[str, np.ndarray]:
    n = len(USERS)
    return {
        "user_id": np.array(USERS, dtype=object),
        "genres": np.array([["drama", "", ""]] * n, dtype=object),
        "country": np.array(["FR"] * n, dtype=object),
        "age": np.linspace(18, 70, n).astype(np.float32),
    }


@pytest.mark.slow
def test_refresh_hot_swaps_under_load_with_no_failures_and_serves_exact_answers(tmp_path: Path) -> None:
    models = tmp_path / "models"
    parent, _ = export_item_bundle(models)
    table = write_table(tmp_path / "items.parquet", item_rows([*range(20, 300), *NEW]))
    config = server_config(models, reload_interval_s=0.05, grace_period_s=2.0)
    with ServerThread(config) as server:
        assert server.handles is not None
        runner = LoadRunner(server.target, load_requests(64), concurrency=8, timeout_s=10.0).start()
        time.sleep(1.0)
        path = refresh_catalog(parent, table).path
        wait_for(lambda: server.handles.manager.current.manifest.model_version == 2, timeout_s=60)
        time.sleep(1.0)
        stats = runner.stop()
        features, k = _features(), 20
        with RetrievalClient(server.target) as client:
            responses = [
                client.call(
                    client.stub.RetrieveCandidates,
                    build_request(
                        USERS[i],
                        k,
                        features={"genres": ["drama"], "country": "FR", "age": float(features["age"][i])},
                    ),
                )
                for i in range(len(USERS))
            ]
    assert dict(stats.codes) == {"OK": len(stats.calls)}, stats.codes
    assert {c.version for c in stats.calls} == {"1", "2"}
    expected_ids, expected_scores = oracle_top_k(path, features, k)
    served = [[c.item_id for c in r.candidates] for r in responses]
    assert served == expected_ids
    for response, scores in zip(responses, expected_scores, strict=True):
        assert response.model_version == "2"
        np.testing.assert_allclose([c.score for c in response.candidates], scores, atol=1e-5)
    new_ids = {f"item{r:04d}" for r in NEW}
    assert new_ids & {item for row in served for item in row}, "no new item retrieved"
    assert not {f"item{r:04d}" for r in range(20)} & {item for row in served for item in row}
