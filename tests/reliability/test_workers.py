"""Scenario 10: `retrieval-serve --workers 2`, worker processes behind one port.

Each worker hot-reloads on its own and refuses a broken bundle on its own; one /metrics endpoint sums every
worker's counters; health is SERVING only while every worker is warm; a worker killed with SIGKILL is
restarted, and only calls in flight on it fail, with UNAVAILABLE; SIGTERM drains every worker and the server
exits 0.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import grpc
import pytest

from bench.load import LoadRunner, between
from service.client import build_request
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from tests.observability.helpers import scrape, settled_scrape, value
from tests.reliability.helpers import Oracle, Results, ServeProcess, load_requests, wait_for
from tests.reliability.test_broken_bundles import truncated_index
from tests.service.helpers import MODEL, export_test_bundle

SCENARIO = "workers"
WORKERS = 2
CHANNELS = 8  # connections: SO_REUSEPORT spreads them over the workers
pytestmark = pytest.mark.slow

_STARTED = re.compile(r"worker started index=(\d+) pid=(\d+)")


def worker_pids(server: ServeProcess) -> dict[int, int]:
    """The pid of each worker index, from the supervisor's log (the latest start of each)."""
    return {int(index): int(pid) for index, pid in _STARTED.findall(server.log())}


def reloads(server: ServeProcess, result: str) -> float:
    return value(scrape(server.metrics_port), "retrieval_model_reloads_total", result=result) or 0.0


def versions_seen(server: ServeProcess, count: int = 32) -> set[str]:
    """Model versions answering `count` calls, each over a connection of its own (so every worker is asked)."""
    seen = set()
    for _ in range(count):
        with grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            response = pb_grpc.RetrievalServiceStub(channel).RetrieveCandidates(build_request("u1", 3), timeout=10)
            seen.add(response.model_version)
    return seen


def test_each_worker_reloads_refuses_broken_bundles_and_metrics_add_up(
    models_dir: Path, reliability_bundle: Path, tmp_path: Path, results: Results
) -> None:
    shutil.copytree(reliability_bundle, models_dir / MODEL / "1")
    requests = load_requests(32)
    args = ("--workers", str(WORKERS), "--reload-interval-s", "0.2")
    with ServeProcess(models_dir, tmp_path / "serve.log", *args) as server:
        pids = worker_pids(server)
        assert sorted(pids) == [0, 1] and len(set(pids.values())) == WORKERS and server.pid not in pids.values()
        assert reloads(server, "success") == WORKERS  # every worker loaded version 1 itself

        stats = LoadRunner(server.target, requests, concurrency=16, channels=CHANNELS).run_for(3.0)
        assert set(stats.codes) == {"OK"}
        handled = value(
            settled_scrape(server.metrics_port), "grpc_server_handled_total",
            grpc_service="retrieval.v1.RetrievalService", grpc_method="RetrieveCandidates", grpc_type="unary",
            grpc_code="OK",
        )  # fmt: skip
        assert handled == len(stats.calls)  # one endpoint, the sum over the workers

        broken = export_test_bundle(tmp_path / "staging", version=2, seed=2)
        truncated_index(broken)
        os.rename(broken, models_dir / MODEL / "2")
        wait_for(lambda: reloads(server, "failure") == WORKERS, 30)  # refused by each worker
        assert versions_seen(server) == {"1"}

        good = export_test_bundle(tmp_path / "staging2", version=3, seed=3)
        os.rename(good, models_dir / MODEL / "3")
        wait_for(lambda: reloads(server, "success") == 2 * WORKERS, 60)
        assert versions_seen(server) == {"3"}
        oracle = Oracle(models_dir / MODEL / "3", requests)
        checked = LoadRunner(server.target, requests, concurrency=8, channels=CHANNELS, check=oracle.check).run_for(2.0)
        assert set(checked.codes) == {"OK"} and not checked.problems
        assert server.health() == "SERVING"
    results.record(
        SCENARIO,
        reload_calls=len(stats.calls),
        reload_codes=dict(stats.codes),
        reloads_per_worker_success=2,
        reloads_per_worker_failure=1,
    )


