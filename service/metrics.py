"""Prometheus metrics of the retrieval server, in a registry of their own, and the HTTP endpoint serving them.

`RetrievalMetrics` implements `ServingObserver` (batcher, engine and model manager events) and `CallCollector`
(the gRPC interceptor's call events). Names follow the design's "Metric names": the standard gRPC server
metrics, `retrieval_*` for the rest; seconds as units, `_total` counters, no per-user or per-item labels.
Label sets whose absence would hide a zero (reload results, rejection reasons, stages) exist from the start.

Per-version series (`retrieval_model_info`, `retrieval_version_requests_total`, `retrieval_version_request_seconds`)
are labelled only with versions that were loaded: the policy bounds them (latest N or the listed versions, plus
labelled ones), and a version's series are removed when it is unloaded (a request still finishing on it afterwards
is counted only by the gRPC metrics). In multiprocess mode (`--workers N`) series cannot be removed: an unloaded
version's info goes to 0 and its request series stay, bounded by the versions loaded while the workers run.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from service.interceptors import CODE_LABELS
from service.observer import STAGES

logger = logging.getLogger(__name__)

# 100 µs to 10 s, two or three buckets per decade.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
REJECTION_REASONS = ("queue_full", "deadline", "cancelled", "invalid_argument", "unauthenticated")
RELOAD_RESULTS = ("success", "failure")
VERSION_RESULTS = ("ok", "error")
# Final status codes that mean the service refused the request, as rejection reasons.
REJECTED_CODES = {
    CODE_LABELS[grpc.StatusCode.INVALID_ARGUMENT]: "invalid_argument",
    CODE_LABELS[grpc.StatusCode.UNAUTHENTICATED]: "unauthenticated",
}
_GRPC_LABELS = ("grpc_service", "grpc_method", "grpc_type")
# prometheus-client's multiprocess mode (`retrieval-serve --workers N`): every worker writes its values to files
# in this directory and the supervisor's endpoint aggregates them (MultiProcessCollector).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess-mode directory when this process is one of several workers, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


class RetrievalMetrics:
    """Every metric of one server, registered in `registry` (a fresh one by default).

    In prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR` set before prometheus_client is
    imported, as in each worker of `retrieval-serve --workers N`) the values go to that directory instead and
    the supervisor's endpoint sums them: counters and histograms over every worker that ever ran, gauges over
    the live ones (queue depth and capacity summed, item count and model info the maximum).

    Args:
        registry: where the metrics live; one per server so that servers (and tests) do not collide.
        queue_capacity: the batcher's queue size, exported as `retrieval_queue_capacity`.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, queue_capacity: int = 0) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.started = Counter("grpc_server_started_total", "RPCs started on the server.", _GRPC_LABELS, registry=r)
        self.handled = Counter(
            "grpc_server_handled_total", "RPCs completed on the server, by final status code.",
            (*_GRPC_LABELS, "grpc_code"), registry=r,
        )  # fmt: skip
        self.handling = Histogram(
            "grpc_server_handling_seconds", "Time from the start of an RPC to its final status.",
            _GRPC_LABELS, buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.stage = Histogram(
            "retrieval_stage_seconds", "Time spent per stage: queue per request, the others per batch.",
            ("stage",), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "retrieval_batch_size",
            "Live requests per batch sent to the engine.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "retrieval_queue_depth", "Requests waiting in the batcher queue.", registry=r, multiprocess_mode="livesum"
        )
        self.queue_capacity = Gauge(
            "retrieval_queue_capacity", "Size of the batcher queue.", registry=r, multiprocess_mode="livesum"
        )
        self.index_items = Gauge(
            "retrieval_index_items", "Items in the serving index.", registry=r, multiprocess_mode="livemax"
        )
        self.model_info = Gauge(
            "retrieval_model_info", "The model version serving now (value 1).",
            ("model", "version", "index_type", "device"), registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.reloads = Counter(
            "retrieval_model_reloads_total", "Model load attempts by result.", ("result",), registry=r
        )
        self.version_requests = Counter(
            "retrieval_version_requests_total",
            "Requests queued for a model version, by result: ok, or error (deadline, cancelled, failure).",
            ("model_version", "result"), registry=r,
        )  # fmt: skip
        self.version_latency = Histogram(
            "retrieval_version_request_seconds", "Time in the servicer of requests answered ok, by model version.",
            ("model_version",), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "retrieval_requests_rejected_total", "Requests refused or dropped before compute, by reason.",
            ("reason",), registry=r,
        )  # fmt: skip
        self._multiprocess = multiprocess_dir() is not None
        if not self._multiprocess:  # in multiprocess mode a process reports only itself: the endpoint skips it
            ProcessCollector(registry=r)
        self._serving: dict[int, tuple[str, ...]] = {}
        self.queue_capacity.set(queue_capacity)
        for stage in STAGES:
            self.stage.labels(stage)
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)
        self._model_lock = threading.Lock()

    # CallCollector
    def on_call_started(self, service: str, method: str, grpc_type: str) -> None:
        self.started.labels(service, method, grpc_type).inc()

    def on_call_handled(self, service: str, method: str, grpc_type: str, code: str, seconds: float) -> None:
        self.handled.labels(service, method, grpc_type, code).inc()
        self.handling.labels(service, method, grpc_type).observe(seconds)
        reason = REJECTED_CODES.get(code)
        if reason is not None:
            self.rejected.labels(reason).inc()

    # ServingObserver
    def on_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def on_rejected(self) -> None:
        self.rejected.labels("queue_full").inc()

    def on_dropped(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def on_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def on_stage(self, stage: str, seconds: float) -> None:
        self.stage.labels(stage).observe(seconds)

    def on_model_loaded(self, model: str, version: int, index_type: str, device: str, item_count: int) -> None:
        labels = (model, str(version), index_type, device)
        with self._model_lock:  # one label set at 1 per version serving now
            self.model_info.labels(*labels).set(1)
            self._serving[version] = labels
            self.index_items.set(item_count)
            for result in VERSION_RESULTS:
                self.version_requests.labels(str(version), result)

    def on_model_unloaded(self, model: str, version: int) -> None:
        with self._model_lock:
            labels = self._serving.pop(version, None)
            if labels is None:
                return
            if self._multiprocess:  # multiprocess mode has no remove(): the old label set goes to 0
                self.model_info.labels(*labels).set(0)
                return
            self.model_info.remove(*labels)
            self.version_latency.remove(str(version))  # absent if it answered nothing: removal is idempotent
            for result in VERSION_RESULTS:
                self.version_requests.remove(str(version), result)

    def on_version_requests(self, version: int, count: int, ok: bool, seconds: float) -> None:
        with self._model_lock:  # a request that ends after its version was unloaded must not revive the series
            if version not in self._serving:
                return
            self.version_requests.labels(str(version), VERSION_RESULTS[not ok]).inc(count)
            if ok:
                self.version_latency.labels(str(version)).observe(seconds)

    def on_reload(self, result: str) -> None:
        self.reloads.labels(result).inc()


@dataclass
class MetricsEndpoint:
    """The running `/metrics` HTTP server of one registry; `stop()` closes it."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @classmethod
    def start_multiprocess(cls, directory: str, host: str, port: int) -> MetricsEndpoint:
        """Serves the sum of every worker's metrics in `directory` (prometheus-client's multiprocess mode)."""
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        return cls.start(registry, host, port)

    @classmethod
    def start(cls, registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
        """Serves `registry` on http://host:port/metrics from a daemon thread; port 0 picks a free one."""
        address = host.strip("[]")
        server, thread = start_http_server(port, addr=address, registry=registry)
        bound = int(server.server_port)
        logger.info("metrics endpoint started address=%s:%d", host, bound)
        return cls(host, bound, server, thread)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        logger.info("metrics endpoint stopped port=%d", self.port)
