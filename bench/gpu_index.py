"""FAISS on a GPU vs the CPU: batch latency, throughput and recall of the index kinds a bundle builds.

For catalogs of `--sizes` items (seeded random unit vectors, d = 64), each index kind the bundle builds
(`choose_index_spec` + `build_index`: flat, ivf, ivfpq) is searched with k = 100 in batches of 1, 32, 256 and
4096 queries, on the CPU (FAISS on every core) and, where FAISS sees a GPU, after `place_index` on GPU 0.
Queries are noisy copies of catalog items, so each has one clear nearest item; the catalog itself has no cluster
structure, so the rest of a query's exact top-100 is spread over many IVF lists and IVF recall@100 is low
(about 0.44 at the chosen nprobe): this bench measures speed and GPU/CPU agreement, not index quality
(docs/gpu.md; tests/bundle/test_index.py checks recall on clustered data). Reported: the median ms per
batch and queries/s over time-boxed repeats, recall@100 against exact (flat, CPU) top-100, and how the GPU's
answers match the CPU's (mean top-100 id overlap, largest rank-wise score difference). HNSW has no FAISS GPU
implementation (`place_index` keeps it on the CPU) and is not measured. Imports no TensorFlow; without a FAISS
GPU it measures the CPU only and says so. Writes gpu_index.{json,md} into `--out` after every index, so a run
cut short still leaves its results.

    python -m bench.gpu_index [--sizes 100000 1000000] [--quick] [--out docs/benchmarks]
    python bench/gpu_index.py --quick --out /tmp/gpu_index   # also runs as a file
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as a file (python bench/gpu_index.py): import from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import (
    BENCH_ENV,
    OUT,
    command_line,
    header_markdown,
    machine,
    markdown_table,
    write_json,
)

for _key, _value in BENCH_ENV.items():  # before FAISS loads OpenMP
    os.environ.setdefault(_key, _value)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from model.bundle.gpu import place_index  # noqa: E402
from model.bundle.index import IndexKind, build_index, choose_index_spec, l2_normalize  # noqa: E402
from service.cpu import available_cpus  # noqa: E402

K = 100
DIM = 64
KINDS: tuple[IndexKind, ...] = ("flat", "ivf", "ivfpq")
# Query = item + noise of norm about NOISE, re-normalised (cosine to its item about 0.9).
NOISE = 0.5
HNSW_NOTE = "hnsw: not measured; FAISS has no GPU HNSW, so place_index keeps it on the CPU."


@dataclass(frozen=True)
class Plan:
    """What to measure and how long to spend on it.

    Attributes:
        sizes: catalog sizes.
        batches: query batch sizes.
        repeats: timed searches per batch size (fewer when `seconds` runs out first; at least one).
        seconds: time box of one batch size's repeats.
        recall_queries: queries of the recall and GPU-vs-CPU checks.
        budget_s: whole-run time box; measurements past it are skipped and listed.
    """

    sizes: tuple[int, ...]
    batches: tuple[int, ...] = (1, 32, 256, 4096)
    repeats: tuple[int, ...] = (50, 20, 10, 5)
    seconds: float = 1.5
    recall_queries: int = 1000
    budget_s: float = 130.0


QUICK = Plan(sizes=(20_000,), batches=(1, 32, 256), repeats=(10, 5, 3), seconds=0.5, recall_queries=200)


def catalog(num_items: int, num_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Items [num_items, DIM] and queries [num_queries, DIM]: float32 unit vectors, queries near random items."""
    rng = np.random.default_rng(seed)
    items = l2_normalize(rng.standard_normal((num_items, DIM), dtype=np.float32))
    source = items[rng.integers(0, num_items, num_queries)]
    noise = NOISE / np.sqrt(DIM) * rng.standard_normal(source.shape, dtype=np.float32)
    return items, l2_normalize(source + noise)


