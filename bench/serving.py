"""Serving benchmark: gRPC server under closed- and open-loop load, the in-process ceiling, batching on vs off.

For each catalog size and index (Flat and one approximate index, both over TRAINED embeddings, see
bench/bundles.py), in one run:
1. start the server in its own process (bench/serve_process.py = `build_server`, as `retrieval-serve`);
2. closed loop at each concurrency from a separate load-generator process (bench/loadgen.py), recording
   the batch sizes the server formed in each measurement window;
3. open loop at half of the saturation throughput (the best closed-loop QPS), latency from intended send time;
4. Flat only: the same server with micro-batching off (max_batch_size = 1) at concurrency 64;
5. with the servers stopped: the in-process ceiling at the batch sizes of the saturation window.
Writes serving.json, serving.md and serving.png into `--out-dir`.

    python -m bench.serving [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import BENCH_ENV, OUT, command_line, header_markdown, machine, markdown_table, write_json

for _key, _value in BENCH_ENV.items():  # before FAISS / TensorFlow load OpenMP (imported below)
    os.environ.setdefault(_key, _value)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench import bundles, ceiling, loadgen  # noqa: E402
from service.batcher import BatcherConfig  # noqa: E402

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]


class ServerProcess:
    """A server in a subprocess (bench/serve_process.py, or `command` as given); `port` once it serves."""

    def __init__(
        self,
        models_dir: Path,
        model_name: str,
        work_dir: Path,
        max_batch_size: int,
        max_concurrent_batches: int,
        command: list[str] | None = None,
    ) -> None:
        self.stats_file = work_dir / f"stats-{model_name}-b{max_batch_size}.json"
        self.stats_file.unlink(missing_ok=True)
        self.log = (work_dir / f"server-{model_name}-b{max_batch_size}.log").open("w")
        command = command or [
            sys.executable,
            "-m",
            "bench.serve_process",
            "--models-dir",
            str(models_dir),
            "--model-name",
            model_name,
            "--stats-file",
            str(self.stats_file),
            "--max-batch-size",
            str(max_batch_size),
            "--max-concurrent-batches",
            str(max_concurrent_batches),
        ]
        env = {**os.environ, **BENCH_ENV, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"server {model_name} failed to start; see {self.log.name}")
        self.port = int(line.split()[1])
        self.devices = dict(part.split("=") for part in line.split()[2:])
        self.dumps = 0

    def window_stats(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """The stats dumped at the end of the last measurement window (two SIGUSR1 per window)."""
        self.dumps += 2
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                data = json.loads(self.stats_file.read_text())
                if data["dump"] >= self.dumps:
                    return dict(data)
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"no stats dump {self.dumps} in {self.stats_file}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def run_load(
    server: ServerProcess, requests_file: Path, args: argparse.Namespace, stats: bool = True, **phase: Any
) -> dict[str, Any]:
    """One load-generator process for one phase; returns its result with the server's batch sizes (`stats`)."""
    result = loadgen.run_process(
        f"127.0.0.1:{server.port}", requests_file, duration_s=args.duration_s, warmup_s=args.warmup_s, k=args.k,
        server_pid=server.process.pid, stats_signal=True, **phase,
    )  # fmt: skip
    window = server.window_stats() if stats else {"batch_sizes": {}, "events": {}}
    result["batch_sizes"] = {int(k): v for k, v in window["batch_sizes"].items()}
    result["server_events"] = window["events"]
    batches = sum(result["batch_sizes"].values())
    result["mean_batch_size"] = sum(b * n for b, n in result["batch_sizes"].items()) / batches if batches else 0.0
    print(
        f"  {phase} qps={result['qps']:.0f} p50={result['p50_ms']:.2f}ms p99={result['p99_ms']:.2f}ms "
        f"mean_batch={result['mean_batch_size']:.1f} errors={result['errors']}",
        flush=True,
    )
    return result


