"""Front-door benchmark: `retrieval-serve` as a user starts it, against the bare grpc.aio floor, in one run.

One external load generator (bench/loadgen.py, its own process, closed loop over `--channels` connections)
drives, in turn:
1. the floor: a bare grpc.aio server answering a canned 100-candidate response (bench/noop_server.py), measured
   first and last (the better of the two counts, so that the ratios are not flattered by a slow moment);
2. `retrieval-serve` (console script, default flags plus `--metrics-port`, as the Kubernetes manifests run it) on
   the README's demo bundle (MovieLens-100K, 1,682 items, Flat) and on an IVF bundle over 1M items
   (bench/bundles.py), each with the default single process and with `--workers 2`;
3. the batch RPC (RetrieveCandidatesBatch, 32 requests per call) on the demo bundle;
and, with every server stopped, the in-process engine (query tower + search + encoded responses) at batch 1 and
at the mean batch sizes the server formed (read from its /metrics histogram), in this process.

Per target and concurrency: QPS, p50/p99 and the server's CPU time per call (the server process and its
worker processes, from /proc). Writes frontdoor.{json,md} into `--out-dir` and adds the headline ratios to
summary.json.

    python -m bench.frontdoor [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.report import BENCH_ENV, OUT, command_line, header_markdown, machine, markdown_table, write_json

for _key, _value in BENCH_ENV.items():  # before FAISS / TensorFlow load OpenMP (imported below)
    os.environ.setdefault(_key, _value)

from bench import bundles, ceiling, loadgen  # noqa: E402
from bench.processes import ROOT, ServeCommand  # noqa: E402

K = 100
BATCH_RPC_SIZE = 32
DEMO_MODEL = "movielens"
HEADLINE_KEYS = (
    "c1_p50_over_floor_plus_engine",
    "cheap_saturation_over_floor",
    "server_cpu_per_call_over_floor",
    "batch_rpc_queries_per_s_over_floor_calls",
)


def demo_bundle(models_dir: Path, epochs: int) -> list[dict[str, Any]]:
    """Trains the README's demo model (MovieLens-100K, the demo's config) unless a bundle exists; request rows."""
    from apps.demo import demo_requests
    from model.bundle.reader import latest_version

    if latest_version(models_dir / DEMO_MODEL) is None:
        from model.training.config import build_config
        from model.training.job import run

        config = build_config(
            {
                "data": {"source": "movielens-100k"},
                "train": {"epochs": epochs, "verbose": 0},
                "export": {"models_dir": str(models_dir), "name": DEMO_MODEL},
                "output_dir": str(models_dir.parent / "demo-run"),
            }
        )
        run(config)
    requests = demo_requests([str(u) for u in range(1, 944)], K)
    return [{"user_id": r.user_id, "features": _features(r)} for r in requests]


def _features(request: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in request.user_features.items():
        kind = value.WhichOneof("value")
        out[name] = getattr(value, kind) if kind != "string_list" else list(value.string_list.values)
    return out


def load(target: str, pid: int, requests_file: Path, args: argparse.Namespace, **phase: Any) -> dict[str, Any]:
    """One load-generator process for one phase."""
    result = loadgen.run_process(
        target, requests_file, mode="closed", duration_s=args.duration_s, warmup_s=args.warmup_s, k=K,
        server_pid=pid, channels=args.channels, **phase,
    )  # fmt: skip
    print(
        f"    {phase} qps={result['qps']:.0f} queries/s={result['queries_per_s']:.0f} p50={result['p50_ms']:.2f}ms "
        f"p99={result['p99_ms']:.2f}ms server_cpu={result.get('server_cpu_ms_per_call', 0):.3f}ms/call "
        f"errors={result['errors']}",
        flush=True,
    )
    return result


def floor(requests_file: Path, args: argparse.Namespace, label: str) -> dict[str, Any]:
    print(f"floor ({label}): bare grpc.aio, canned {K}-candidate answers", flush=True)
    command = [sys.executable, "-m", "bench.noop_server", "--k", str(K)]
    env = {**os.environ, **BENCH_ENV, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        target = f"127.0.0.1:{port}"
        return {str(c): load(target, process.pid, requests_file, args, concurrency=c) for c in args.concurrency}
    finally:
        process.terminate()
        process.wait(30)


def batch_sizes(metrics_port: int) -> tuple[float, float]:
    """(count, sum) of the server's retrieval_batch_size histogram (all workers), from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("retrieval_batch_size_count", "retrieval_batch_size_sum")
    }
    return values.get("retrieval_batch_size_count", 0.0), values.get("retrieval_batch_size_sum", 0.0)


