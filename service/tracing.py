"""OpenTelemetry tracing of the server, on only when the standard OTEL_* environment variables ask for it.

On when `OTEL_TRACES_EXPORTER` names an exporter other than `none`, or `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, unless `OTEL_SDK_DISABLED=true`. The SDK then reads the rest of
the standard variables itself: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the OTLP endpoint, protocol,
headers and timeout, `OTEL_TRACES_SAMPLER`, and the batch span processor's `OTEL_BSP_*`. Exporters: `otlp`
(the default; gRPC, or HTTP with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`) and `console`. Needs the `otel`
extra (`pip install "retrieval-service[otel]"`).

Off, nothing of OpenTelemetry is imported: `active()` is a module flag and the hooks are not called.

Spans:
- the server span of every call, from the maintained `opentelemetry-instrumentation-grpc` aio interceptor,
  placed outermost so that it continues the caller's `traceparent` and the metrics interceptor inside it still
  sees every abort code;
- `queue`, a child of the call's span: from the request's arrival at the micro-batcher until its batch starts;
- `batch`, one per micro-batch, LINKED to the span of every request in it (`batch.size` attribute), with the
  children `query_tower`, `index_search` and `postprocess` (attributes `model.name`, `model.version`,
  `batch.size`).

Why a linked batch span rather than copies of the stage spans in every request's trace: the work of a batch is
done once for all its requests; a batch of 64 would otherwise record 192 stage spans claiming the same time
three times over 64 traces, costing the serving thread and the exporter 64 times more. Links are OpenTelemetry's
way to express one operation serving many traces (trace viewers follow them from the request to its batch).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

logger = logging.getLogger(__name__)

TRACER_NAME = "retrieval-service"
DEFAULT_SERVICE_NAME = "retrieval-service"
_tracer: Any = None  # an opentelemetry.trace.Tracer while tracing is on
_provider: Any = None  # its TracerProvider


def enabled_by_env(env: Mapping[str, str] | None = None) -> bool:
    """Whether the standard OTEL_* variables ask for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def active() -> bool:
    return _tracer is not None


def configure_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Turns tracing on when the OTEL_* variables ask for it (once per process); returns whether it is on."""
    if active() or not enabled_by_env(env):
        return active()
    env = os.environ if env is None else env
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as error:  # a configuration error: the one-line message of the console scripts
        raise ValueError(
            f"OTEL_* variables ask for traces but OpenTelemetry is not installed ({error.name}): "
            'pip install "retrieval-service[otel]"'
        ) from error
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {"service.name": DEFAULT_SERVICE_NAME})
    provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
    for name in names:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(env)))
        elif name != "none":
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")
    use_provider(provider)
    logger.info("tracing on exporters=%s", ",".join(names))
    return True


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    if protocol.strip() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    return OTLPSpanExporter()  # endpoint, headers, TLS and timeout from the OTEL_EXPORTER_OTLP_* variables


def use_provider(provider: Any) -> None:
    """Traces into `provider` (an SDK TracerProvider; tests pass one with an in-memory exporter), or stops
    tracing with None (servers built afterwards have no tracing interceptor)."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer(TRACER_NAME)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The server-span interceptor while tracing is on, else none."""
    if not active():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider)]


def current_context() -> Any:
    """The caller's OpenTelemetry context, kept with a queued request; None while tracing is off."""
    if _tracer is None:
        return None
    from opentelemetry import context

    return context.get_current()


def queue_span(parent: Any, waited_s: float) -> None:
    """Records the `queue` span of a request whose batch starts now, after `waited_s` in the queue."""
    if _tracer is None or parent is None:
        return
    end = time.time_ns()
    span = _tracer.start_span("queue", context=parent, start_time=end - int(waited_s * 1e9))
    span.end(end_time=end)


@contextlib.contextmanager
def batch_span(parents: Sequence[Any]) -> Iterator[None]:
    """The current span while a batch computes: `batch`, linked to the span of each of its requests."""
    if _tracer is None:
        yield
        return
    from opentelemetry import trace

    links = []
    for parent in parents:
        if parent is not None:
            context = trace.get_current_span(parent).get_span_context()
            if context.is_valid:
                links.append(trace.Link(context))
    with _tracer.start_as_current_span(
        "batch", context=trace.set_span_in_context(trace.INVALID_SPAN), links=links,
        attributes={"batch.size": len(parents)},
    ):  # fmt: skip
        yield


def stage_spans(model_name: str, model_version: int, batch_size: int, stages: Sequence[tuple[str, float]]) -> None:
    """Records consecutive stage spans that just ended, as children of the current (batch) span.

    `stages`: (name, seconds) in the order they ran, the last one ending now.
    """
    if _tracer is None:
        return
    attributes = {"model.name": model_name, "model.version": model_version, "batch.size": batch_size}
    end = time.time_ns()
    start = end - int(sum(seconds for _, seconds in stages) * 1e9)
    for name, seconds in stages:
        stop = start + int(seconds * 1e9)
        _tracer.start_span(name, start_time=start, attributes=attributes).end(end_time=stop)
        start = stop
