"""The served large-catalog benchmark on a small catalog: a real export, two real `retrieval-serve` processes,
recall through gRPC against exact search, the floor and the load phases in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import large_catalog_serving


@pytest.mark.slow
def test_served_re_rank_beats_pq_order_and_the_report_has_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = large_catalog_serving.main(
        ["--quick", "--items", "20000", "--concurrency", "1,8", "--duration-s", "1", "--warmup-s", "0.3",
         "--recall-queries", "30", "--reload-window-s", "8",
         "--work-dir", str(tmp_path / "work"), "--out-dir", str(out)]
    )  # fmt: skip
    reranked, plain = report["services"]
    assert (reranked["model"], plain["model"]) == ("ivfpq-20k", "ivfpq-20k-no-rerank")
    assert report["bundle"]["params"]["k_factor"] == large_catalog_serving.K_FACTOR
    assert reranked["recall"]["recall_at_100"] >= max(0.9, plain["recall"]["recall_at_100"])
    assert reranked["recall"]["queries"] == 30
    reload = reranked["hot_reload"]  # version 2 swapped in under load: answered by, and no call failed
    assert reload["reload_s"] is not None and reload["load"]["completed_ok"] > 0 and not reload["load"]["errors"]
    assert "hot_reload" not in plain
    for target in [*report["floor"], reranked["phases"], plain["phases"]]:
        assert set(target) == {"1", "8"}
        assert all(phase["qps"] > 0 and not phase["errors"] for phase in target.values())
    assert json.loads((out / "large_catalog_serving.json").read_text())["settings"]["items"] == 20_000
    assert "ivfpq-20k-no-rerank" in (out / "large_catalog_serving.md").read_text()