def serve(
    models_dir: Path, model: str, workers: int, requests_file: Path, args: argparse.Namespace, batch_rpc: bool
) -> dict[str, Any]:
    print(f"retrieval-serve {model} --workers {workers}", flush=True)
    flags = ["--workers", str(workers)] if workers > 1 else []
    log = args.work_dir / f"serve-{model}-w{workers}.log"
    with ServeCommand(models_dir, model, log, *flags) as server:
        phases: dict[str, Any] = {}
        for concurrency in args.concurrency:
            before = batch_sizes(server.metrics_port)
            result = load(server.target, server.pid, requests_file, args, concurrency=concurrency)
            count, total = (a - b for a, b in zip(batch_sizes(server.metrics_port), before, strict=True))
            result["mean_batch_size"] = total / count if count else 0.0
            phases[str(concurrency)] = result
        batch = None
        if batch_rpc:
            batch = load(
                server.target, server.pid, requests_file, args, concurrency=args.batch_rpc_concurrency,
                batch_size=BATCH_RPC_SIZE,
            )  # fmt: skip
        rss = server.rss()
    return {"model": model, "workers": workers, "phases": phases, "batch_rpc": batch, "supervisor_rss_bytes": rss}


def engine_times(bundle_dir: Path, rows: list[dict[str, Any]], sizes: list[int], seconds: float) -> dict[str, float]:
    """In-process `Engine.respond` milliseconds per batch at each size (the server's compute, no gRPC)."""
    engine = ceiling.load(bundle_dir, gpu_device=-1)
    queries = ceiling.queries_for(engine, rows, K)
    return {str(size): ceiling.time_batch(engine, queries, size, seconds) * 1000 for size in sizes}