def bench_bundle(
    models_dir: Path, meta: dict[str, Any], kind: str, requests_file: Path, rows: list[dict], args: argparse.Namespace
) -> dict[str, Any]:
    """Every phase for one bundle; the ceiling is measured after the servers stopped."""
    name = meta["model_name"]
    print(f"{name}: {meta['index']} {meta['params']} recall@100={meta['recall_at_100']:.4f}", flush=True)
    server = ServerProcess(models_dir, name, args.work_dir, args.max_batch_size, args.max_concurrent_batches)
    try:
        closed = [run_load(server, requests_file, args, mode="closed", concurrency=c) for c in args.concurrency]
        saturation = max(closed, key=lambda r: r["qps"])
        half_rate = max(1.0, saturation["qps"] / 2)
        open_loop = run_load(server, requests_file, args, mode="open", rate=f"{half_rate:.1f}")
    finally:
        server.stop()
    devices = server.devices
    off = None
    if kind == "flat":
        unbatched = ServerProcess(models_dir, name, args.work_dir, 1, args.max_concurrent_batches)
        try:
            off = run_load(unbatched, requests_file, args, mode="closed", concurrency=args.batching_concurrency)
        finally:
            unbatched.stop()
    engine = ceiling.load(models_dir / name / "1")
    queries = ceiling.queries_for(engine, rows[:2000], args.k)
    streams = args.max_concurrent_batches
    top = ceiling.ceiling(engine, queries, saturation["batch_sizes"], args.ceiling_seconds, streams)
    single = ceiling.ceiling(engine, queries, {1: 1}, args.ceiling_seconds / 4, streams)
    del engine
    on_c = next((r for r in closed if r["concurrency"] == args.batching_concurrency), None)
    result = {
        **meta,
        "kind": kind,
        "devices": devices,
        "closed_loop": closed,
        "saturation_qps": saturation["qps"],
        "saturation_concurrency": saturation["concurrency"],
        "open_loop_half_saturation": open_loop,
        "batching_off": off,
        "ceiling": top,
        "ceiling_batch1_qps": single["qps"],
        "service_over_ceiling": saturation["qps"] / top["qps"],
        "batching_speedup": (on_c["qps"] / off["qps"]) if (off and on_c and off["qps"] > 0) else None,
        "p99_over_p50_half_load": open_loop["p99_ms"] / open_loop["p50_ms"],
    }
    print(
        f"  ceiling={top['qps']:.0f} qps (mean batch {top.get('mean_batch_size', 0):.1f}) "
        f"service/ceiling={result['service_over_ceiling']:.2f}",
        flush=True,
    )
    return result


