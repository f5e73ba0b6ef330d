"""Tracing overhead: `retrieval-serve` through the front door with OpenTelemetry tracing off and on, in one run.

The same server (console script, default flags plus `--metrics-port`, bench/processes.py) on the README's demo
bundle (MovieLens-100K, Flat; bench/frontdoor.py trains it unless the work directory has it) is driven by the
front-door load generator (bench/loadgen.py, closed loop) at each concurrency, in the order off, on, off, on; each
mode's better run counts. "On" is tracing as a deployment runs it: every call sampled
(`OTEL_TRACES_SAMPLER=always_on`), spans batched and exported over OTLP/gRPC to a collector stand-in in this
process that accepts and counts them (so serialising and sending the spans is measured; the stand-in's CPU is on
the same cores, as the load generator's is).

    python -m bench.tracing [--quick]

Writes tracing.{json,md} into `--out-dir` (default docs/benchmarks).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.report import BENCH_ENV, OUT, command_line, header_markdown, machine, markdown_table, write_json

for _key, _value in BENCH_ENV.items():  # before FAISS / TensorFlow load OpenMP (imported below)
    os.environ.setdefault(_key, _value)

import grpc  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc  # noqa: E402

from bench import frontdoor  # noqa: E402
from bench.processes import ServeCommand  # noqa: E402

MODES = ("off", "on", "off", "on")


class CollectorStandIn(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace endpoint that accepts every export and counts its spans."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def Export(  # the generated servicer's name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        count = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self._lock:
            self.spans += count
        return trace_service_pb2.ExportTraceServiceResponse()


def tracing_env(mode: str, collector_port: int) -> dict[str, str]:
    if mode == "off":
        return {}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_SERVICE_NAME": "retrieval-bench",
    }


def run_mode(
    mode: str, models_dir: Path, requests_file: Path, args: argparse.Namespace, collector: CollectorStandIn, port: int
) -> dict[str, Any]:
    print(f"retrieval-serve tracing {mode}", flush=True)
    before = collector.spans
    log = args.work_dir / f"serve-tracing-{mode}.log"
    phases: dict[str, Any] = {}
    with ServeCommand(models_dir, frontdoor.DEMO_MODEL, log, env=tracing_env(mode, port)) as server:
        for concurrency in args.concurrency:
            phases[str(concurrency)] = frontdoor.load(
                server.target, server.pid, requests_file, args, concurrency=concurrency
            )
    time.sleep(1.0)  # the server's batch span processor flushes at shutdown
    return {"mode": mode, "phases": phases, "spans_exported": collector.spans - before}


def best(runs: list[dict[str, Any]], mode: str, concurrency: str) -> dict[str, Any]:
    """The run of `mode` with the highest QPS at `concurrency`."""
    return max((r["phases"][concurrency] for r in runs if r["mode"] == mode), key=lambda phase: phase["qps"])


def summarise(runs: list[dict[str, Any]], concurrency: list[int]) -> dict[str, dict[str, float]]:
    out = {}
    for c in map(str, concurrency):
        off, on = best(runs, "off", c), best(runs, "on", c)
        out[c] = {
            "qps_off": off["qps"],
            "qps_on": on["qps"],
            "qps_on_over_off": on["qps"] / off["qps"],
            "p50_ms_off": off["p50_ms"],
            "p50_ms_on": on["p50_ms"],
            "p99_ms_off": off["p99_ms"],
            "p99_ms_on": on["p99_ms"],
            "server_cpu_ms_per_call_off": off.get("server_cpu_ms_per_call", float("nan")),
            "server_cpu_ms_per_call_on": on.get("server_cpu_ms_per_call", float("nan")),
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    rows = [
        [
            c,
            s["qps_off"],
            s["qps_on"],
            s["qps_on_over_off"],
            s["p50_ms_off"],
            s["p50_ms_on"],
            s["p99_ms_off"],
            s["p99_ms_on"],
            s["server_cpu_ms_per_call_off"],
            s["server_cpu_ms_per_call_on"],
        ]
        for c, s in report["summary"].items()
    ]
    table = markdown_table(
        [
            "concurrency",
            "QPS off",
            "QPS on",
            "on / off",
            "p50 ms off",
            "p50 ms on",
            "p99 ms off",
            "p99 ms on",
            "server CPU ms/call off",
            "server CPU ms/call on",
        ],
        rows,
    )
    spans = ", ".join(f"{r['mode']}: {r['spans_exported']}" for r in report["runs"])
    note = (
        "Each mode ran twice (off, on, off, on); the better run of each counts. On: every call sampled, spans "
        "exported over OTLP/gRPC to a stand-in collector in the benchmark process, on the same cores."
    )
    return (
        header_markdown("Tracing overhead through the front door", report["machine"], report["command"], note)
        + "\n"
        + table
        + f"\n\nSpans received by the collector stand-in per run: {spans}.\n"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    models_dir = args.work_dir / "models"
    requests_file = args.work_dir / "demo-requests.json"
    requests_file.write_text(json.dumps(frontdoor.demo_bundle(models_dir, args.demo_epochs)))
    collector = CollectorStandIn()
    sink = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, sink)
    port = sink.add_insecure_port("127.0.0.1:0")
    sink.start()
    try:
        runs = [run_mode(mode, models_dir, requests_file, args, collector, port) for mode in MODES]
    finally:
        sink.stop(grace=None)
    report = {
        "command": command_line(),
        "machine": machine(),
        "settings": {
            "concurrency": args.concurrency,
            "duration_s": args.duration_s,
            "warmup_s": args.warmup_s,
            "channels": args.channels,
            "k": frontdoor.K,
            "demo_epochs": args.demo_epochs,
        },
        "runs": runs,
        "summary": summarise(runs, args.concurrency),
        "wall_s": time.perf_counter() - started,
    }
    write_json(args.out_dir / "tracing.json", report)
    (args.out_dir / "tracing.md").write_text(markdown(report))
    print(json.dumps(report["summary"], indent=2))
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1-epoch demo bundle, short phases")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 64])
    parser.add_argument("--channels", type=int, default=4, help="connections of the load generator")
    parser.add_argument("--duration-s", type=float, default=None)
    parser.add_argument("--warmup-s", type=float, default=None)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-tracing"), help="bundle and logs")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.demo_epochs = 1 if args.quick else 20
    args.duration_s = args.duration_s or (4.0 if args.quick else 8.0)
    args.warmup_s = args.warmup_s or (1.0 if args.quick else 2.0)
    return args


if __name__ == "__main__":
    main()
