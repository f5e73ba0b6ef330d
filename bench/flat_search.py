"""FAISS flat search on CPU: threads vs concurrent streams, and where the BLAS path starts to pay.

On the serving benchmark's Flat bundle (trained embeddings, `--bundle`), with the serving queries:
1. streams x threads: QPS of batches of `--batch` queries (k = 100) from one stream with FAISS on every core,
   from as many concurrent streams (threads) as cores with FAISS on one thread each, and one single-threaded
   stream. This is why the server runs two batches at once, each FAISS search on its share of the cores.
2. BLAS threshold: ms per batch for batch sizes 1..64 on one thread, with `distance_compute_blas_threshold`
   above the batch (the scan path) and below it (the BLAS path). This is where `BLAS_THRESHOLD` comes from.
Writes flat_search.{json,md} into `--out-dir`.

    python -m bench.flat_search [--bundle runs/bench-serving-full/models/flat-1m/1]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path
from typing import Any

from bench.report import (
    BENCH_ENV,
    OUT,
    command_line,
    header_markdown,
    machine,
    markdown_table,
    run_streams,
    write_json,
)

for _key, _value in BENCH_ENV.items():  # before FAISS loads OpenMP
    os.environ.setdefault(_key, _value)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from service.cpu import available_cpus  # noqa: E402

K = 100
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def queries(index: faiss.Index, count: int, seed: int = 0) -> np.ndarray:
    """Unit-norm queries near the indexed vectors (stored vectors plus noise), as trained queries are."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, index.ntotal, count)
    base = np.stack([index.reconstruct(int(r)) for r in rows]).astype(np.float32)
    noisy = base + 0.5 * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(index.d)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def streams_qps(index: faiss.Index, q: np.ndarray, streams: int, threads: int, seconds: float) -> float:
    """Queries/s of `streams` threads each searching batches of len(q) with FAISS on `threads` threads."""
    done = [0] * streams

    def run(i: int, start: threading.Barrier) -> None:
        faiss.omp_set_num_threads(threads)
        index.search(q, K)  # untimed
        start.wait()
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            index.search(q, K)
            done[i] += len(q)

    began = run_streams(run, streams)
    return sum(done) / (time.perf_counter() - began)


def batch_ms(index: faiss.Index, q: np.ndarray, seconds: float) -> float:
    index.search(q, K)
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds or n < 3:
        index.search(q, K)
        n += 1
    return (time.perf_counter() - began) / n * 1000


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path("runs/bench-serving-full/models/flat-1m/1"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    info = machine()
    index = faiss.read_index(str(args.bundle / "index.faiss"))
    cpus = available_cpus()
    q = queries(index, max((*BATCH_SIZES, args.batch)))
    faiss.cvar.distance_compute_blas_threshold = 1
    arrangements = [(1, cpus), (cpus, 1), (1, 1)]
    streams = [
        {"streams": n, "threads_each": t, "qps": streams_qps(index, q[: args.batch], n, t, args.seconds)}
        for n, t in arrangements
    ]
    faiss.omp_set_num_threads(1)
    blas = []
    for size in BATCH_SIZES:
        row: dict[str, Any] = {"batch": size}
        for path, threshold in (("scan", size + 1), ("blas", size)):
            faiss.cvar.distance_compute_blas_threshold = threshold
            row[f"{path}_ms"] = batch_ms(index, q[:size], args.seconds / 4)
        blas.append(row)
    report = {
        "command": command_line(),
        "machine": info,
        "bundle": str(args.bundle),
        "items": int(index.ntotal),
        "dim": int(index.d),
        "k": K,
        "batch": args.batch,
        "streams_vs_threads": streams,
        "blas_vs_scan_one_thread": blas,
    }
    write_json(args.out_dir / "flat_search.json", report)
    (args.out_dir / "flat_search.md").write_text(markdown(report))
    for row in streams:
        print(row, flush=True)
    for row in blas:
        print(row, flush=True)
    return report


def markdown(report: dict[str, Any]) -> str:
    note = (
        f"FAISS IndexFlatIP, {report['items']} x {report['dim']} (trained embeddings of the serving benchmark), "
        f"k = {report['k']}, OMP_WAIT_POLICY=PASSIVE."
    )
    return "\n".join(
        [
            header_markdown(
                "Flat search: threads, streams and the BLAS path", report["machine"], report["command"], note
            ),
            f"## Batches of {report['batch']}: one multi-threaded stream vs concurrent single-threaded streams",
            "",
            markdown_table(
                ["streams", "FAISS threads each", "QPS"],
                [[r["streams"], r["threads_each"], r["qps"]] for r in report["streams_vs_threads"]],
            ),
            "",
            "## One thread: scan path vs BLAS path by batch size",
            "",
            markdown_table(
                ["batch", "scan ms", "BLAS ms"],
                [[r["batch"], r["scan_ms"], r["blas_ms"]] for r in report["blas_vs_scan_one_thread"]],
            ),
            "",
        ]
    )


if __name__ == "__main__":
    main()
