"""A 10M-item IVF-PQ catalog served by `retrieval-serve`, measured through the front door.

A two-tower is trained on the benchmark world (bench/bundles.py, its trained query tower is what the server
runs). The catalog of `--items` items (d = 64) is drawn around the trained item embeddings as cluster centres
(centre + noise of norm `large_catalog.NOISE`, L2-normalised, as bench/large_catalog.py draws around random
centres), and exported with `export_bundle` as a user's export would write it: IVF-PQ (`large_catalog.FACTORY`,
nprobe `large_catalog.SERVE_NPROBE`) with the engine's exact re-rank of the top k·`K_FACTOR`
(model/bundle/refine.py). A second model holds the same files (hard links) with a manifest that asks for no
re-rank, so the two differ only in k_factor.

Then, per model, `retrieval-serve` as a user starts it (console script, default flags + --metrics-port):
- start-up: seconds from launch to health SERVING (checksums, items, index, embeddings memory-mapped) and the
  server's resident memory once serving;
- recall@100 through the front door: `--recall-queries` users of the world, each asked for 100 candidates over
  gRPC by this process (an external client), against the exact top 100 of the user's query embedding over the
  whole catalog (blocked brute force, here);
- QPS and p50/p99 at each `--concurrency` from the external load generator (bench/loadgen.py);
and the bare grpc.aio floor (bench/noop_server.py) in the same run, first and last.

Writes large_catalog_serving.{json,md} into `--out-dir`.

    nice -n 5 python -m bench.large_catalog_serving [--items 10000000]      # about 25 min on 2 cores
    python -m bench.large_catalog_serving --quick --out-dir /tmp/lcs        # 200k items, a check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: import from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import BENCH_ENV, OUT, command_line, header_markdown, machine, markdown_table, write_json

for _key, _value in BENCH_ENV.items():  # before FAISS / TensorFlow load OpenMP (imported below)
    os.environ.setdefault(_key, _value)

import numpy as np  # noqa: E402

from bench import bundles, frontdoor, large_catalog, loadgen  # noqa: E402
from bench.processes import ServeCommand  # noqa: E402
from model.bundle.export import export_bundle  # noqa: E402
from model.bundle.index import IVFPQ_K_FACTOR, IndexSpec, RecallRecord  # noqa: E402
from model.bundle.manifest import Manifest  # noqa: E402
from model.bundle.reserved import MANIFEST_FILE  # noqa: E402
from service.client import RetrievalClient  # noqa: E402

K = 100
K_FACTOR = IVFPQ_K_FACTOR
CHUNK = 1_000_000
EXPORT_RECALL_QUERIES = 64
START_TIMEOUT_S = 1200.0


def catalog(centres: np.ndarray, num_items: int, seed: int) -> np.ndarray:
    """[num_items, 64] unit vectors around `centres` (large_catalog's draw), built chunk by chunk."""
    rng = np.random.default_rng(seed)
    items = np.empty((num_items, centres.shape[1]), dtype=np.float32)
    for start in range(0, num_items, CHUNK):
        stop = min(start + CHUNK, num_items)
        items[start:stop] = large_catalog._draw(rng, centres, stop - start)
    return items


def export(world: bundles.TrainedWorld, items: np.ndarray, models_dir: Path, name: str, nlist: int) -> dict:
    """Exports the re-ranked IVF-PQ bundle; returns its spec, recorded recall and export time."""
    spec = IndexSpec(f"IVF{nlist},PQ32", nprobe=min(nlist, large_catalog.SERVE_NPROBE), k_factor=K_FACTOR)
    started = time.perf_counter()
    path = export_bundle(
        models_dir,
        name,
        query_tower=world.model.query_tower,
        query_spec=world.query_spec,
        item_embeddings=items,
        item_ids=np.array([f"i{i}" for i in range(len(items))]),
        popularity=np.zeros(len(items), np.int64),
        index_spec=spec,
        similarity="cosine",
        metrics={"note": "benchmark bundle: items drawn around trained item embeddings (bench/large_catalog_serving)"},
        version=1,
        recall_queries=world.query_embeddings[:EXPORT_RECALL_QUERIES],
    )
    manifest = Manifest.from_json((path / MANIFEST_FILE).read_text())
    return {
        "path": str(path),
        "factory": spec.factory,
        "params": spec.parameters(),
        "export_s": time.perf_counter() - started,
        "export_recall_at_100": manifest.index_recall.recall,
        "bundle_bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
    }


def linked_version(bundle: Path, target: Path, **changes: Any) -> Path:
    """`target`: the files of version directory `bundle` (hard links) with a manifest of its own, `changes` applied."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(bundle, target, copy_function=os.link)
    manifest = Manifest.from_json((bundle / MANIFEST_FILE).read_text())
    (target / MANIFEST_FILE).unlink()  # a hard link: never write through it
    (target / MANIFEST_FILE).write_text(dataclasses.replace(manifest, **changes).to_json())
    return target


def without_rerank(bundle: Path, models_dir: Path, name: str) -> Path:
    """`name`/1: the same files as `bundle`, its manifest asking for no re-rank. The recorded recall is marked as
    not measured for this search (num_queries 0)."""
    manifest = Manifest.from_json((bundle / MANIFEST_FILE).read_text())
    return linked_version(
        bundle,
        models_dir / name / "1",
        model_name=name,
        index=IndexSpec(manifest.index.factory, nprobe=manifest.index.nprobe),
        index_recall=RecallRecord(k=manifest.index_recall.k, num_queries=0, recall=0.0),
    )


def hot_reload(server: ServeCommand, models_dir: Path, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Version 2 (the same files, hard links) appears while the load generator runs at concurrency 16: seconds
    until the server answers with it, its private memory before, at the peak and after, and the failed calls."""
    results: dict[str, Any] = {}
    phase = args.duration_s + args.reload_window_s
    load = threading.Thread(
        target=lambda: results.update(
            loadgen.run_process(
                server.target, args.requests_file, mode="closed", duration_s=phase, warmup_s=args.warmup_s, k=K,
                concurrency=16, channels=args.channels,
            )
        )
    )  # fmt: skip
    anon = [large_catalog._rss_mb(server.pid)["RssAnon"]]
    load.start()
    time.sleep(args.warmup_s + 1.0)
    before = large_catalog._rss_mb(server.pid)["RssAnon"]
    linked_version(models_dir / model / "1", models_dir / model / "2", model_version=2)
    written = time.perf_counter()
    reloaded_s = None
    with RetrievalClient(server.target, timeout_s=30.0) as client:
        while load.is_alive():
            anon.append(large_catalog._rss_mb(server.pid)["RssAnon"])
            if reloaded_s is None and client.service_info().model_version == "2":
                reloaded_s = time.perf_counter() - written
            time.sleep(0.2)
    return {
        "reload_s": reloaded_s,
        "anon_mb_before": before,
        "anon_mb_peak": max(anon),
        "anon_mb_after": large_catalog._rss_mb(server.pid)["RssAnon"],
        "load": results,
    }


def served_recall(target: str, rows: list[dict[str, Any]], exact: np.ndarray) -> dict[str, Any]:
    """Recall@K of the server's answers for `rows` (this process is the client) against `exact` rows."""
    hits, seconds = 0, []
    with RetrievalClient(target, timeout_s=30.0) as client:
        for row, expected in zip(rows, exact, strict=True):
            started = time.perf_counter()
            response = client.retrieve(row["user_id"], K, features=row["features"])
            seconds.append(time.perf_counter() - started)
            rows_found = [int(c.item_id[1:]) for c in response.candidates]
            hits += len(np.intersect1d(rows_found, expected))
    return {
        "recall_at_100": hits / exact.size,
        "queries": len(rows),
        "sequential_p50_ms": float(np.median(seconds) * 1000),
    }


def serve(
    models_dir: Path,
    model: str,
    rows: list[dict[str, Any]],
    exact: np.ndarray,
    args: argparse.Namespace,
    *,
    reload: bool = False,
) -> dict[str, Any]:
    print(f"retrieval-serve {model}", flush=True)
    server = ServeCommand(models_dir, model, args.work_dir / f"serve-{model}.log")
    started = time.perf_counter()
    server.start(timeout_s=START_TIMEOUT_S)
    try:
        result: dict[str, Any] = {"model": model, "start_to_serving_s": time.perf_counter() - started}
        result["rss_bytes_serving"] = server.rss()
        result["rss_mb_serving"] = large_catalog._rss_mb(server.pid)
        result["recall"] = served_recall(server.target, rows, exact)
        print(f"    recall@{K}={result['recall']['recall_at_100']:.4f}", flush=True)
        result["phases"] = {
            str(c): frontdoor.load(server.target, server.pid, args.requests_file, args, concurrency=c)
            for c in args.concurrency
        }
        result["rss_bytes_after_load"] = server.rss()
        result["rss_mb_after_load"] = large_catalog._rss_mb(server.pid)
        if reload:
            result["hot_reload"] = hot_reload(server, models_dir, model, args)
            print(f"    hot reload: {result['hot_reload']}", flush=True)
    finally:
        server.stop()
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    world = bundles.train_world(args.world, args.work_dir / "train")
    args.requests_file = args.work_dir / "requests.json"
    args.requests_file.write_text(json.dumps(world.request_rows))
    items = catalog(world.item_embeddings, args.items, seed=0)
    models_dir = args.work_dir / "models"
    shutil.rmtree(models_dir, ignore_errors=True)
    name = f"ivfpq-{bundles.catalog_tag(args.items)}"
    exported = export(world, items, models_dir, name, args.nlist)
    print(f"exported {name}: {exported}", flush=True)
    plain_name = f"{name}-no-rerank"
    without_rerank(Path(exported["path"]), models_dir, plain_name)
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(len(world.request_rows), size=args.recall_queries, replace=False))
    started = time.perf_counter()
    block = lambda start, count, rows=items: np.asarray(rows[start : start + count])  # noqa: E731
    exact = large_catalog.exact_top_k(block, len(items), world.query_embeddings[sample])
    exact_s = time.perf_counter() - started
    rows = [world.request_rows[i] for i in sample]
    del items, world

    floors = [frontdoor.floor(args.requests_file, args, "first")]
    services = [
        serve(models_dir, name, rows, exact, args, reload=True),
        serve(models_dir, plain_name, rows, exact, args),
    ]
    floors.append(frontdoor.floor(args.requests_file, args, "last"))
    report = {
        "command": command_line(),
        "machine": machine(),
        "settings": {
            "items": args.items,
            "k": K,
            "concurrency": args.concurrency,
            "channels": args.channels,
            "duration_s": args.duration_s,
            "warmup_s": args.warmup_s,
            "recall_queries": args.recall_queries,
            "reload_window_s": args.reload_window_s,
            "world": vars(args.world),
            "server_flags": "retrieval-serve defaults + --metrics-port",
        },
        "bundle": exported,
        "exact_s": exact_s,
        "floor": floors,
        "services": services,
        "wall_seconds": time.perf_counter() - began,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.out_dir / "large_catalog_serving.json", report)
    (args.out_dir / "large_catalog_serving.md").write_text(markdown(report))
    return report


