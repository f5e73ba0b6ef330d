"""Large catalogs with IVF-PQ: build time, peak memory, index bytes, QPS and recall@100 at 1M and 10M items.

A synthetic catalog of `--sizes` items (d = 64) is drawn from `CLUSTERS` latent clusters (item = its cluster's
centre plus noise, L2-normalised), so that inverted lists mean something; queries are fresh draws from the same
clusters. Each size is written in chunks to a float32 file in `--scratch` (never whole in memory), and a child
process builds `IndexSpec(FACTORY)`: the coarse and PQ quantizers are trained on a seeded sample of
`TRAIN_SAMPLE` items, then the catalog is added in chunks of `CHUNK` rows read from the file, and the index is
written. Its peak RSS (ru_maxrss) is the build's memory. Then, each in its own child process:
- search: recall@100 of `RECALL_QUERIES` queries against exact top-100 (blocked brute force over the file) at
  each nprobe of `NPROBES`, and queries/s of batches of `BATCH` queries on every core FAISS may use;
- load: the index read into memory vs memory-mapped (model/bundle/index_mmap.py, mode "on"): anonymous and
  file-backed RSS after loading and after one batch of searches.
Writes large_catalog.{json,md,png} into `--out` after every size, so a run cut short keeps what it measured.

    nice -n 10 python -m bench.large_catalog [--sizes 1000000 10000000] [--out docs/benchmarks]
    python -m bench.large_catalog --sizes 100000 --out /tmp/large_catalog      # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: import from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import BENCH_ENV, OUT, command_line, header_markdown, machine, markdown_table, write_json

for _key, _value in BENCH_ENV.items():  # before FAISS loads OpenMP
    os.environ.setdefault(_key, _value)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from model.bundle.index import IndexSpec, l2_normalize, set_search_params  # noqa: E402
from model.bundle.index_mmap import read_index  # noqa: E402
from model.bundle.refine import RefinedIndex  # noqa: E402
from service.cpu import available_cpus  # noqa: E402

DIM = 64
K = 100
CLUSTERS = 10_000
NOISE = 0.6  # norm of an item's offset from its unit-norm centre (cosine to the centre about 0.86)
FACTORY = "IVF4096,PQ32"
NPROBES = (16, 64, 256)
SERVE_NPROBE = 64
# Re-rank: the IVF-PQ top RERANK_DEPTH re-scored exactly from the float32 embeddings (memory-mapped), top-K kept.
RERANK_DEPTH = 400
TRAIN_SAMPLE = 262_144
CHUNK = 1_000_000
RECALL_QUERIES = 200
BATCH = 1000
EXACT_BLOCK = 250_000


def _rss_mb(pid: int | str = "self") -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of process `pid` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _draw(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    cluster = rng.integers(0, len(centres), count)
    noise = (NOISE / np.sqrt(DIM)) * rng.standard_normal((count, DIM), dtype=np.float32)
    return l2_normalize(centres[cluster] + noise)


def write_catalog(path: Path, num_items: int, seed: int = 0) -> np.ndarray:
    """Writes [num_items, DIM] float32 items to `path` chunk by chunk; returns RECALL_QUERIES+BATCH queries."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((CLUSTERS, DIM), dtype=np.float32))
    with path.open("wb") as f:
        for start in range(0, num_items, CHUNK):
            _draw(rng, centres, min(CHUNK, num_items - start)).tofile(f)
    return _draw(rng, centres, max(RECALL_QUERIES, BATCH))


def read_rows(path: Path, start: int, count: int) -> np.ndarray:
    """Rows [start, start + count) of the catalog file, read into an ordinary array."""
    return np.fromfile(path, dtype=np.float32, count=count * DIM, offset=start * DIM * 4).reshape(count, DIM)


