"""Scenario 6: tiny deadlines and clients that cancel: no work after the caller is gone, nothing leaks.

With the engine held busy, queued requests whose deadline passes or whose client cancels must never reach
the engine (counted by the observer: items computed, drops by reason). Under load with deadlines from 0.5 to
50 ms every answer is OK or DEADLINE_EXCEEDED. Afterwards the server's asyncio tasks, queued jobs and queue
depth are back to their baseline.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest

from service.batcher import BatcherConfig, _Job
from service.client import RetrievalClient
from service.observer import RecordingObserver
from tests.reliability.helpers import Results, load_requests, wait_for
from tests.service.helpers import ServerThread, server_config

SCENARIO = "deadlines_cancellation"
HELD = 20  # requests of each kind sent while the engine is held


async def _task_count() -> int:
    return len(asyncio.all_tasks())


def _jobs() -> int:
    gc.collect()
    return sum(isinstance(o, _Job) for o in gc.get_objects())


def _code(future: grpc.Future) -> str:
    try:
        future.result()
    except grpc.FutureCancelledError:
        return "CANCELLED"
    except grpc.RpcError as error:
        return str(error.code().name)
    return "OK"


@pytest.mark.slow
def test_expired_and_cancelled_requests_do_no_work_and_leak_nothing(reliability_bundle: Path, results: Results) -> None:
    observer = RecordingObserver()
    config = server_config(
        reliability_bundle.parent.parent,
        reload_interval_s=3600.0,
        batcher=BatcherConfig(max_batch_size=8, max_delay_us=500, queue_size=256, max_concurrent_batches=1),
    )
    requests = load_requests(64)
    with ServerThread(config, observer=observer) as server, RetrievalClient(server.target) as client:
        assert server.handles is not None
        client.retrieve("u1", 3)  # connection and first batch settled
        tasks_before, jobs_before = server.run(_task_count()), _jobs()
        computed_before = sum(observer.batch_sizes)

        # The engine is busy: requests wait in the queue, then time out or are cancelled by their clients.
        gate = threading.Event()
        server.handles.compute_executor.submit(gate.wait, 30)
        expiring = [client.stub.RetrieveCandidates.future(requests[i], timeout=0.2) for i in range(HELD)]
        cancelled = [client.stub.RetrieveCandidates.future(requests[i], timeout=30) for i in range(HELD)]
        time.sleep(0.3)
        for future in cancelled:
            future.cancel()
        held_codes = Counter(_code(f) for f in expiring + cancelled)
        time.sleep(0.2)
        gate.set()
        wait_for(lambda: observer.counters["dropped:deadline"] + observer.counters["dropped:cancelled"] >= 2 * HELD)
        time.sleep(0.2)
        computed_held = sum(observer.batch_sizes) - computed_before
        dropped = {k: v for k, v in observer.counters.items() if k.startswith("dropped:")}

        # Tiny deadlines while other requests keep the batcher busy.
        rng = np.random.default_rng(0)
        computed_before = sum(observer.batch_sizes)
        futures = [
            client.stub.RetrieveCandidates.future(requests[i % 64], timeout=float(rng.uniform(0.0005, 0.05)))
            for i in range(1000)
        ]
        tiny_codes = Counter(_code(f) for f in futures)
        time.sleep(0.3)
        computed_tiny = sum(observer.batch_sizes) - computed_before

        wait_for(lambda: server.handles is not None and server.handles.batcher.queue_depth == 0, timeout_s=10)
        wait_for(lambda: server.run(_task_count()) <= tasks_before, timeout_s=10)
        tasks_after, jobs_after = server.run(_task_count()), _jobs()
        assert client.retrieve("u1", 3).candidates
    results.record(
        SCENARIO,
        held_requests={"deadline_200ms": HELD, "cancelled_by_client": HELD},
        held_client_codes=dict(held_codes),
        held_items_computed=computed_held,
        dropped_by_reason=dropped,
        tiny_deadline_requests=len(futures),
        tiny_deadline_codes=dict(tiny_codes),
        tiny_items_computed=computed_tiny,
        asyncio_tasks={"before": tasks_before, "after": tasks_after},
        queued_jobs={"before": jobs_before, "after": jobs_after},
    )
    assert held_codes == Counter({"DEADLINE_EXCEEDED": HELD, "CANCELLED": HELD})
    assert computed_held == 0, f"{computed_held} expired or cancelled requests reached the engine"
    assert dropped.get("dropped:deadline", 0) + dropped.get("dropped:cancelled", 0) == 2 * HELD
    assert set(tiny_codes) <= {"OK", "DEADLINE_EXCEEDED"}, tiny_codes
    assert computed_tiny <= len(futures)
    assert tasks_after <= tasks_before and jobs_after == jobs_before == 0
