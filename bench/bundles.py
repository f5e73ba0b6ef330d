"""Serving benchmark bundles with TRAINED embeddings: a two-tower trained on a clustered synthetic log.

A log that covers a 1M-item catalog well enough to train every item would need far more interactions than
2 CPU cores can train in a benchmark run. So the two-tower is trained on a synthetic log with planted clusters
(`base_items` items), and the catalog of N items is built from its trained item embeddings: item i is trained
item `i mod base_items` plus Gaussian jitter (noise norm `JITTER_NORM` on unit vectors), re-normalised. The
catalog keeps the trained geometry (clusters, popularity-shaped density) that makes approximate search hard or
easy, and the queries are the trained query tower's outputs for real users of the log. The exported bundles
hold that trained query tower, so the server runs the real tower.

The approximate index (IVF by default) is tuned on a sample of the users' trained query embeddings: the
smallest nprobe (efSearch for HNSW) whose Recall@100 against exact search reaches `TARGET_RECALL`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from model.bundle.export import export_bundle
from model.bundle.index import BLAS_THRESHOLD, IndexSpec, build_index, choose_index_spec, choose_nlist, l2_normalize
from model.data import leave_last_out
from model.synthetic import SyntheticConfig, make_synthetic, synthetic_tables
from model.training.config import ModelConfig, TrainConfig
from model.training.factory import tower_shape
from model.training.pipeline import user_feature_rows
from model.training.prepare import prepare
from model.training.trainer import build_model, train

logger = logging.getLogger(__name__)

K = 100
TARGET_RECALL = 0.95
JITTER_NORM = 0.3
RECALL_QUERIES = 2000
# export_bundle's own recall check holds [queries, N] score blocks in memory: keep it small at 1M items.
EXPORT_RECALL_QUERIES = 64
IVF_NPROBES = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
HNSW_EF = (16, 32, 64, 100, 128, 192, 256, 384, 512)


@dataclass(frozen=True)
class WorldConfig:
    """The synthetic log the two-tower is trained on, and how long to train."""

    num_users: int
    base_items: int
    num_clusters: int
    interactions_per_user: int
    epochs: int
    seed: int = 0


QUICK_WORLD = WorldConfig(num_users=2000, base_items=5000, num_clusters=40, interactions_per_user=25, epochs=2)
TINY_WORLD = WorldConfig(num_users=300, base_items=500, num_clusters=10, interactions_per_user=10, epochs=1)
FULL_WORLD = WorldConfig(num_users=20000, base_items=50000, num_clusters=200, interactions_per_user=50, epochs=3)


@dataclass(frozen=True)
class TrainedWorld:
    """A trained two-tower and what the bundles and the load generator need from it."""

    model: Any
    query_spec: Any
    item_embeddings: np.ndarray  # [base_items, d], unit norm
    query_embeddings: np.ndarray  # [users, d], unit norm (held-out recall queries come from these)
    request_rows: list[dict[str, Any]]  # per user: {"user_id": ..., "features": {...}}
    train_seconds: float
    validation_recall_at_10: float


def train_world(config: WorldConfig, run_dir: Path) -> TrainedWorld:
    """Trains the two-tower on the synthetic log (in-batch negatives, logQ, cosine, d = 64)."""
    synthetic = make_synthetic(
        SyntheticConfig(
            num_users=config.num_users,
            num_items=config.base_items,
            num_clusters=config.num_clusters,
            interactions_per_user=config.interactions_per_user,
            seed=config.seed,
        )
    )
    log, users, items = synthetic_tables(synthetic)
    model_config = ModelConfig(embedding_dim=64)
    train_config = TrainConfig(epochs=config.epochs, batch_size=1024, patience=0, verbose=0, seed=config.seed)
    data = prepare(log, leave_last_out(log), users=users, items=items, shape=tower_shape(model_config))
    model = build_model(data, model_config, train_config)
    started = time.perf_counter()
    state = train(model, data, train_config, run_dir)
    seconds = time.perf_counter() - started
    all_users = np.arange(len(data.user_ids))
    features = user_feature_rows(data.user_features, all_users)
    queries = l2_normalize(model.query_embeddings(features))
    rows = [
        {
            "user_id": str(features["user_id"][u]),
            "features": {k: str(v[u]) for k, v in features.items() if k != "user_id"},
        }
        for u in all_users
    ]
    return TrainedWorld(
        model=model,
        query_spec=data.query_spec,
        item_embeddings=l2_normalize(model.item_embeddings()),
        query_embeddings=queries,
        request_rows=rows,
        train_seconds=seconds,
        validation_recall_at_10=max((r.get("val_recall@10", 0.0) for r in state.history), default=0.0),
    )


def expand_catalog(base: np.ndarray, num_items: int, seed: int) -> np.ndarray:
    """[num_items, d] unit vectors: trained item `i mod len(base)` plus jitter of norm about JITTER_NORM."""
    rng = np.random.default_rng(seed)
    out = np.empty((num_items, base.shape[1]), np.float32)
    step = 200_000
    for start in range(0, num_items, step):
        stop = min(start + step, num_items)
        rows = base[np.arange(start, stop) % len(base)]
        noise = rng.standard_normal(rows.shape).astype(np.float32) * (JITTER_NORM / np.sqrt(base.shape[1]))
        if start < len(base):  # the first copy of each trained item is kept exactly
            noise[: max(0, min(stop, len(base)) - start)] = 0.0
        out[start:stop] = l2_normalize(rows + noise)
    return out


def exact_ids(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids by inner product (FAISS flat, BLAS path; memory stays small at 1M items)."""
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    return index.search(queries, k)[1]


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(a, b[b >= 0])) for a, b in zip(exact, found, strict=True))
    return hits / exact.size


