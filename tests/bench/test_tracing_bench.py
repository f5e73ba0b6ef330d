"""bench/tracing.py: its collector stand-in counts exported spans, and each mode's better run counts."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from bench import tracing as bench_tracing
from service import tracing


def test_the_collector_stand_in_receives_what_the_server_setting_exports() -> None:
    collector = bench_tracing.CollectorStandIn()
    sink = grpc.server(bench_tracing.ThreadPoolExecutor(max_workers=1))
    bench_tracing.trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, sink)
    port = sink.add_insecure_port("127.0.0.1:0")
    sink.start()
    try:
        env = bench_tracing.tracing_env("on", port)
        assert tracing.enabled_by_env(env) and not tracing.enabled_by_env(bench_tracing.tracing_env("off", port))
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
        for name in ("a", "b", "c"):
            provider.get_tracer("test").start_span(name).end()
        provider.shutdown()
        assert collector.spans == 3
    finally:
        sink.stop(grace=None).wait()  # its threads finish here, not during a later test


def test_summary_takes_each_modes_better_run() -> None:
    def run(mode: str, qps: float) -> dict:
        phase = {"qps": qps, "p50_ms": 1000 / qps, "p99_ms": 2000 / qps, "server_cpu_ms_per_call": 0.5}
        return {"mode": mode, "phases": {"1": phase}, "spans_exported": 0}

    runs = [run("off", 100.0), run("on", 80.0), run("off", 120.0), run("on", 90.0)]
    summary = bench_tracing.summarise(runs, [1])["1"]
    assert (summary["qps_off"], summary["qps_on"]) == (120.0, 90.0)
    assert summary["qps_on_over_off"] == pytest.approx(0.75)
