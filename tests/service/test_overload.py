"""Back-pressure over gRPC: RESOURCE_EXHAUSTED when the queue is full, DEADLINE_EXCEEDED honoured."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from service.batcher import BatcherConfig
from service.client import RetrievalClient, build_request
from service.observer import RecordingObserver
from service.validation import ServiceLimits
from tests.service.helpers import ServerThread, server_config


@pytest.fixture(scope="module")
def tiny_queue(bundle_path: Path) -> Iterator[tuple[ServerThread, RecordingObserver]]:
    observer = RecordingObserver()
    config = server_config(
        bundle_path.parent.parent,
        batcher=BatcherConfig(max_batch_size=1, max_delay_us=0, queue_size=2, max_concurrent_batches=1),
        limits=ServiceLimits(max_batch_requests=2),
        reload_interval_s=3600.0,
    )
    with ServerThread(config, observer=observer) as srv:
        yield srv, observer


def _hold_engine(srv: ServerThread) -> threading.Event:
    """Blocks the compute thread until the returned event is set (a slow engine)."""
    assert srv.handles is not None
    gate = threading.Event()
    srv.handles.compute_executor.submit(gate.wait, 30)
    return gate


def test_full_queue_is_resource_exhausted(tiny_queue: tuple[ServerThread, RecordingObserver]) -> None:
    srv, observer = tiny_queue
    gate = _hold_engine(srv)
    with RetrievalClient(srv.target) as client:
        client.service_info()
        futures = [client.stub.RetrieveCandidates.future(build_request("u1", 2), timeout=30) for _ in range(8)]
        time.sleep(0.3)
        gate.set()
        codes = []
        for future in futures:
            try:
                future.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
                assert "queue full" in error.details()
        with pytest.raises(grpc.RpcError) as batch_error:  # 3 requests can never fit a queue of 2
            client.retrieve_batch([build_request("u1", 1)] * 3)
        assert client.retrieve("u1", 2).candidates  # serving again once the queue drained
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert codes.count(grpc.StatusCode.OK) in (2, 3)  # the queue, plus at most one taken by the batcher
    assert observer.counters["rejected"] == codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert batch_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # over max_batch_requests


def test_deadline_exceeded_and_the_expired_request_is_dropped(
    tiny_queue: tuple[ServerThread, RecordingObserver],
) -> None:
    srv, observer = tiny_queue
    dropped_before = observer.counters["dropped:deadline"] + observer.counters["dropped:cancelled"]
    batches_before = observer.counters["batches"]
    gate = _hold_engine(srv)
    with RetrievalClient(srv.target) as client:
        client.service_info()
        with pytest.raises(grpc.RpcError) as error:
            client.retrieve("u1", 2, timeout_s=0.2)
        gate.set()
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert len(client.retrieve("u1", 2, timeout_s=10).candidates) == 2
    dropped = observer.counters["dropped:deadline"] + observer.counters["dropped:cancelled"]
    assert dropped == dropped_before + 1
    assert observer.counters["batches"] == batches_before + 1  # only the second request reached the engine
