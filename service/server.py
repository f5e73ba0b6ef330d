"""Builds the grpc.aio retrieval server: RetrievalService, grpc.health.v1, reflection, TLS and token auth.

`build_server` wires the collaborators (model manager, micro-batcher, servicer), binds the port, starts
serving and the reload loop, and returns the server, its bound port and the handles needed to stop it
gracefully. Health reports NOT_SERVING until a model is loaded and warm, and again from shutdown on. With a
metrics port, Prometheus metrics (a fresh registry per server) are served over HTTP on that separate port.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service import tracing
from service.admission import AdmissionGate
from service.auth import BearerTokenInterceptor
from service.batcher import MicroBatcher
from service.call_log import CallLogInterceptor
from service.config import ServerConfig
from service.cpu import share_cpu_threads
from service.decoding import RequestDecodingInterceptor
from service.engine import Engine, respond_grouped
from service.fanout import FanOutObserver
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.health import HealthServicer
from service.interceptors import MetricsInterceptor
from service.metrics import MetricsEndpoint, RetrievalMetrics
from service.model_manager import EngineLoader, ModelManager, load_engine
from service.observer import NullObserver, ServingObserver
from service.query import Query
from service.readiness import WorkerReadiness
from service.servicer import RetrievalServicer, add_retrieval_service

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Health is reported for the whole server ("") and for the retrieval service.
HEALTH_SERVICES = ("", SERVICE_NAME)


@dataclass
class ServerHandles:
    """What a running server is made of, for readiness checks and graceful shutdown."""

    server: grpc.aio.Server
    manager: ModelManager
    batcher: MicroBatcher[tuple[Engine, Query], bytes]
    health: HealthServicer
    compute_executor: ThreadPoolExecutor
    loader_executor: ThreadPoolExecutor
    grace_period_s: float
    gate: AdmissionGate = field(default_factory=AdmissionGate)
    drain_s: float = 0.0
    watch_task: asyncio.Task[None] | None = None
    metrics: RetrievalMetrics | None = None
    metrics_endpoint: MetricsEndpoint | None = None
    readiness: WorkerReadiness | None = None
    health_task: asyncio.Task[None] | None = None
    listening: bool = True  # a worker's server starts listening once its first model is warm

    @property
    def metrics_port(self) -> int | None:
        """The bound port of the metrics endpoint, or None without one."""
        return self.metrics_endpoint.port if self.metrics_endpoint is not None else None

    async def wait_ready(self, timeout_s: float) -> Engine:
        """Waits until a model serves; raises TimeoutError after `timeout_s`."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while (engine := self.manager.current) is None:
            if loop.time() > end:
                raise TimeoutError(f"no model loaded from {self.manager.model_dir} within {timeout_s} s")
            await asyncio.sleep(0.02)
        return engine

    async def shutdown(self, grace_s: float | None = None) -> None:
        """Drains, then stops, all within the grace period.

        Health turns NOT_SERVING and new calls are answered UNAVAILABLE by the servicer while the server still
        runs; calls admitted before finish through the batcher. Once none is left (and at least `drain_s` has
        passed), the server stops: only then does grpc-core close the port and cancel what it has not handed
        to the application yet. Calls still running when the grace period ends are cancelled.
        """
        loop = asyncio.get_running_loop()
        grace = self.grace_period_s if grace_s is None else grace_s
        end, drain_end = loop.time() + grace, loop.time() + min(self.drain_s, grace)
        logger.info("server shutting down grace_s=%.1f drain_s=%.2f", grace, min(self.drain_s, grace))
        self.gate.close()  # first: no call is admitted once a client can have seen NOT_SERVING
        if self.readiness is not None:
            self.readiness.mark(False)
        await self.health.enter_graceful_shutdown()
        for task in (self.watch_task, self.health_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        drained = await self.gate.drained(end - loop.time())
        await asyncio.sleep(max(drain_end - loop.time(), 0.0))
        logger.info("server drained admitted_calls_left=%d drained=%s", self.gate.active, drained)
        await self.server.stop(max(end - loop.time(), 0.0))
        await self.batcher.stop()
        self.compute_executor.shutdown(wait=False)
        self.loader_executor.shutdown(wait=False, cancel_futures=True)
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
            self.metrics_endpoint = None
        logger.info("server stopped")


async def build_server(
    config: ServerConfig,
    *,
    observer: ServingObserver | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    loader: EngineLoader | None = None,
    metrics: RetrievalMetrics | None = None,
    readiness: WorkerReadiness | None = None,
) -> tuple[grpc.aio.Server, int, ServerHandles]:
    """Builds, binds and starts the server and its model reload loop.

    Args:
        config: the server configuration.
        observer: receives serving events; with `config.metrics_port` the Prometheus metrics receive them too.
        interceptors: extra server interceptors, run after the metrics interceptor and before token
            authentication (and the request decoding guard, which runs last).
        loader: builds a warm engine from a bundle directory; default `load_engine`.
        metrics: record into these metrics, served elsewhere (a worker of `--workers N`, whose supervisor
            serves every worker's metrics); default: metrics of its own when `config.metrics_port` is set.
        readiness: this process is one of several workers on one port: it listens only once its model is warm,
            and health reports SERVING only while every worker is warm. None: a lone server, listening at once
            and SERVING once its model is.

    Returns:
        (server, bound port, handles); stop with `await handles.shutdown()`.
    """
    if metrics is None and config.metrics_port is not None:
        metrics = RetrievalMetrics(queue_capacity=config.batcher.queue_size)
    if metrics is None:
        observer = observer or NullObserver()
    else:
        observer = FanOutObserver(metrics, observer) if observer is not None else metrics
    compute = ThreadPoolExecutor(
        max_workers=config.batcher.max_concurrent_batches, thread_name_prefix="retrieval-compute"
    )
    loading = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieval-loader")
    loader = loader or functools.partial(
        load_engine,
        gpu_device=config.gpu_device,
        index_mmap=config.index_mmap,
        shard_gpus=config.shard_index_across_gpus,
        warmup_batch_sizes=(1, config.batcher.max_batch_size),
        observer=observer,
    )
    manager = ModelManager(
        config.models_dir, config.model_name, loader, policy=config.version_policy, observer=observer
    )
    running: list[MicroBatcher[tuple[Engine, Query], bytes]] = []

    def process(work: Sequence[tuple[Engine, Query]]) -> list[bytes]:
        share_cpu_threads(running[0].active_batches, len(work))
        return respond_grouped(work)

    batcher: MicroBatcher[tuple[Engine, Query], bytes] = MicroBatcher(process, compute, config.batcher, observer)
    running.append(batcher)
    health = HealthServicer()
    gate = AdmissionGate()
    for name in HEALTH_SERVICES:
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    tracing.configure_from_env()  # on only when the OTEL_* variables ask for it
    # Outermost: the call's server span continues the caller's trace and sees the abort codes that the metrics
    # interceptor, inside it, counts.
    chain: list[grpc.aio.ServerInterceptor] = tracing.server_interceptors()
    if metrics is not None:
        chain.append(MetricsInterceptor(metrics))
    chain.append(CallLogInterceptor())  # inside the metrics (and tracing) interceptors: logs see the span
    chain.extend(interceptors)
    if config.auth_tokens:
        chain.append(BearerTokenInterceptor(config.auth_tokens))
    chain.append(RequestDecodingInterceptor())  # innermost: unparseable requests become INVALID_ARGUMENT
    server = grpc.aio.server(interceptors=chain, options=channel_options(config))
    add_retrieval_service(RetrievalServicer(manager, batcher, config.limits, gate, observer), server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection((SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server)
    # A lone server binds at once; one of several workers binds (and so listens: gRPC listens when it binds) only
    # once its model is warm, on the port the supervisor chose.
    port = _bind(server, config) if readiness is None else config.port
    endpoint = None
    if metrics is not None and config.metrics_port is not None:
        endpoint = MetricsEndpoint.start(metrics.registry, config.host, config.metrics_port)

    if readiness is None:
        await server.start()  # a lone server answers NOT_SERVING / UNAVAILABLE until its model is warm
    batcher.start()
    handles = ServerHandles(
        server, manager, batcher, health, compute, loading, config.grace_period_s, gate, config.drain_s,
        metrics=metrics, metrics_endpoint=endpoint, readiness=readiness, listening=readiness is None,
    )  # fmt: skip

    async def on_swap(engine: Engine) -> None:
        if readiness is not None:
            # One of several workers on the port listens only once warm: the kernel then hands new connections
            # to it, and a restarted worker takes no call it would have to refuse while its live peers serve.
            if not handles.listening:
                _bind(server, config)
                await server.start()
                handles.listening = True
                logger.info("worker listening address=%s:%d", config.host, config.port)
            readiness.mark(True)  # the health loop reports SERVING once every worker is warm
            return
        for name in HEALTH_SERVICES:
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)

    loop = asyncio.get_running_loop()
    handles.watch_task = loop.create_task(
        manager.watch(config.reload_interval_s, loading, on_swap), name="model-reload"
    )
    if readiness is not None:
        readiness.mark(False)
        handles.health_task = loop.create_task(_follow_workers(health, readiness), name="worker-health")
    logger.info(
        "server started address=%s:%d metrics_port=%s tls=%s mtls=%s auth=%s models=%s",
        config.host,
        port,
        handles.metrics_port,
        config.tls is not None,
        bool(config.tls and config.tls.client_ca_path),
        bool(config.auth_tokens),
        manager.model_dir,
    )
    return server, port, handles


async def _follow_workers(health: HealthServicer, readiness: WorkerReadiness, interval_s: float = 0.1) -> None:
    """Reports SERVING while every worker of the server is warm, NOT_SERVING otherwise (until cancelled)."""
    serving = health_pb2.HealthCheckResponse.SERVING
    reported = None
    while True:
        status = serving if readiness.all_ready() else health_pb2.HealthCheckResponse.NOT_SERVING
        if status != reported:
            for name in HEALTH_SERVICES:
                await health.set(name, status)
            reported = status
        await asyncio.sleep(interval_s)


def freeze_startup_objects() -> None:
    """For a serving process, once, before it builds its server: TensorFlow and FAISS are imported by then, hundreds
    of thousands of long-lived objects that every full garbage collection would walk again (100-250 ms pauses of
    the event loop under load, seen as p99 latency). They go to the permanent generation; what is created later
    (the server, the model versions it loads and replaces) stays collectable. Not for processes that build
    several servers (tests): objects frozen with one would never be collected."""
    gc.collect()
    gc.freeze()


def channel_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC core options: keepalive, connection age and message size limits."""
    options = [
        ("grpc.keepalive_time_ms", int(config.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.so_reuseport", 1),  # gRPC's default on Linux, relied on by `--workers N`: one port, N processes
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.max_receive_message_length", config.max_receive_message_bytes),
        ("grpc.max_send_message_length", config.max_send_message_bytes),
    ]
    if config.max_connection_age_s is not None:
        options.append(("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)))
        options.append(("grpc.max_connection_age_grace_ms", int(config.max_connection_age_grace_s * 1000)))
    return options


class BindError(OSError):
    """The gRPC port cannot be bound (in use, or an address of no local interface): `retrieval-serve` exits 1."""


# gRPC's C++ line on a failed bind, e.g. "E1204 ... add_port.cc:83] Failed to add port to server: ... (Error in
# bind for address '[::ffff:127.0.0.1]:5000': Address already in use)": its reason joins our one line instead.
_ADD_PORT_LINE = re.compile(r"^E\d{4} .*add_port\.cc.*?(?:: ([^:()]+)\))?$")


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    address = f"{config.host}:{config.port}"
    reasons: list[str] = []
    try:
        with _native_stderr_lines(_ADD_PORT_LINE, reasons):
            if config.tls is None:
                port = server.add_insecure_port(address)
            else:
                client_ca = config.tls.client_ca_path.read_bytes() if config.tls.client_ca_path else None
                credentials = grpc.ssl_server_credentials(
                    [(config.tls.key_path.read_bytes(), config.tls.cert_path.read_bytes())],
                    root_certificates=client_ca,
                    require_client_auth=client_ca is not None,
                )
                port = server.add_secure_port(address, credentials)
    except RuntimeError as error:  # grpcio: "Failed to bind to address ..."
        raise BindError(f"cannot bind {address}: {_bind_reason(reasons)}") from error
    if port == 0:
        raise BindError(f"cannot bind {address}: {_bind_reason(reasons)}")
    return port


def _bind_reason(reasons: list[str]) -> str:
    return reasons[0] if reasons and reasons[0] else "in use, or no local interface has that address"


@contextlib.contextmanager
def _native_stderr_lines(pattern: re.Pattern[str], matched: list[str]) -> Iterator[None]:
    """Holds back what native code writes to file descriptor 2 meanwhile: lines matching `pattern` are dropped
    (their first group appended to `matched`), every other line is written on afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = []
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                match = pattern.match(line.rstrip("\n"))
                if match is None:
                    kept.append(line)
                else:
                    matched.append((match.group(1) or "").strip())
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
