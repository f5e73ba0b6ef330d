"""Metric values of a real in-process server after known traffic, and the metrics of one registry alone."""

from __future__ import annotations

import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from service import cli
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from service.metrics import LATENCY_BUCKETS, RetrievalMetrics
from service.observer import STAGES, RecordingObserver
from tests.observability.helpers import SERVICE, call, settled_scrape, value
from tests.service.helpers import NUM_ITEMS, ServerThread, server_config

OK_CALLS, INVALID_CALLS = 24, 3


def test_model_info_keeps_only_the_serving_versions_and_reasons_start_at_zero() -> None:
    metrics = RetrievalMetrics(queue_capacity=32)
    get = metrics.registry.get_sample_value
    assert get("retrieval_queue_capacity") == 32 and get("retrieval_index_items") == 0
    assert all(get("retrieval_requests_rejected_total", {"reason": r}) == 0 for r in ("queue_full", "deadline"))
    assert get("retrieval_model_reloads_total", {"result": "failure"}) == 0
    metrics.on_model_loaded("movies", 1, "Flat", "cpu", 400)
    metrics.on_model_loaded("movies", 2, "IVF16,Flat", "gpu:0", 500)
    info = metrics.model_info.collect()[0].samples
    assert [s.labels["version"] for s in info] == ["1", "2"], "both versions serve side by side"
    metrics.on_version_requests(1, 3, True, 0.002)
    metrics.on_version_requests(1, 1, False, 0.5)
    assert get("retrieval_version_requests_total", {"model_version": "1", "result": "ok"}) == 3
    assert get("retrieval_version_requests_total", {"model_version": "1", "result": "error"}) == 1
    assert get("retrieval_version_requests_total", {"model_version": "2", "result": "ok"}) == 0
    assert get("retrieval_version_request_seconds_count", {"model_version": "1"}) == 1
    metrics.on_model_unloaded("movies", 1)
    info = metrics.model_info.collect()[0].samples
    serving = {"model": "movies", "version": "2", "index_type": "IVF16,Flat", "device": "gpu:0"}
    assert [s.labels for s in info] == [serving]
    assert info[0].value == 1 and get("retrieval_index_items") == 500
    unloaded = {"model_version": "1", "result": "ok"}
    assert get("retrieval_version_requests_total", unloaded) is None, "an unloaded version's series are removed"
    assert get("retrieval_version_request_seconds_count", {"model_version": "1"}) is None
    metrics.on_version_requests(1, 1, True, 0.01)  # a request that outlived its version: not counted under it
    assert get("retrieval_version_requests_total", unloaded) is None
    metrics.on_rejected()
    metrics.on_dropped("deadline")
    metrics.on_dropped("deadline")
    assert get("retrieval_requests_rejected_total", {"reason": "queue_full"}) == 1
    assert get("retrieval_requests_rejected_total", {"reason": "deadline"}) == 2
    metrics.on_stage("queue", 0.00005)
    assert get("retrieval_stage_seconds_bucket", {"stage": "queue", "le": "0.0001"}) == 1
    assert LATENCY_BUCKETS[0] == 0.0001


def test_two_servers_have_separate_registries() -> None:
    first, second = RetrievalMetrics(), RetrievalMetrics()
    first.on_batch(3)
    assert first.registry.get_sample_value("retrieval_batch_size_count") == 1
    assert second.registry.get_sample_value("retrieval_batch_size_count") == 0


def test_served_metrics_after_known_traffic(bundle_path: Path) -> None:
    recorder = RecordingObserver()
    config = server_config(bundle_path.parent.parent, reload_interval_s=3600.0, metrics_port=0)
    with ServerThread(config, observer=recorder) as server:
        assert server.handles is not None
        port = server.handles.metrics_port
        assert port
        with grpc.insecure_channel(server.target) as channel, ThreadPoolExecutor(8) as pool:
            stub = pb_grpc.RetrievalServiceStub(channel)
            codes = list(pool.map(lambda k: call(stub, k), [5] * OK_CALLS + [0] * INVALID_CALLS))
        samples = settled_scrape(port)
    assert codes.count(grpc.StatusCode.OK) == OK_CALLS
    assert codes.count(grpc.StatusCode.INVALID_ARGUMENT) == INVALID_CALLS
    method = {"grpc_service": SERVICE, "grpc_method": "RetrieveCandidates", "grpc_type": "unary"}
    assert value(samples, "grpc_server_started_total", **method) == OK_CALLS + INVALID_CALLS
    assert value(samples, "grpc_server_handled_total", **method, grpc_code="OK") == OK_CALLS
    assert value(samples, "grpc_server_handled_total", **method, grpc_code="InvalidArgument") == INVALID_CALLS
    assert value(samples, "grpc_server_handling_seconds_count", **method) == OK_CALLS + INVALID_CALLS
    assert value(samples, "retrieval_requests_rejected_total", reason="invalid_argument") == INVALID_CALLS
    assert value(samples, "retrieval_batch_size_count") == recorder.counters["batches"]
    assert value(samples, "retrieval_batch_size_sum") == sum(recorder.batch_sizes) == OK_CALLS
    assert value(samples, "retrieval_stage_seconds_count", stage="queue") == OK_CALLS
    for stage in STAGES[1:]:  # per batch, the two warm-up batches (sizes 1 and max_batch_size) included
        assert value(samples, "retrieval_stage_seconds_count", stage=stage) == recorder.counters["batches"] + 2
    assert value(samples, "retrieval_queue_depth") == 0
    assert value(samples, "retrieval_index_items") == NUM_ITEMS
    assert value(samples, "retrieval_model_info", model="movies", version="1", index_type="Flat", device="cpu") == 1
    assert value(samples, "retrieval_model_reloads_total", result="success") == 1
    with pytest.raises(urllib.error.URLError):  # the endpoint stops with the server
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_no_metrics_port_serves_no_metrics(bundle_path: Path) -> None:
    config = server_config(bundle_path.parent.parent, reload_interval_s=3600.0)
    with ServerThread(config) as server:
        assert server.handles is not None
        assert server.handles.metrics is None and server.handles.metrics_port is None


def test_serve_flag_sets_the_metrics_port(tmp_path: Path) -> None:
    base = ["--models-dir", str(tmp_path), "--model-name", "m"]
    assert cli.config_from_args(cli.parse_args(base)).metrics_port is None
    assert cli.config_from_args(cli.parse_args([*base, "--metrics-port", "9464"])).metrics_port == 9464
