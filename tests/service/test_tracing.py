"""service/tracing.py end to end: a real server on loopback, traced into the SDK's in-memory exporter."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from model.logs import CallContextFilter
from service import tracing
from service.client import RetrievalClient, build_request
from service.metrics import RetrievalMetrics
from service.server import SERVICE_NAME
from tests.helpers import ROOT
from tests.service.helpers import MODEL, ServerThread, server_config

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
STAGES = ("query_tower", "index_search", "postprocess")


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.use_provider(provider)
    try:
        yield spans
    finally:
        tracing.use_provider(None)


@pytest.fixture(scope="module")
def metrics() -> RetrievalMetrics:
    return RetrievalMetrics()


@pytest.fixture(scope="module")
def traced(bundle_path: Path, exporter: InMemorySpanExporter, metrics: RetrievalMetrics) -> Iterator[ServerThread]:
    config = server_config(bundle_path.parent.parent, reload_interval_s=3600.0)
    with ServerThread(config, metrics=metrics) as running:
        yield running


def _traceparent(span: str = CLIENT_SPAN) -> tuple[tuple[str, str], ...]:
    return (("traceparent", f"00-{CLIENT_TRACE}-{span}-01"),)


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """Polls `condition` (the server finishes its spans and metrics after the client has its answer)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _finished(exporter: InMemorySpanExporter, method: str) -> tuple[ReadableSpan, ...]:
    """Every finished span, once the server span of `method` has finished."""
    assert wait_until(lambda: any(s.name.endswith(f"/{method}") for s in exporter.get_finished_spans()))
    return exporter.get_finished_spans()


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_a_call_continues_the_callers_trace_and_links_its_batch(
    traced: ServerThread, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    with RetrievalClient(traced.target) as client:
        request = build_request("u1", 3, features={"genres": ["drama"]}, request_id="traced")
        response = client.stub.RetrieveCandidates(request, timeout=30, metadata=_traceparent())
    assert len(response.candidates) == 3
    spans = _finished(exporter, "RetrieveCandidates")
    (server,) = [span for span in spans if span.name.endswith("RetrieveCandidates")]
    assert server.name == f"/{SERVICE_NAME}/RetrieveCandidates"
    assert f"{server.context.trace_id:032x}" == CLIENT_TRACE  # the client's trace id propagated
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CLIENT_SPAN
    (queue,) = _by_name(spans, "queue")
    assert queue.context.trace_id == server.context.trace_id and queue.parent.span_id == server.context.span_id
    (batch,) = _by_name(spans, "batch")
    assert batch.context.trace_id != server.context.trace_id  # the batch's own trace, linked to each request
    assert [link.context.span_id for link in batch.links] == [server.context.span_id]
    assert batch.attributes["batch.size"] == 1
    for name in STAGES:
        (stage,) = _by_name(spans, name)
        assert stage.parent.span_id == batch.context.span_id
        assert dict(stage.attributes) == {"model.name": MODEL, "model.version": 1, "batch.size": 1}
    ends = [_by_name(spans, name)[0] for name in STAGES]
    assert all(a.end_time <= b.start_time for a, b in itertools.pairwise(ends))  # in order, no overlap


def test_a_batch_call_links_one_batch_span_to_its_call(traced: ServerThread, exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    with RetrievalClient(traced.target) as client:
        response = client.retrieve_batch([build_request(f"u{i}", 2) for i in range(3)], timeout_s=30)
    assert len(response) == 3
    spans = _finished(exporter, "RetrieveCandidatesBatch")
    (server,) = [span for span in spans if span.name.endswith("RetrieveCandidatesBatch")]
    assert len(_by_name(spans, "queue")) == 3  # one per request of the call, all in the call's trace
    assert {span.context.trace_id for span in _by_name(spans, "queue")} == {server.context.trace_id}
    batches = _by_name(spans, "batch")
    assert sum(batch.attributes["batch.size"] for batch in batches) == 3
    assert {link.context.span_id for batch in batches for link in batch.links} == {server.context.span_id}


def test_aborted_calls_are_still_counted_by_the_metrics_and_logged_with_the_trace_id(
    traced: ServerThread, exporter: InMemorySpanExporter, metrics: RetrievalMetrics
) -> None:
    exporter.clear()
    labels = {"grpc_service": SERVICE_NAME, "grpc_method": "RetrieveCandidates", "grpc_type": "unary"}
    before = metrics.registry.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "InvalidArgument"})
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.addFilter(CallContextFilter())
    handler.emit = records.append  # type: ignore[method-assign]
    call_log = logging.getLogger("service.call_log")
    call_log.addHandler(handler)
    try:
        with RetrievalClient(traced.target) as client, pytest.raises(grpc.RpcError) as failed:
            client.stub.RetrieveCandidates(build_request("u1", 0), timeout=30, metadata=_traceparent())
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        def counted() -> bool:  # the interceptors finish (and log) after the client has its answer
            after = metrics.registry.get_sample_value(
                "grpc_server_handled_total", {**labels, "grpc_code": "InvalidArgument"}
            )
            servers = [span for span in exporter.get_finished_spans() if span.name.endswith("RetrieveCandidates")]
            return after == (before or 0) + 1 and len(servers) == 1 and len(records) == 1

        assert wait_until(counted)  # the tracing interceptor, outermost, hides no abort code from the metrics
    finally:
        call_log.removeHandler(handler)
    (server,) = [span for span in exporter.get_finished_spans() if span.name.endswith("RetrieveCandidates")]
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [record.trace_id for record in records] == [CLIENT_TRACE]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_only_the_standard_variables_turn_tracing_on(env: dict[str, str], on: bool) -> None:
    assert tracing.enabled_by_env(env) is on


def test_variables_asking_for_traces_without_the_extra_name_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.resources", None)  # as if the extra were absent
    monkeypatch.setattr(tracing, "_tracer", None)  # off, whatever the module's other tests set
    with pytest.raises(ValueError, match=r"retrieval-service\[otel\]"):
        tracing.configure_from_env({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.active()


def test_tracing_off_imports_nothing_of_opentelemetry() -> None:
    code = (
        "import sys, service.server, service.cli\n"
        "assert not service.server.tracing.configure_from_env()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