def markdown(report: dict[str, Any]) -> str:
    settings, bundle = report["settings"], report["bundle"]
    note = (
        f"{settings['items']:,} items (d = 64) drawn around a trained two-tower's item embeddings, exported as "
        f"`{bundle['factory']}` with {bundle['params']} in {bundle['export_s']:.0f} s "
        f"({bundle['bundle_bytes'] / 2**30:.2f} GiB on disk; export-time recall@100 on "
        f"{EXPORT_RECALL_QUERIES} queries {bundle['export_recall_at_100']:.4f}). Each server is `retrieval-serve` "
        f"with default flags; recall@100 is measured over gRPC by an external client on "
        f"{settings['recall_queries']} users against exact search over the whole catalog; load phases "
        f"{settings['duration_s']} s after {settings['warmup_s']} s warm-up, {settings['channels']} channels, "
        f"k = {settings['k']}. The floor is a bare grpc.aio server answering a canned {settings['k']}-candidate "
        "response, measured first and last."
    )
    title = f"{settings['items']:,}-item IVF-PQ catalog through retrieval-serve"
    lines = [header_markdown(title, report["machine"], report["command"], note)]
    rows = []
    for service in report["services"]:
        rows.append(
            [
                service["model"],
                service["start_to_serving_s"],
                service["rss_mb_serving"]["RssAnon"] / 1024,
                service["rss_mb_serving"]["RssFile"] / 1024,
                service["rss_mb_after_load"]["RssAnon"] / 1024,
                service["rss_mb_after_load"]["RssFile"] / 1024,
                service["recall"]["recall_at_100"],
            ]
        )
    header = [
        "model",
        "start → SERVING s",
        "anonymous GiB, serving",
        "file-backed GiB, serving",
        "anonymous GiB, after load",
        "file-backed GiB, after load",
        "served recall@100",
    ]
    lines += [markdown_table(header, rows), ""]
    lines += [
        "File-backed memory is the memory-mapped index and item embeddings in the page cache (shared, evictable); "
        "anonymous memory is the process's own. The re-rank reads the embeddings of its candidates, so they enter "
        "the page cache as queries touch them.",
        "",
    ]
    reloads = [(s["model"], s["hot_reload"]) for s in report["services"] if s.get("hot_reload")]
    if reloads:
        lines += [
            "Hot reload: version 2 (the same files) appears while the load generator runs at concurrency 16.",
            "",
            markdown_table(
                ["model", "new version after s", "anon MiB before", "peak", "after", "calls ok", "errors"],
                [
                    [m, r["reload_s"], r["anon_mb_before"], r["anon_mb_peak"], r["anon_mb_after"],
                     r["load"]["completed_ok"], sum(r["load"]["errors"].values())]
                    for m, r in reloads
                ],
            ),
            "",
        ]  # fmt: skip
    targets = [*zip(("floor (first)", "floor (last)"), report["floor"], strict=True)]
    targets += [(service["model"], service["phases"]) for service in report["services"]]
    rows = [
        [label, c, p["qps"], p["p50_ms"], p["p99_ms"], sum(p["errors"].values())]
        for label, phases in targets
        for c, p in phases.items()
    ]
    lines += [markdown_table(["target", "concurrency", "QPS", "p50 ms", "p99 ms", "errors"], rows), ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200k items, tiny world, short phases")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    parser.add_argument("--channels", type=int, default=4, help="connections of the load generator")
    parser.add_argument("--duration-s", type=float, default=None)
    parser.add_argument("--warmup-s", type=float, default=None)
    parser.add_argument("--recall-queries", type=int, default=None)
    parser.add_argument(
        "--reload-window-s", type=float, default=None, help="the reload phase's extra load time (covers the load)"
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="bundles and logs (rebuilt each run)")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    quick = args.quick
    args.items = args.items or (200_000 if quick else 10_000_000)
    args.nlist = 256 if quick else 4096  # quick: >= 39 items per list from 10k items up
    args.world = bundles.TINY_WORLD if quick else bundles.QUICK_WORLD
    args.duration_s = args.duration_s or (2.0 if quick else 10.0)
    args.warmup_s = args.warmup_s or (0.5 if quick else 2.0)
    args.recall_queries = args.recall_queries or (50 if quick else 200)
    args.reload_window_s = args.reload_window_s or (10.0 if quick else 50.0)
    args.work_dir = args.work_dir or Path(f"runs/bench-large-serving-{'quick' if quick else 'full'}")
    return args


if __name__ == "__main__":
    main()
    sys.exit(0)