def headline(report: dict[str, Any]) -> dict[str, float]:
    """The issue's target ratios, on the demo bundle with one worker, against the better floor run."""
    floors = report["floor"]
    c1, top = "1", str(max(report["settings"]["concurrency"]))
    floor_p50 = min(f[c1]["p50_ms"] for f in floors)
    floor_qps = max(max(p["qps"] for p in f.values()) for f in floors)
    floor_cpu = min(f[top]["server_cpu_ms_per_call"] for f in floors)
    demo = next(s for s in report["services"] if s["model"] == DEMO_MODEL and s["workers"] == 1)
    engine_b1 = report["engine"][DEMO_MODEL]["1"]
    return {
        "c1_p50_over_floor_plus_engine": demo["phases"][c1]["p50_ms"] / (floor_p50 + engine_b1),
        "cheap_saturation_over_floor": max(p["qps"] for p in demo["phases"].values()) / floor_qps,
        "server_cpu_per_call_over_floor": demo["phases"][top]["server_cpu_ms_per_call"] / floor_cpu,
        "batch_rpc_queries_per_s_over_floor_calls": demo["batch_rpc"]["queries_per_s"] / floor_qps,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    models_dir = args.work_dir / "models"
    demo_rows = demo_bundle(models_dir, args.demo_epochs)
    demo_requests = args.work_dir / "demo-requests.json"
    demo_requests.write_text(json.dumps(demo_rows))
    ivf_requests = args.work_dir / "ivf-requests.json"
    meta = models_dir / f"catalog-{bundles.catalog_tag(args.catalog)}.json"
    if ivf_requests.exists() and meta.exists():  # cached by an earlier run: no need to train the world again
        ivf = json.loads(meta.read_text())["ivf"]
    else:
        world = bundles.train_world(args.world, args.work_dir / "train")
        ivf = bundles.build_bundles(world, models_dir, args.catalog, "ivf")["ivf"]
        ivf_requests.write_text(json.dumps(world.request_rows))
        del world

    floors = [floor(demo_requests, args, "first")]
    services = []
    for model, requests_file in ((DEMO_MODEL, demo_requests), (ivf["model_name"], ivf_requests)):
        for workers in (1, 2):
            rpc = model == DEMO_MODEL and workers == 1
            services.append(serve(models_dir, model, workers, requests_file, args, batch_rpc=rpc))
    floors.append(floor(demo_requests, args, "last"))

    engine: dict[str, dict[str, float]] = {}
    for model, rows in ((DEMO_MODEL, demo_rows), (ivf["model_name"], json.loads(ivf_requests.read_text()))):
        formed = {round(p["mean_batch_size"]) for s in services if s["model"] == model for p in s["phases"].values()}
        sizes = sorted({1, *(max(1, b) for b in formed)})
        engine[model] = engine_times(models_dir / model / "1", rows, sizes, args.ceiling_seconds)
        print(f"in-process engine {model}: {engine[model]} ms per batch", flush=True)

    report: dict[str, Any] = {
        "command": command_line(),
        "machine": machine(),
        "settings": {
            "k": K,
            "concurrency": args.concurrency,
            "channels": args.channels,
            "duration_s": args.duration_s,
            "warmup_s": args.warmup_s,
            "batch_rpc_size": BATCH_RPC_SIZE,
            "batch_rpc_concurrency": args.batch_rpc_concurrency,
            "server_flags": "retrieval-serve defaults + --metrics-port (as deployed); --workers 2 where noted",
            "ivf_bundle": ivf,
        },
        "floor": floors,
        "services": services,
        "engine": engine,
        "wall_seconds": time.perf_counter() - started,
    }
    report["headline"] = headline(report)
    write_outputs(report, args.out_dir)
    return report


def write_outputs(report: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "frontdoor.json", report)
    (out_dir / "frontdoor.md").write_text(markdown(report))
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.update(report["headline"])
    write_json(summary_path, summary)


def markdown(report: dict[str, Any]) -> str:
    note = (
        "Every number below comes from this command's run; ratios compare targets measured in the same run. "
        f"Server flags: {report['settings']['server_flags']}."
    )
    lines = [header_markdown("Front-door serving benchmark", report["machine"], report["command"], note)]
    lines += ["## Headline (demo bundle, one process, against the better floor run)", ""]
    lines.append(markdown_table(["ratio", "value"], [[k, f"{v:.3f}"] for k, v in report["headline"].items()]))
    lines += ["", "## Closed loop per target", ""]
    rows = []
    targets = [(f"floor ({i})", f, None) for i, f in zip(("first", "last"), report["floor"], strict=True)]
    targets += [(f"{s['model']} workers={s['workers']}", s["phases"], s) for s in report["services"]]
    for name, phases, _ in targets:
        for concurrency, p in phases.items():
            rows.append([
                name, concurrency, f"{p['qps']:.0f}", f"{p['p50_ms']:.2f}", f"{p['p99_ms']:.2f}",
                f"{p.get('server_cpu_ms_per_call', 0):.3f}", f"{p.get('mean_batch_size', 0):.1f}",
                str(p["errors"] or ""),
            ])  # fmt: skip
    lines.append(
        markdown_table(
            ["target", "concurrency", "QPS", "p50 ms", "p99 ms", "server CPU ms/call", "mean batch", "errors"], rows
        )
    )
    lines += ["", f"## Batch RPC ({BATCH_RPC_SIZE} requests per call)", ""]
    for s in report["services"]:
        if s["batch_rpc"]:
            b = s["batch_rpc"]
            lines.append(
                f"- {s['model']} workers={s['workers']}: {b['queries_per_s']:.0f} user queries/s "
                f"({b['qps']:.0f} calls/s, p50 {b['p50_ms']:.2f} ms, server CPU {b['server_cpu_ms_per_call']:.3f} "
                f"ms per call)"
            )
    lines += ["", "## In-process engine (tower + search + encoded responses), ms per batch", ""]
    for model, times in report["engine"].items():
        lines.append(f"- {model}: " + ", ".join(f"batch {b}: {t:.3f}" for b, t in times.items()))
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k-item IVF catalog, 1-epoch demo, short phases")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 64, 128])
    parser.add_argument("--channels", type=int, default=4, help="connections of the load generator")
    parser.add_argument("--batch-rpc-concurrency", type=int, default=8)
    parser.add_argument("--duration-s", type=float, default=None)
    parser.add_argument("--warmup-s", type=float, default=None)
    parser.add_argument("--ceiling-seconds", type=float, default=None)
    parser.add_argument("--work-dir", type=Path, default=None, help="bundles and logs (cached between runs)")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    quick = args.quick
    args.catalog = 10_000 if quick else 1_000_000
    args.world = bundles.QUICK_WORLD if quick else bundles.FULL_WORLD
    args.demo_epochs = 1 if quick else 20
    args.duration_s = args.duration_s or (3.0 if quick else 8.0)
    args.warmup_s = args.warmup_s or (1.0 if quick else 2.0)
    args.ceiling_seconds = args.ceiling_seconds or (0.5 if quick else 2.0)
    args.work_dir = args.work_dir or Path(f"runs/bench-frontdoor-{'quick' if quick else 'full'}")
    return args


if __name__ == "__main__":
    main()
    sys.exit(0)