def exact_top_k(items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact top-K ids [len(queries), K] by inner product (FAISS flat on the CPU)."""
    flat = faiss.IndexFlatIP(DIM)
    flat.add(items)
    return flat.search(queries, K)[1]


def time_batch(index: faiss.Index, q: np.ndarray, repeats: int, seconds: float) -> dict[str, Any]:
    """Median latency and queries/s of `index.search(q, K)` after an untimed warm-up search (of at most 256
    queries: a CPU search of thousands at 1M items costs seconds and needs no warming)."""
    index.search(q[:256], K)
    times: list[float] = []
    stop = time.perf_counter() + seconds
    while not times or (len(times) < repeats and time.perf_counter() < stop):
        began = time.perf_counter()
        index.search(q, K)
        times.append(time.perf_counter() - began)
    median = statistics.median(times)
    return {"batch": len(q), "repeats": len(times), "median_ms": median * 1000, "qps": len(q) / median}


def measure(index: faiss.Index, queries: np.ndarray, exact: np.ndarray, plan: Plan, deadline: float) -> dict[str, Any]:
    """Latency per batch size (skipped past `deadline`), recall@K and the top-K of the recall queries."""
    latency = []
    for batch, repeats in zip(plan.batches, plan.repeats, strict=True):
        if time.perf_counter() > deadline:
            latency.append({"batch": batch, "skipped": "time budget"})
            continue
        latency.append(time_batch(index, queries[:batch], repeats, plan.seconds))
    scores, ids = index.search(queries[: len(exact)], K)
    recall = np.mean([len(np.intersect1d(a, b[b >= 0])) / K for a, b in zip(exact, ids, strict=True)])
    return {"latency": latency, "recall": float(recall), "top": (scores, ids)}


def agreement(cpu: tuple[np.ndarray, np.ndarray], gpu: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Mean fraction of the CPU's top-K ids that the GPU returns, and the largest rank-wise score difference."""
    overlap = np.mean([len(np.intersect1d(a, b[b >= 0])) / K for a, b in zip(cpu[1], gpu[1], strict=True)])
    found = (cpu[1] >= 0) & (gpu[1] >= 0)  # padding (-1 ids, -FLT_MAX scores) differs between devices
    return {"id_overlap": float(overlap), "max_score_diff": float(np.max(np.abs(cpu[0] - gpu[0])[found], initial=0))}


def run_kind(
    kind: IndexKind, items: np.ndarray, queries: np.ndarray, exact: np.ndarray, plan: Plan, deadline: float
) -> dict[str, Any]:
    """Builds one index kind and measures it on GPU 0 (where FAISS has a GPU), then on the CPU: the GPU goes
    first so that the time budget cuts CPU repeats rather than GPU ones. A FAISS error on the GPU is recorded as
    `gpu_error` and the CPU is measured all the same."""
    spec = choose_index_spec(len(items), DIM, kind)
    began = time.perf_counter()
    index = build_index(items, spec)
    row: dict[str, Any] = {"kind": kind, "factory": spec.factory, "parameters": spec.parameters()}
    row["build_s"] = time.perf_counter() - began
    gpu = None
    if faiss.get_num_gpus() > 0:
        began = time.perf_counter()
        placed, device, resources = place_index(index, spec, gpu_device=0)
        row["gpu_device"], row["place_s"] = device, time.perf_counter() - began
        try:
            gpu = measure(placed, queries, exact, plan, deadline) if device != "cpu" else None
        except RuntimeError as error:
            row["gpu_error"] = str(error)
        del placed, resources  # frees the GPU copy before the next index
    cpu = measure(index, queries, exact, plan, deadline)
    row["cpu"] = {"latency": cpu["latency"], "recall": cpu["recall"]}
    if gpu is not None:
        row["gpu"] = {"latency": gpu["latency"], "recall": gpu["recall"]}
        row["gpu_vs_cpu"] = agreement(cpu["top"], gpu["top"])
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--sizes", type=int, nargs="+", help="catalog sizes (default 100000 1000000; quick 20000)")
    parser.add_argument("--quick", action="store_true", help="small catalog, fewer batches and repeats")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan(sizes=(100_000, 1_000_000))
    if args.sizes:
        plan = dataclasses.replace(plan, sizes=tuple(args.sizes))
    faiss.omp_set_num_threads(available_cpus())
    gpus = faiss.get_num_gpus()
    print(
        f"faiss {faiss.__version__}: {gpus} GPU(s){'' if gpus else ' -- CPU only'}; {available_cpus()} CPUs", flush=True
    )
    report: dict[str, Any] = {"command": command_line(), "machine": machine(), "k": K, "dim": DIM, "noise": NOISE}
    report |= {"plan": dataclasses.asdict(plan), "faiss_gpus": gpus, "hnsw": HNSW_NOTE, "results": []}
    deadline = time.perf_counter() + plan.budget_s
    for size in plan.sizes:
        items, queries = catalog(size, max(max(plan.batches), plan.recall_queries))
        exact = exact_top_k(items, queries[: plan.recall_queries])
        for kind in KINDS:
            if time.perf_counter() > deadline:
                report["skipped"] = [*report.get("skipped", []), f"{size} {kind}: time budget"]
                continue
            row = {"items": size, **run_kind(kind, items, queries, exact, plan, deadline)}
            report["results"].append(row)
            print(summary_line(row), flush=True)
            write_json(args.out / "gpu_index.json", report)
            (args.out / "gpu_index.md").write_text(markdown(report))
    return report


def summary_line(row: dict[str, Any]) -> str:
    parts = [f"{row['items']} {row['factory']} build {row['build_s']:.1f}s"]
    for device in ("cpu", "gpu"):
        if device in row:
            ms = " ".join(f"b{r['batch']}={r['median_ms']:.3g}ms" for r in row[device]["latency"] if "median_ms" in r)
            parts.append(f"{device}: recall {row[device]['recall']:.3f} {ms}")
    if "gpu_vs_cpu" in row:
        parts.append(
            f"gpu~cpu overlap {row['gpu_vs_cpu']['id_overlap']:.4f} dmax {row['gpu_vs_cpu']['max_score_diff']:.2g}"
        )
    elif "gpu_device" in row:
        parts.append(f"placed on {row['gpu_device']} {row.get('gpu_error', '')}".rstrip())
    return " | ".join(parts)


def markdown(report: dict[str, Any]) -> str:
    info, batches = report["machine"], report["plan"]["batches"]
    gpu_note = "" if report["faiss_gpus"] else " FAISS sees no GPU here: CPU only."
    note = (
        f"d = {report['dim']} random unit vectors; queries are items plus noise of norm ~{report['noise']} "
        f"(re-normalised); k = {report['k']}; CPU: FAISS on every core; GPU: `place_index` on GPU 0; median of "
        f"time-boxed repeats after a warm-up.{gpu_note} {report['hnsw']} IVF recall is low by construction (no "
        "cluster structure in random vectors): this bench measures speed and GPU/CPU agreement (docs/gpu.md)."
    )
    latency_rows, quality_rows = [], []
    for row in report["results"]:
        for device in ("cpu", "gpu"):
            if device in row:
                cells = {r["batch"]: r for r in row[device]["latency"]}
                ms = [cells[b].get("median_ms", float("nan")) for b in batches]
                qps = [round(cells[b]["qps"]) if "qps" in cells[b] else float("nan") for b in batches]
                latency_rows.append([row["items"], row["factory"], device, *ms, *qps])
        match = row.get("gpu_vs_cpu", {})
        quality_rows.append(
            [
                row["items"],
                row["factory"],
                row["build_s"],
                row["cpu"]["recall"],
                row.get("gpu", {}).get("recall", float("nan")),
                match.get("id_overlap", float("nan")),
                match.get("max_score_diff", float("nan")),
                row.get("gpu_device", "-") + (f" (error: {row['gpu_error']})" if "gpu_error" in row else ""),
            ]
        )
    header = ["items", "index", "device", *(f"ms b={b}" for b in batches), *(f"q/s b={b}" for b in batches)]
    quality = ["items", "index", "build s", "CPU recall@100", "GPU recall@100", "GPU~CPU id overlap"]
    quality += ["max abs score diff", "placed on"]
    skipped = [f"Skipped: {'; '.join(report['skipped'])}.", ""] if report.get("skipped") else []
    return "\n".join(
        [
            header_markdown("FAISS GPU vs CPU: latency, throughput, recall", info, report["command"], note),
            "## Median ms per batch and queries/s",
            "",
            markdown_table(header, latency_rows),
            "",
            "## Recall@100 against exact top-100, and GPU answers against CPU answers",
            "",
            markdown_table(quality, quality_rows),
            "",
            *skipped,
        ]
    )


if __name__ == "__main__":
    main()