def test_a_killed_worker_is_restarted_and_only_its_calls_fail_with_unavailable(
    models_dir: Path, reliability_bundle: Path, tmp_path: Path, results: Results
) -> None:
    shutil.copytree(reliability_bundle, models_dir / MODEL / "1")
    requests = load_requests(32)
    concurrency = 16
    with ServeProcess(models_dir, tmp_path / "serve.log", "--workers", str(WORKERS)) as server:
        victim = worker_pids(server)[0]
        # Wait-for-ready, as a production client would call: a call on a connection that the kill broke waits for
        # the reconnection (to the live worker) instead of failing at the client without reaching any server.
        load = LoadRunner(
            server.target, requests, concurrency=concurrency, channels=CHANNELS, wait_for_ready=True
        ).start()
        time.sleep(1.0)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        statuses = []
        while time.monotonic() - killed_at < 3.0:
            statuses.append(server.health())
            time.sleep(0.05)
        wait_for(lambda: worker_pids(server)[0] != victim, 10)  # restarted
        wait_for(lambda: server.health() == "SERVING", 90)
        recovered_at = time.monotonic()
        time.sleep(1.0)
        stats = load.stop()
    failed = [c for c in stats.calls if c.code != "OK"]
    assert {c.code for c in failed} <= {"UNAVAILABLE"}, load.details
    # Only the calls in flight on the killed worker fail: at most one per caller, all started before the kill.
    assert len(failed) <= concurrency and all(c.start < killed_at + 0.05 for c in failed)
    assert "NOT_SERVING" in statuses  # a worker short: not every worker is warm
    after = between(stats.calls, killed_at + 0.05, recovered_at)
    assert after.throughput > 0 and set(after.codes) == {"OK"}  # the live worker carried the load meanwhile
    results.record(
        SCENARIO,
        kill_calls=len(stats.calls),
        kill_failed_unavailable=len(failed),
        kill_concurrency=concurrency,
        kill_recovery_s=recovered_at - killed_at,
        kill_ok_per_s_meanwhile=after.throughput,
    )


def test_sigterm_drains_every_worker_and_exits_zero(
    models_dir: Path, reliability_bundle: Path, tmp_path: Path, results: Results
) -> None:
    shutil.copytree(reliability_bundle, models_dir / MODEL / "1")
    requests = load_requests(32)
    server = ServeProcess(models_dir, tmp_path / "serve.log", "--workers", str(WORKERS), "--drain-s", "0.5").start()
    try:
        pids = list(worker_pids(server).values())
        load = LoadRunner(server.target, requests, concurrency=16, channels=CHANNELS).start()
        time.sleep(1.0)
        signalled = time.monotonic()
        server.terminate()
        assert server.proc is not None
        code = server.proc.wait(30)
        stats = load.stop()
    finally:
        server.stop()
    assert code == 0, server.log()[-3000:]
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
    before = [c for c in stats.calls if c.start < signalled - 0.05]
    assert before and {c.code for c in before} == {"OK"}  # sent before the signal: answered
    draining = [c for c in stats.calls if c.start < signalled + 0.4]  # the workers still answer UNAVAILABLE
    assert {c.code for c in draining} <= {"OK", "UNAVAILABLE"}, load.details
    # Later calls may meet a closing port: refused (UNAVAILABLE) or, in the instant of the close, CANCELLED.
    assert {c.code for c in stats.calls} <= {"OK", "UNAVAILABLE", "CANCELLED"}, load.details
    assert server.log().count("server drained") == WORKERS
    results.record(SCENARIO, sigterm_calls=len(stats.calls), sigterm_codes=dict(stats.codes))