def grpc_floor(requests_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The canned-answer server (bench/noop_server.py) under the same closed loop: Python gRPC's own limit here."""
    print(f"grpc floor: canned {args.k}-candidate answers, no model", flush=True)
    command = [sys.executable, "-m", "bench.noop_server", "--k", str(args.k)]
    server = ServerProcess(Path("."), "noop", args.work_dir, 0, 0, command=command)
    try:
        concurrency = max(args.concurrency)
        return run_load(server, requests_file, args, stats=False, mode="closed", concurrency=concurrency)
    finally:
        server.stop()


def world_and_requests(args: argparse.Namespace, models_dir: Path) -> tuple[bundles.TrainedWorld | None, Path]:
    requests_file = args.work_dir / "requests.json"
    wanted = [bundles.catalog_tag(n) for n in args.catalogs]
    ready = requests_file.exists() and all((models_dir / f"catalog-{t}.json").exists() for t in wanted)
    if ready and not args.retrain:
        return None, requests_file
    started = time.perf_counter()
    world = bundles.train_world(args.world, args.work_dir / "train")
    print(
        f"trained two-tower in {time.perf_counter() - started:.0f} s, val Recall@10 {world.validation_recall_at_10:.3f}"
    )
    requests_file.write_text(json.dumps(world.request_rows))
    return world, requests_file


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    started = time.perf_counter()
    models_dir = args.work_dir / "models"
    world, requests_file = world_and_requests(args, models_dir)
    rows = json.loads(requests_file.read_text())
    results = []
    for num_items in args.catalogs:
        tag = bundles.catalog_tag(num_items)
        meta_file = models_dir / f"catalog-{tag}.json"
        if world is None and meta_file.exists():
            metas = json.loads(meta_file.read_text())
        else:
            assert world is not None
            metas = bundles.build_bundles(world, models_dir, num_items, args.ann)
        for kind, meta in metas.items():
            results.append(bench_bundle(models_dir, meta, kind, requests_file, rows, args))
    floor = grpc_floor(requests_file, args)
    report = {
        "command": command_line(),
        "machine": info,
        "mode": "quick" if args.quick else "full",
        "settings": {
            "k": args.k,
            "concurrency": args.concurrency,
            "duration_s": args.duration_s,
            "warmup_s": args.warmup_s,
            "max_batch_size": args.max_batch_size,
            "max_concurrent_batches": args.max_concurrent_batches,
            "max_delay_us": BatcherConfig().max_delay_us,
            "world": vars(args.world),
            "catalog_construction": bundles.__doc__,
        },
        "bundles": results,
        "grpc_floor": floor,
        "headline": headline(results, floor),
        "wall_seconds": time.perf_counter() - started,
    }
    write_outputs(report, args.out_dir)
    return report


def headline(results: list[dict[str, Any]], floor: dict[str, Any]) -> dict[str, Any]:
    """The issue's target ratios, on the largest catalog.

    `ann_speedup_vs_flat` is the index's: ANN over Flat QPS in-process at batch size 1 (the same queries, the
    same engine code). Through the service the ratio is also reported, but it cannot exceed the gRPC floor
    (`grpc_floor_qps`, a server that answers without any work) over the Flat service's QPS.
    """
    largest = max(r["num_items"] for r in results)
    flat = next(r for r in results if r["num_items"] == largest and r["kind"] == "flat")
    ann = next(r for r in results if r["num_items"] == largest and r["kind"] != "flat")
    return {
        "catalog_items": largest,
        "service_over_ceiling": flat["service_over_ceiling"],
        "service_over_ceiling_ann": ann["service_over_ceiling"],
        "batching_speedup_c64": flat["batching_speedup"],
        "p99_over_p50_half_load": flat["p99_over_p50_half_load"],
        "p99_over_p50_half_load_ann": ann["p99_over_p50_half_load"],
        "ann_index": ann["index"],
        "ann_params": ann["params"],
        "ann_speedup_vs_flat": ann["ceiling_batch1_qps"] / flat["ceiling_batch1_qps"],
        "ann_speedup_vs_flat_via_service": ann["saturation_qps"] / flat["saturation_qps"],
        "grpc_floor_qps": floor["qps"],
        "ann_service_over_grpc_floor": ann["saturation_qps"] / floor["qps"],
        "ann_recall_at_100": ann["recall_at_100"],
    }


def write_outputs(report: dict[str, Any], out_dir: Path) -> None:
    write_json(out_dir / "serving.json", report)
    (out_dir / "serving.md").write_text(markdown(report))
    plot(report, out_dir / "serving.png")


def markdown(report: dict[str, Any]) -> str:
    note = (
        f"Mode: **{report['mode']}**, k = {report['settings']['k']}, {report['settings']['duration_s']} s per "
        f"phase after {report['settings']['warmup_s']} s warm-up. Server, load generator and ceiling share the "
        "machine's cores. Catalogs: trained two-tower embeddings expanded with jitter (bench/bundles.py)."
    )
    out = [header_markdown("Serving benchmark", report["machine"], report["command"], note)]
    h = report["headline"]
    out += [
        "## Headline (largest catalog)",
        "",
        markdown_table(
            ["figure", "value", "target"],
            [
                ["service / in-process ceiling (Flat)", h["service_over_ceiling"], "≥ 0.8"],
                ["service / in-process ceiling (ANN)", h["service_over_ceiling_ann"], "≥ 0.8"],
                ["batching on / off QPS at c=64 (Flat)", h["batching_speedup_c64"], "≥ 4"],
                ["p99 / p50 at half saturation, open loop (Flat)", h["p99_over_p50_half_load"], "≤ 3"],
                [
                    f"ANN ({h['ann_index']} {h['ann_params']}) / Flat QPS, index in-process, batch 1",
                    h["ann_speedup_vs_flat"],
                    "≥ 10",
                ],
                ["ANN / Flat QPS via the service (saturation)", h["ann_speedup_vs_flat_via_service"], "-"],
                ["gRPC floor QPS (canned answers, no model)", h["grpc_floor_qps"], "-"],
                ["ANN service / gRPC floor QPS", h["ann_service_over_grpc_floor"], "-"],
                ["ANN Recall@100 vs exact", h["ann_recall_at_100"], "≥ 0.95"],
            ],
        ),
        "",
    ]
    rows = []
    for b in report["bundles"]:
        phases = [*b["closed_loop"], b["open_loop_half_saturation"]] + (
            [b["batching_off"]] if b["batching_off"] else []
        )
        for i, p in enumerate(phases):
            label = f"closed c={p['concurrency']}" if p["mode"] == "closed" else f"open {p['offered_rate']:.0f}/s"
            if b["batching_off"] is not None and p is b["batching_off"]:
                label += " batching OFF"
            rows.append(
                [
                    b["model_name"] if i == 0 else "",
                    label,
                    p["qps"],
                    p["p50_ms"],
                    p["p90_ms"],
                    p["p99_ms"],
                    p["p99.9_ms"],
                    p["mean_batch_size"],
                    p.get("server_cpu_ms_per_call", float("nan")),
                    p.get("loadgen_cpu_ms_per_call", float("nan")),
                    json.dumps(p["errors"]) if p["errors"] else "none",
                ]
            )
    out += [
        "## Load phases",
        "",
        markdown_table(
            [
                "bundle",
                "phase",
                "QPS",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "p99.9 ms",
                "mean batch",
                "server CPU ms/call",
                "load gen CPU ms/call",
                "errors",
            ],
            rows,
        ),
        "",
    ]
    out += [
        "## Ceiling and index",
        "",
        markdown_table(
            [
                "bundle",
                "index",
                "Recall@100",
                "saturation QPS",
                "ceiling QPS",
                "service/ceiling",
                "ceiling b=1 QPS",
                "p99/p50 half load",
                "devices",
            ],
            [
                [
                    b["model_name"],
                    f"{b['index']} {b['params']}",
                    b["recall_at_100"],
                    b["saturation_qps"],
                    b["ceiling"]["qps"],
                    b["service_over_ceiling"],
                    b["ceiling_batch1_qps"],
                    b["p99_over_p50_half_load"],
                    json.dumps(b["devices"]),
                ]
                for b in report["bundles"]
            ],
        ),
        "",
    ]
    floor = report["grpc_floor"]
    out += [
        f"gRPC floor (bench/noop_server.py, closed loop c = {floor['concurrency']}): {floor['qps']:.0f} QPS, p50 "
        f"{floor['p50_ms']:.1f} ms, server CPU {floor.get('server_cpu_ms_per_call', float('nan')):.3f} ms/call, load "
        f"generator CPU {floor.get('loadgen_cpu_ms_per_call', float('nan')):.3f} ms/call.",
        "",
        f"Wall time: {report['wall_seconds']:.0f} s. Raw data: serving.json.",
        "",
    ]
    return "\n".join(out)


def plot(report: dict[str, Any], path: Path) -> None:
    fig, (ax_qps, ax_lat) = plt.subplots(1, 2, figsize=(12, 4.5))
    for b in report["bundles"]:
        cs = [p["concurrency"] for p in b["closed_loop"]]
        line = ax_qps.plot(cs, [p["qps"] for p in b["closed_loop"]], marker="o", label=b["model_name"])[0]
        ax_qps.axhline(b["ceiling"]["qps"], color=line.get_color(), linestyle="--", linewidth=0.8)
        if b["batching_off"]:
            ax_qps.plot(
                [b["batching_off"]["concurrency"]],
                [b["batching_off"]["qps"]],
                marker="x",
                markersize=10,
                color=line.get_color(),
                linestyle="none",
                label=f"{b['model_name']} batching off",
            )
        ax_lat.plot(
            cs, [p["p99_ms"] for p in b["closed_loop"]], marker="o", color=line.get_color(), label=b["model_name"]
        )
    ax_qps.set(
        xscale="log",
        yscale="log",
        xlabel="concurrency (closed loop)",
        ylabel="QPS",
        title="throughput (dashed: in-process ceiling)",
    )
    ax_lat.set(xscale="log", yscale="log", xlabel="concurrency (closed loop)", ylabel="p99 latency (ms)", title="p99")
    ax_qps.legend(fontsize=7)
    ax_lat.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k items, small world, short phases")
    parser.add_argument("--tiny", action="store_true", help="smoke-test size (tests/bench): 2k items, 1 s phases")
    parser.add_argument("--catalogs", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--ann", choices=("ivf", "hnsw"), default="ivf")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64, 128])
    parser.add_argument("--batching-concurrency", type=int, default=64)
    parser.add_argument("--duration-s", type=float, default=None)
    parser.add_argument("--warmup-s", type=float, default=None)
    parser.add_argument("--ceiling-seconds", type=float, default=None)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument(
        "--max-concurrent-batches", type=int, default=BatcherConfig().max_concurrent_batches,
        help="the server's batches at once; the ceiling takes the faster of 1 stream and this many",
    )  # fmt: skip
    parser.add_argument("--retrain", action="store_true", help="retrain and re-export even when cached")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    args.quick = args.quick or args.tiny
    defaults = {  # catalogs, phase seconds, warm-up seconds, ceiling seconds, world
        "full": ([100_000, 1_000_000], 15.0, 3.0, 4.0, bundles.FULL_WORLD),
        "quick": ([10_000], 4.0, 1.0, 1.5, bundles.QUICK_WORLD),
        "tiny": ([2_000], 1.0, 0.5, 0.3, bundles.TINY_WORLD),
    }[size]
    args.catalogs = args.catalogs or defaults[0]
    args.duration_s = args.duration_s or defaults[1]
    args.warmup_s = args.warmup_s or defaults[2]
    args.ceiling_seconds = args.ceiling_seconds or defaults[3]
    args.world = defaults[4]
    args.work_dir = args.work_dir or Path(f"runs/bench-serving-{size}")
    return args


if __name__ == "__main__":
    main()