def tune_ann(items: np.ndarray, queries: np.ndarray, exact: np.ndarray, kind: str) -> tuple[IndexSpec, list[dict]]:
    """The cheapest search setting of an IVF / HNSW index over `items` with Recall@K >= TARGET_RECALL."""
    base = choose_index_spec(len(items), items.shape[1], kind="hnsw" if kind == "hnsw" else "ivf")
    index = build_index(items, base)
    name, values = ("efSearch", HNSW_EF) if kind == "hnsw" else ("nprobe", IVF_NPROBES)
    if kind != "hnsw":
        values = tuple(v for v in values if v <= choose_nlist(len(items)))
    curve, chosen = [], None
    for value in values:
        faiss.ParameterSpace().set_index_parameter(index, name, value)
        r = recall(index.search(queries, K)[1], exact)
        curve.append({name: value, "recall_at_100": r})
        logger.info("ann tuning %s=%d recall@%d=%.4f", name, value, K, r)
        if r >= TARGET_RECALL:
            chosen = value
            break
    chosen = chosen if chosen is not None else values[-1]
    spec = IndexSpec(base.factory, ef_search=chosen) if kind == "hnsw" else IndexSpec(base.factory, nprobe=chosen)
    return spec, curve


def catalog_tag(num_items: int) -> str:
    """10k, 100k, 1m, ... (exact item counts below 1000)."""
    if num_items >= 1_000_000 and num_items % 1_000_000 == 0:
        return f"{num_items // 1_000_000}m"
    return f"{num_items // 1000}k" if num_items % 1000 == 0 else str(num_items)


def build_bundles(
    world: TrainedWorld, models_dir: Path, num_items: int, ann: str, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Exports `flat-<N>` and `<ann>-<N>` bundles (skipped when present); returns their descriptions."""
    tag = catalog_tag(num_items)
    names = {"flat": f"flat-{tag}", ann: f"{ann}-{tag}"}
    meta_path = models_dir / f"catalog-{tag}.json"
    if meta_path.exists() and all((models_dir / n / "1" / "manifest.json").exists() for n in names.values()):
        return dict(json.loads(meta_path.read_text()))
    items = expand_catalog(world.item_embeddings, num_items, seed)
    rng = np.random.default_rng(seed + 1)
    sample = rng.choice(
        len(world.query_embeddings), size=min(RECALL_QUERIES, len(world.query_embeddings)), replace=False
    )
    queries = np.ascontiguousarray(world.query_embeddings[sample])
    exact = exact_ids(items, queries, K)
    ann_spec, curve = tune_ann(items, queries, exact, ann)
    result: dict[str, dict[str, Any]] = {}
    for kind, spec in (("flat", IndexSpec("Flat")), (ann, ann_spec)):
        started = time.perf_counter()
        export_bundle(
            models_dir,
            names[kind],
            query_tower=world.model.query_tower,
            query_spec=world.query_spec,
            item_embeddings=items,
            item_ids=np.array([f"i{i}" for i in range(num_items)]),
            popularity=np.zeros(num_items, np.int64),
            index_spec=spec,
            similarity="cosine",
            metrics={"note": "benchmark bundle: trained embeddings expanded with jitter (bench/bundles.py)"},
            version=1,
            recall_queries=queries[:EXPORT_RECALL_QUERIES],
            seed=seed,
        )
        result[kind] = {
            "model_name": names[kind],
            "num_items": num_items,
            "index": spec.factory,
            "params": spec.parameters(),
            "recall_at_100": 1.0 if kind == "flat" else curve[-1]["recall_at_100"],
            "recall_queries": len(queries),
            "tuning_curve": [] if kind == "flat" else curve,
            "export_seconds": time.perf_counter() - started,
        }
    meta_path.write_text(json.dumps(result, indent=2))
    return result
