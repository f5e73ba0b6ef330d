"""Server lifecycle over gRPC: UNAVAILABLE / NOT_SERVING before a model, hot reload of a new version,
refusal of a corrupt one while the old keeps answering, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.batcher import BatcherConfig
from service.client import RetrievalClient, build_request
from service.observer import RecordingObserver
from tests.service.helpers import MODEL, ServerThread, export_test_bundle, server_config


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.05)


def _corrupt_version(models_dir: Path, staging: Path, version: int) -> None:
    """Exports a good bundle elsewhere, damages its index, then moves it in as `version` in one rename."""
    path = export_test_bundle(staging, version=version, seed=version)
    index = path / "index.faiss"
    data = bytearray(index.read_bytes())
    data[-8:] = b"\xff" * 8
    index.write_bytes(bytes(data))
    os.rename(path, models_dir / MODEL / str(version))


@pytest.mark.slow
def test_not_serving_before_a_model_then_hot_reload_and_refusal(tmp_path: Path) -> None:
    models_dir, observer = tmp_path / "models", RecordingObserver()
    (models_dir / MODEL).mkdir(parents=True)
    config = server_config(models_dir, reload_interval_s=0.05)
    with (
        ServerThread(config, observer=observer).start(wait_ready=False) as srv,
        RetrievalClient(srv.target) as client,
    ):
        assert client.health() == "NOT_SERVING" and client.health("retrieval.v1.RetrievalService") == "NOT_SERVING"
        for call in (lambda: client.retrieve("u1", 3), client.service_info):
            with pytest.raises(grpc.RpcError) as error:
                call()
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE

        export_test_bundle(models_dir, version=1)
        _wait_for(lambda: client.health() == "SERVING")
        assert client.retrieve("u1", 3).model_version == "1"

        export_test_bundle(models_dir, version=2, seed=2)
        _wait_for(lambda: client.retrieve("u1", 3).model_version == "2")
        assert client.service_info().model_version == "2"

        _corrupt_version(models_dir, tmp_path / "staging", 3)
        _wait_for(lambda: observer.counters["reload:failure"] == 1)
        time.sleep(0.3)  # several poll intervals: the refused version is not retried
        response = client.retrieve("u1", 3)
        assert (response.model_version, len(response.candidates)) == ("2", 3)
        assert client.health() == "SERVING"
    assert observer.counters["reload:failure"] == 1 and observer.counters["reload:success"] == 2
    assert [entry[1] for entry in observer.loaded] == [1, 2]


def test_pinned_version_is_served(tmp_path: Path, bundle_path: Path) -> None:
    models_dir = tmp_path / "models"
    (models_dir / MODEL).mkdir(parents=True)
    os.symlink(bundle_path, models_dir / MODEL / "1")
    (models_dir / MODEL / "7").mkdir()  # a newer (broken) version that pinning ignores
    with ServerThread(server_config(models_dir, pinned_version=1)) as srv, RetrievalClient(srv.target) as client:
        assert client.retrieve("u1", 2).model_version == "1"


def test_graceful_shutdown_reports_not_serving_and_drains_in_flight_calls(bundle_path: Path) -> None:
    one_worker = BatcherConfig(max_concurrent_batches=1)
    srv = ServerThread(server_config(bundle_path.parent.parent, batcher=one_worker)).start()
    assert srv.handles is not None
    gate = threading.Event()
    srv.handles.compute_executor.submit(gate.wait, 30)  # hold the engine: the next call stays in flight
    with RetrievalClient(srv.target) as client:
        watch = health_pb2_grpc.HealthStub(client.channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        in_flight = client.stub.RetrieveCandidates.future(build_request("u1", 4), timeout=30)
        time.sleep(0.2)
        shutdown = asyncio.run_coroutine_threadsafe(srv.handles.shutdown(grace_s=10), srv._loop)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        gate.set()
        response = in_flight.result()
        shutdown.result(30)
        assert len(response.candidates) == 4 and response.model_version == "1"
        with pytest.raises(grpc.RpcError) as refused:
            client.retrieve("u1", 4, timeout_s=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    srv.handles = None
    srv.stop()
