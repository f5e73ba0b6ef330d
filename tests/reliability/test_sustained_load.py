"""Scenario 1: a real `retrieval-serve` process under closed-loop load: no errors, exact answers, flat RSS."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bench.load import LoadRunner
from tests.reliability.helpers import SOAK, Oracle, Results, ServeProcess, load_requests

SCENARIO = "sustained_load"
DURATION_S = 600.0 if SOAK else 30.0
WARMUP_S = 3.0
CONCURRENCY = 16
# Growth of resident memory allowed after the warm-up (allocator arenas and gRPC buffers settle early).
MAX_RSS_GROWTH_MB = 64.0


@pytest.mark.slow
def test_sustained_load_is_error_free_correct_and_memory_flat(
    reliability_bundle: Path, tmp_path: Path, results: Results
) -> None:
    requests = load_requests(64)
    oracle = Oracle(reliability_bundle, requests)
    with ServeProcess(reliability_bundle.parent.parent, tmp_path / "serve.log") as server:
        rss_samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                rss_samples.append(server.rss())

        start_rss = server.rss()
        sampler = threading.Thread(target=sample, daemon=True)
        runner = LoadRunner(server.target, requests, concurrency=CONCURRENCY, timeout_s=10.0, check=oracle.check)
        runner.start()
        sampler.start()
        time.sleep(DURATION_S)
        stats = runner.stop()
        done.set()
        sampler.join()
        alive = server.proc is not None and server.proc.poll() is None
    warm = rss_samples[int(WARMUP_S)] if len(rss_samples) > WARMUP_S else rss_samples[0]
    growth_mb = (rss_samples[-1] - warm) / 2**20
    results.record(
        SCENARIO,
        duration_s=DURATION_S,
        concurrency=CONCURRENCY,
        **stats.summary(),
        rss_start_mb=round(start_rss / 2**20, 1),
        rss_after_warmup_mb=round(warm / 2**20, 1),
        rss_end_mb=round(rss_samples[-1] / 2**20, 1),
        rss_max_mb=round(max(rss_samples) / 2**20, 1),
        rss_growth_mb=round(growth_mb, 1),
        rss_growth_limit_mb=MAX_RSS_GROWTH_MB,
    )
    assert alive
    assert dict(stats.codes) == {"OK": len(stats.calls)}, stats.codes
    assert not stats.problems, stats.problems[:5]
    assert len(stats.calls) > 100 * DURATION_S / 30
    assert growth_mb <= MAX_RSS_GROWTH_MB, f"RSS grew {growth_mb:.1f} MB after the warm-up"
