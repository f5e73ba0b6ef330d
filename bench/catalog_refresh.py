"""Catalog refresh time at 1M items: `refresh_catalog` on a synthetic million-item catalog with an IVF index.

The parent bundle holds N synthetic items (id, one of 1,000 categories, a log-normal price, a title) embedded by
an item tower whose id vocabulary covers the first 50,000 items (the rest take the out-of-vocabulary id row and
are placed by category and price), with the index `choose_index_spec(N, 64, "ivf")` picks. The towers are
seeded and untrained: the refresh does the same work whatever the weights. The new item table drops 1 % of the
items, changes the category of another 1 % and adds 1 % new ids, N rows in all. The refresh is timed end to end
(open and verify the parent, read the table, embed, re-add to the parent's trained IVF quantizer, recall on
1,000 queries against exact search, write and fsync the version).

    python -m bench.catalog_refresh [--items 1000000]

Writes docs/benchmarks/catalog_refresh.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.bundle.export import export_bundle
from model.bundle.index import choose_index_spec
from model.catalog_refresh import refresh_catalog
from model.features import CategoricalFeature, NumericFeature, TowerSpec
from model.towers import build_tower

OUT = Path("docs/benchmarks")
DIM = 64
CATEGORIES = 1000
VOCABULARY = 50_000
CHURN = 0.01
EXPORT_RECALL_QUERIES = 64
BATCH = 8192


def item_id(n: int) -> str:
    return f"it{n:08d}"


def specs() -> tuple[TowerSpec, TowerSpec]:
    """The query and item towers of the synthetic catalog (64-d, cosine)."""
    query = TowerSpec(
        "query",
        (CategoricalFeature("user_id", tuple(f"u{i}" for i in range(1000))),),
        hidden_units=(128,),
        output_dim=DIM,
    )
    item = TowerSpec(
        "item",
        (
            CategoricalFeature("item_id", tuple(item_id(i) for i in range(VOCABULARY))),
            CategoricalFeature("category", tuple(f"c{i}" for i in range(CATEGORIES))),
            NumericFeature("price", mean=33.0, std=44.0),
        ),
        hidden_units=(128,),
        output_dim=DIM,
    )
    return query, item


def catalog(numbers: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Columns of the items numbered `numbers`: id, category, price (values depend on the number and seed)."""
    rng = np.random.default_rng(seed)
    return {
        "item_id": np.array([item_id(n) for n in numbers.tolist()], dtype=object),
        "category": np.array([f"c{(n * 7919) % CATEGORIES}" for n in numbers.tolist()], dtype=object),
        "price": np.exp(rng.normal(3.0, 1.0, len(numbers))).astype(np.float32),
        "title": np.array([f"Item {n}" for n in numbers.tolist()], dtype=object),
    }


def embed(tower: keras.Model, columns: dict[str, np.ndarray]) -> np.ndarray:
    features = {
        "item_id": columns["item_id"].astype(str),
        "category": columns["category"].astype(str),
        "price": columns["price"].astype(np.float32),
    }
    parts = []
    for start in range(0, len(features["item_id"]), BATCH):
        part = {k: v[start : start + BATCH] for k, v in features.items()}
        parts.append(np.asarray(tower(part, training=False), np.float32))
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-catalog-refresh"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    shutil.rmtree(args.work_dir, ignore_errors=True)
    n = args.items
    keras.utils.set_random_seed(0)
    query_spec, item_spec = specs()
    query_tower, item_tower = build_tower(query_spec), build_tower(item_spec)

    started = time.perf_counter()
    old = catalog(np.arange(n), seed=0)
    parent_embeddings = embed(item_tower, old)
    spec = choose_index_spec(n, DIM, kind="ivf")
    parent = export_bundle(
        args.work_dir / "models",
        "catalog",
        query_tower=query_tower,
        query_spec=query_spec,
        item_embeddings=parent_embeddings,
        item_ids=old["item_id"].astype(str),
        popularity=np.zeros(n, np.int64),
        index_spec=spec,
        similarity="cosine",
        metrics={},
        display={"title": old["title"]},
        recall_queries=parent_embeddings[:EXPORT_RECALL_QUERIES],
        item_tower=item_tower,
        item_spec=item_spec,
    )
    setup_seconds = time.perf_counter() - started

    table_path = _new_table(old, n, args.work_dir / "items.parquet")
    result = refresh_catalog(parent, table_path)
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.catalog_refresh", *sys.argv[1:]]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": 2, "shared": True},
        "items": n,
        "index": spec.factory,
        "nprobe": spec.nprobe,
        "parent_setup_seconds": setup_seconds,
        "refresh_seconds": dict(result.seconds),
        "lineage": dict(result.lineage),
        "index_recall": json.loads(result.path.joinpath("manifest.json").read_text())["index"]["recall"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "catalog_refresh.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "catalog_refresh.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


def _new_table(old: dict[str, np.ndarray], n: int, path: Path) -> Path:
    """The parent's items minus 1 %, 1 % with a new category, plus 1 % new ids: N rows."""
    churn = int(CHURN * n)
    rng = np.random.default_rng(1)
    order = rng.permutation(n)
    removed, changed = np.sort(order[:churn]), np.sort(order[churn : 2 * churn])
    kept = np.setdiff1d(np.arange(n), removed)
    category = old["category"].copy()
    category[changed] = np.array([f"c{(int(c[1:]) + 1) % CATEGORIES}" for c in category[changed]], dtype=object)
    new = catalog(np.arange(n, n + churn), seed=2)
    columns = {
        "item_id": np.concatenate([old["item_id"][kept], new["item_id"]]),
        "category": np.concatenate([category[kept], new["category"]]),
        "price": np.concatenate([old["price"][kept], new["price"]]),
        "title": np.concatenate([old["title"][kept], new["title"]]),
    }
    pq.write_table(pa.table({k: pa.array(v.tolist() if v.dtype == object else v) for k, v in columns.items()}), path)
    return path


def _markdown(report: dict[str, Any]) -> str:
    seconds, lineage = report["refresh_seconds"], report["lineage"]
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if k != "total")
    return "\n".join(
        [
            "# Catalog refresh time",
            "",
            f"Command: `{report['command']}` (2 CPU cores shared with other jobs). Generated by "
            "bench/catalog_refresh.py.",
            "",
            f"{report['items']:,} items, index {report['index']} (nprobe {report['nprobe']}), the parent's trained "
            f"quantizer {lineage['index_quantizer']}; {lineage['items_added']:,} added, "
            f"{lineage['items_removed']:,} removed, {lineage['items_changed']:,} changed.",
            "",
            f"Refresh: **{seconds['total']:.1f} s** ({stages}); index Recall@{report['index_recall']['k']} "
            f"against exact search {report['index_recall']['recall']:.4f} on {report['index_recall']['num_queries']} "
            f"queries; peak RSS {report['peak_rss_mb']:.0f} MB (parent build included).",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