def build(catalog: Path, num_items: int, index_path: Path) -> dict[str, Any]:
    """Child: trains on a sample, adds in chunks, writes the index; times and peak RSS."""
    spec = IndexSpec(FACTORY, nprobe=SERVE_NPROBE)
    began = time.perf_counter()
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(num_items, size=min(num_items, TRAIN_SAMPLE), replace=False))
    data = np.memmap(catalog, dtype=np.float32, mode="r", shape=(num_items, DIM))
    sample = np.ascontiguousarray(data[rows])
    del data
    index = faiss.index_factory(DIM, spec.factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = 0
    ivf.cp.min_points_per_centroid = 1
    index.do_polysemous_training = False
    index.train(sample)
    trained = time.perf_counter()
    for start in range(0, num_items, CHUNK):
        index.add(read_rows(catalog, start, min(CHUNK, num_items - start)))
    added = time.perf_counter()
    set_search_params(index, spec)
    faiss.write_index(index, str(index_path))
    written = time.perf_counter()
    return {
        "factory": spec.factory,
        "train_sample": len(sample),
        "train_s": trained - began,
        "add_s": added - trained,
        "write_s": written - added,
        "build_s": written - began,
        "peak_rss_mb": _peak_rss_mb(),
        "index_bytes": index_path.stat().st_size,
    }


def exact_top_k(rows: Callable[[int, int], np.ndarray], num_items: int, queries: np.ndarray) -> np.ndarray:
    """Exact top-K ids [len(queries), K] by inner product: brute force over blocks of EXACT_BLOCK items, each
    read by `rows(start, count)` (from the catalog file, or an array), so memory holds one block."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, num_items, EXACT_BLOCK):
        block = rows(start, min(EXACT_BLOCK, num_items - start))
        scores = np.concatenate([best_scores, queries @ block.T], axis=1)
        block_ids = np.broadcast_to(np.arange(start, start + len(block)), (len(queries), len(block)))
        ids = np.concatenate([best_ids, block_ids], axis=1)
        top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(ids, top, axis=1)
    return best_ids


def search(index_path: Path, catalog: Path, num_items: int, queries: np.ndarray) -> dict[str, Any]:
    """Child: recall@K per nprobe against exact search, and queries/s of one BATCH-query search per nprobe."""
    began = time.perf_counter()
    exact = exact_top_k(lambda start, count: read_rows(catalog, start, count), num_items, queries[:RECALL_QUERIES])
    exact_s = time.perf_counter() - began
    index = read_index(index_path, "off")
    rows = []
    for nprobe in NPROBES:
        set_search_params(index, IndexSpec(FACTORY, nprobe=nprobe))
        _, found = index.search(queries[:RECALL_QUERIES], K)
        recall = np.mean([len(np.intersect1d(a, b[b >= 0])) / K for a, b in zip(exact, found, strict=True)])
        index.search(queries[:100], K)  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            index.search(queries[:BATCH], K)
            times.append(time.perf_counter() - start)
        rows.append({"nprobe": nprobe, "recall_at_100": float(recall), "qps": BATCH / min(times)})
    set_search_params(index, IndexSpec(FACTORY, nprobe=SERVE_NPROBE))
    items = np.memmap(catalog, dtype=np.float32, mode="r", shape=(num_items, DIM))
    found = rerank(index, items, queries[:RECALL_QUERIES])
    recall = np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(exact, found, strict=True)])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        rerank(index, items, queries[:BATCH])
        times.append(time.perf_counter() - start)
    reranked = {
        "nprobe": SERVE_NPROBE,
        "depth": RERANK_DEPTH,
        "recall_at_100": float(recall),
        "qps": BATCH / min(times),
    }
    return {"exact_s": exact_s, "faiss_threads": faiss.omp_get_max_threads(), "by_nprobe": rows, "rerank": reranked}


def rerank(index: faiss.Index, items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Top-K ids [len(queries), K]: the index's top RERANK_DEPTH re-scored by exact inner product with `items`
    (the engine's re-rank, model/bundle/refine.py)."""
    return RefinedIndex(index, items, RERANK_DEPTH // K).search(queries, K)[1]


def load(index_path: Path, mode: str, queries: np.ndarray) -> dict[str, Any]:
    """Child: RSS growth of reading the index (mode "off" or "on") and of then searching one batch."""
    before = _rss_mb()
    began = time.perf_counter()
    index = read_index(index_path, mode)  # type: ignore[arg-type]
    load_s = time.perf_counter() - began
    loaded = _rss_mb()
    set_search_params(index, IndexSpec(FACTORY, nprobe=SERVE_NPROBE))
    index.search(queries[:BATCH], K)
    searched = _rss_mb()
    return {
        "mode": mode,
        "load_s": load_s,
        "anon_mb_after_load": loaded["RssAnon"] - before["RssAnon"],
        "file_mb_after_load": loaded["RssFile"] - before["RssFile"],
        "anon_mb_after_search": searched["RssAnon"] - before["RssAnon"],
        "file_mb_after_search": searched["RssFile"] - before["RssFile"],
    }


def _child(step: str, *args: str) -> dict[str, Any]:
    """Runs `step` in a fresh interpreter (its own peak RSS) and returns its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.large_catalog", "--child", step, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main(step: str, args: list[str]) -> None:
    scratch, num_items = Path(args[0]), int(args[1])
    catalog, index_path = scratch / f"items_{num_items}.f32", scratch / f"index_{num_items}.faiss"
    queries = np.load(scratch / f"queries_{num_items}.npy")
    if step == "build":
        result = build(catalog, num_items, index_path)
    elif step == "search":
        result = search(index_path, catalog, num_items, queries)
    else:
        result = load(index_path, args[2], queries)
    print(json.dumps(result))


def run_size(scratch: Path, num_items: int) -> dict[str, Any]:
    began = time.perf_counter()
    queries = write_catalog(scratch / f"items_{num_items}.f32", num_items)
    np.save(scratch / f"queries_{num_items}.npy", queries)
    row: dict[str, Any] = {"num_items": num_items, "generate_s": time.perf_counter() - began}
    row["build"] = _child("build", str(scratch), str(num_items))
    row["search"] = _child("search", str(scratch), str(num_items))
    row["load"] = [_child("load", str(scratch), str(num_items), mode) for mode in ("off", "on")]
    (scratch / f"items_{num_items}.f32").unlink()
    return row


def markdown(report: dict[str, Any]) -> str:
    note = (
        f"Synthetic catalogs, d = {DIM}, {CLUSTERS} latent clusters; `{FACTORY}`, quantizers trained on "
        f"{TRAIN_SAMPLE} items, items added in chunks of {CHUNK}. Recall@{K}: {RECALL_QUERIES} queries against "
        f"exact top-{K} (blocked brute force). QPS: one batch of {BATCH} queries, best of 3, FAISS threads = "
        f"{report['faiss_threads']}; the machine is shared, so QPS is a floor. Peak RSS: the build process's "
        f"ru_maxrss. Re-rank (measured here, not in the engine yet): the top {RERANK_DEPTH} of IVF-PQ re-scored "
        "exactly from the float32 item embeddings (a memory-mapped file, as a bundle's item_embeddings.npy can be). "
        "Load: RSS growth of a fresh process reading the index into memory vs memory-mapped, after "
        "loading and after one batch of searches (anonymous = private memory, file = shared page cache)."
    )
    build_rows = [
        [r["num_items"], r["build"]["train_s"], r["build"]["add_s"], r["build"]["write_s"], r["build"]["build_s"],
         r["build"]["peak_rss_mb"], r["build"]["index_bytes"] / 2**20]
        for r in report["sizes"]
    ]  # fmt: skip
    search_rows = [
        [r["num_items"], s["nprobe"], s["recall_at_100"], s["qps"]]
        for r in report["sizes"]
        for s in r["search"]["by_nprobe"]
    ] + [
        [r["num_items"], f"{SERVE_NPROBE} + exact re-rank of the top {RERANK_DEPTH}",
         r["search"]["rerank"]["recall_at_100"], r["search"]["rerank"]["qps"]]
        for r in report["sizes"]
    ]  # fmt: skip
    load_rows = [
        [r["num_items"], x["mode"], x["load_s"], x["anon_mb_after_load"], x["file_mb_after_load"],
         x["anon_mb_after_search"], x["file_mb_after_search"]]
        for r in report["sizes"] for x in r["load"]
    ]  # fmt: skip
    return "\n".join(
        [
            header_markdown("Large catalogs: IVF-PQ at 1M and 10M items", report["machine"], report["command"], note),
            "## Build",
            "",
            markdown_table(["items", "train s", "add s", "write s", "build s", "peak RSS MB", "index MB"], build_rows),
            "",
            f"## Recall@{K} and QPS (serving nprobe {SERVE_NPROBE})",
            "",
            markdown_table(["items", "nprobe", f"recall@{K}", "queries/s"], search_rows),
            "",
            "## Loading: in memory (off) vs memory-mapped (on)",
            "",
            markdown_table(
                ["items", "mmap", "load s", "anon MB loaded", "file MB loaded", "anon MB searched", "file MB searched"],
                load_rows,
            ),
            "",
        ]
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["num_items"] for r in report["sizes"]]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    axes[0].plot(sizes, [r["build"]["build_s"] for r in report["sizes"]], "o-")
    axes[0].set(title="build time (s)", xscale="log", xlabel="items")
    axes[1].plot(sizes, [r["build"]["peak_rss_mb"] for r in report["sizes"]], "o-", label="build peak RSS")
    axes[1].plot(sizes, [r["build"]["index_bytes"] / 2**20 for r in report["sizes"]], "s-", label="index file")
    for position, marker, label in ((0, "^-", "served, in memory"), (1, "v-", "served, mmap (anon)")):
        anon = [r["load"][position]["anon_mb_after_search"] for r in report["sizes"]]
        axes[1].plot(sizes, anon, marker, label=label)
    axes[1].set(title="memory (MB)", xscale="log", xlabel="items")
    axes[1].legend(fontsize=7)
    serve = [next(s for s in r["search"]["by_nprobe"] if s["nprobe"] == SERVE_NPROBE) for r in report["sizes"]]
    axes[2].plot(sizes, [s["qps"] for s in serve], "o-", label="queries/s")
    axes[2].set(title=f"QPS and recall@{K} at nprobe {SERVE_NPROBE}", xscale="log", xlabel="items")
    twin = axes[2].twinx()
    twin.plot(sizes, [s["recall_at_100"] for s in serve], "s--", color="tab:red")
    twin.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child_main(argv[1], argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/large_catalog_scratch"))
    args = parser.parse_args(argv)
    args.scratch.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": command_line(),
        "machine": machine(),
        "dim": DIM,
        "k": K,
        "factory": FACTORY,
        "faiss_threads": available_cpus(),
        "sizes": [],
    }
    try:
        for num_items in args.sizes:
            report["sizes"].append(run_size(args.scratch, num_items))
            write_json(args.out / "large_catalog.json", report)
            (args.out / "large_catalog.md").write_text(markdown(report))
            plot(report, args.out / "large_catalog.png")
            print(f"done {num_items} items", flush=True)
    finally:
        shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
