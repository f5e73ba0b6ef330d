"""Scenario 3: ten new bundle versions published (atomically, by `export_bundle`) while load runs.

No request fails; every response names a version that was serving at some moment between the call's start
and its end; once the load stops, every replaced engine is garbage collected (weak references die), so old
versions do not pile up in memory.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from pathlib import Path

import pytest

from bench.load import LoadRunner
from service.engine import Engine
from service.model_manager import load_engine
from service.observer import NullObserver
from tests.reliability.helpers import SOAK, Results, load_requests, rss_bytes, wait_for
from tests.service.helpers import ServerThread, export_test_bundle, server_config

SCENARIO = "hot_swap"
VERSIONS = 30 if SOAK else 10
# Time between the swap and the observer hearing of it, and clock skew between threads.
SLACK_S = 0.05


class SwapClock(NullObserver):
    """Records when each version finished loading and when the observer heard it went live (time.monotonic).

    The manager swaps between the two, so a version serves no earlier than `loaded_at` and stops being picked
    before its successor's `live_from`; `live_from` alone can lag the swap by a thread switch, which under
    load is longer than the slack.
    """

    def __init__(self) -> None:
        self.loaded_at: dict[int, float] = {}
        self.live_from: dict[int, float] = {}

    def on_model_loaded(self, model: str, version: int, index_type: str, device: str, item_count: int) -> None:
        self.live_from[version] = time.monotonic()


@pytest.mark.slow
def test_hot_swaps_under_load_fail_nothing_and_release_old_versions(
    models_dir: Path, tmp_path: Path, results: Results
) -> None:
    export_test_bundle(models_dir, version=1, seed=1)
    clock, engines = SwapClock(), []
    lock = threading.Lock()

    def tracking_loader(path: Path) -> Engine:
        engine = load_engine(path, gpu_device=-1, warmup_batch_sizes=(1, 64))
        with lock:
            engines.append(weakref.ref(engine))
            clock.loaded_at[int(path.name)] = time.monotonic()
        return engine

    config = server_config(models_dir, reload_interval_s=0.05, grace_period_s=2.0)
    rss_before = rss_bytes(os.getpid())
    with ServerThread(config, observer=clock, loader=tracking_loader) as server:
        runner = LoadRunner(server.target, load_requests(64), concurrency=8, timeout_s=10.0).start()
        publish_seconds = []
        for version in range(2, VERSIONS + 2):
            started = time.monotonic()
            export_test_bundle(models_dir, version=version, seed=version)
            wait_for(lambda v=version: v in clock.live_from, timeout_s=60)
            publish_seconds.append(time.monotonic() - started)
        time.sleep(0.5)
        stats = runner.stop()
        assert server.handles is not None
        current = server.handles.manager.current
        assert current is not None
        serving = current.manifest.model_version
        del current
        alive_while_serving = _alive_versions(engines)
    alive_after_shutdown = _alive_versions(engines)
    rss_after = rss_bytes(os.getpid())

    live = sorted(clock.live_from.items())
    intervals = {v: (clock.loaded_at[v] - SLACK_S, live[i + 1][1] + SLACK_S if i + 1 < len(live) else float("inf"))
                 for i, (v, _) in enumerate(live)}  # fmt: skip
    out_of_window = [
        (c.version, round(c.start, 3), round(c.end, 3))
        for c in stats.calls
        if c.code == "OK" and not _overlaps(intervals.get(int(c.version)), c.start, c.end)
    ]
    served_versions = sorted({int(c.version) for c in stats.calls if c.code == "OK"})
    results.record(
        SCENARIO,
        versions_published=VERSIONS,
        versions_loaded=len(live),
        versions_seen_in_responses=len(served_versions),
        **stats.summary(),
        out_of_window_responses=len(out_of_window),
        publish_to_serving_s_max=max(publish_seconds),
        engines_loaded=len(engines),
        engines_alive_while_serving=alive_while_serving,
        engines_alive_after_shutdown=alive_after_shutdown,
        test_process_rss_growth_mb=round((rss_after - rss_before) / 2**20, 1),
    )
    assert dict(stats.codes) == {"OK": len(stats.calls)}, stats.codes
    assert not out_of_window, out_of_window[:5]
    assert [v for v, _ in live] == list(range(1, VERSIONS + 2))
    assert len(served_versions) >= VERSIONS // 2  # most versions answered some of the load
    assert alive_while_serving == [serving], f"old engines {alive_while_serving} still referenced"
    assert alive_after_shutdown == [], f"engines {alive_after_shutdown} still referenced after shutdown"
    assert serving == VERSIONS + 1


def _overlaps(interval: tuple[float, float] | None, start: float, end: float) -> bool:
    return interval is not None and start <= interval[1] and end >= interval[0]


def _alive_versions(engines: list[weakref.ref[Engine]]) -> list[int]:
    gc.collect()
    return sorted(e.manifest.model_version for ref in engines if (e := ref()) is not None)
