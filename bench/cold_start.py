"""Cold-start benchmark on MovieLens-100K: items never seen in training, served after a catalog refresh.

A seeded random 10 % of the movies is held out of training entirely (their ratings leave train, validation and
test, and they leave the item table). The two-tower trains on the rest (the MovieLens benchmark's chosen
configuration, early stopping on validation Recall@10) and is exported with its item tower (version 1). Then
`refresh_catalog` embeds the full item table, held-out movies included, with that item tower (version 2): a
held-out movie's id is out of vocabulary, so its genres, decade and release year alone place it.

Every rating of a held-out movie is a query (its user's query-tower embedding; the user's other held-out movies
excluded) and the held-out movie its target, ranked:
- among the held-out movies only (which new movie will this user pick?), and
- in the full refreshed catalog (the user's warm movies also excluded),
against the expected value of a uniformly random ranking and a feature-popularity baseline: a movie scores the
mean, over its genres, of the genre's training interactions. The warm test (leave-last-out over the warm
movies) is scored with version 1's and version 2's warm-movie embeddings: the refresh must not move them.

    python -m bench.cold_start [--epochs 30]

Writes docs/benchmarks/cold_start.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
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
from model.bundle.index import IndexSpec
from model.bundle.reader import open_bundle
from model.catalog_refresh import refresh_catalog
from model.data import FeatureTable, leave_last_out, load_movielens_100k
from model.evaluation import Exclusions, evaluate_embeddings, evaluate_scores
from model.training.config import ModelConfig, TrainConfig
from model.training.factory import tower_shape
from model.training.pipeline import user_feature_rows
from model.training.prepare import prepare
from model.training.trainer import build_model, train

OUT = Path("docs/benchmarks")
HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 17
K = 10
# The chosen configuration of bench/train_movielens.py (docs/benchmarks/movielens_two_tower.md).
MODEL = ModelConfig(temperature=0.1, logq_correction=True, sampler="in-batch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-cold-start"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    shutil.rmtree(args.work_dir, ignore_errors=True)
    started = time.perf_counter()

    ml = load_movielens_100k()
    item_ids = ml.items.ids.astype(str)
    rng = np.random.default_rng(HOLDOUT_SEED)
    held = np.sort(rng.choice(item_ids, size=round(HOLDOUT_FRACTION * len(item_ids)), replace=False))
    is_cold = np.isin(ml.interactions.item_ids.astype(str), held)
    warm_log = ml.interactions.take(np.flatnonzero(~is_cold))
    cold_log = ml.interactions.take(np.flatnonzero(is_cold))
    warm_rows = np.flatnonzero(~np.isin(item_ids, held))
    warm_items = FeatureTable(
        key="item_id",
        ids=ml.items.ids[warm_rows],
        columns={name: values[warm_rows] for name, values in ml.items.columns.items()},
        kinds=dict(ml.items.kinds),
        source="ml-100k.item (warm movies)",
    )

    split = leave_last_out(warm_log)
    data = prepare(
        warm_log, split, users=ml.users, items=warm_items, shape=tower_shape(MODEL), display_column="movie_title"
    )
    keras.utils.set_random_seed(42)
    train_config = TrainConfig(epochs=args.epochs, learning_rate=0.005, patience=args.patience, verbose=0, seed=42)
    model = build_model(data, MODEL, train_config)
    mark = time.perf_counter()
    state = train(model, data, train_config, args.work_dir / "run")
    train_seconds = time.perf_counter() - mark

    models_dir = args.work_dir / "models"
    v1 = export_bundle(
        models_dir,
        "ml100k",
        query_tower=model.query_tower,
        query_spec=data.query_spec,
        item_embeddings=model.item_embeddings(),
        item_ids=data.catalog.external_ids.astype(str),
        popularity=data.catalog.popularity,
        index_spec=IndexSpec("Flat"),
        similarity=MODEL.similarity,
        metrics={},
        display={k: np.asarray(v).astype(str) for k, v in data.catalog.display.items()},
        item_tower=model.item_tower,
        item_spec=data.item_spec,
    )
    table = _item_table(ml.items, args.work_dir / "items.parquet")
    refreshed = refresh_catalog(v1, table)
    report = _evaluate(v1, refreshed.path, data, held, cold_log, ml.items)
    report.update(
        command=" ".join(["python -m bench.cold_start", *sys.argv[1:]]),
        machine={"platform": platform.platform(), "python": platform.python_version(), "cores": 2, "shared": True},
        holdout={
            "fraction": HOLDOUT_FRACTION,
            "seed": HOLDOUT_SEED,
            "movies": int(held.size),
            "ratings": len(cold_log),
            "warm_movies": len(data.catalog),
        },
        training={"epochs_done": state.epochs_done, "best_epoch": state.best_epoch, "seconds": train_seconds},
        refresh={"lineage": dict(refreshed.lineage), "seconds": dict(refreshed.seconds)},
        wall_seconds=time.perf_counter() - started,
    )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cold_start.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "cold_start.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


def _item_table(items: FeatureTable, path: Path) -> Path:
    """The full MovieLens item table (every movie, held-out ones included) as the refresh's input."""
    columns = items.columns
    table = pa.table(
        {
            "item_id": pa.array(items.ids.astype(str).tolist(), pa.string()),
            "movie_title": pa.array(columns["movie_title"].astype(str).tolist(), pa.string()),
            "release_year": pa.array(columns["release_year"].astype(np.float32)),
            "decade": pa.array(columns["decade"].astype(str).tolist(), pa.string()),
            "genres": pa.array([list(tokens) for tokens in columns["genres"]], pa.list_(pa.string())),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _evaluate(v1: Path, v2: Path, data: Any, held: np.ndarray, cold_log: Any, items: FeatureTable) -> dict[str, Any]:
    before, after = open_bundle(v1), open_bundle(v2)
    encode = after.load_query_tower()
    new_ids = after.load_items().ids.astype(str)
    row_of = {item: i for i, item in enumerate(new_ids.tolist())}
    embeddings = after.load_item_embeddings()

    # Warm test, before and after: version 2's rows of version 1's items, in version 1's order.
    warm_queries = encode(user_feature_rows(data.user_features, data.test.users))
    old = before.load_item_embeddings()
    moved = embeddings[[row_of[i] for i in before.load_items().ids.astype(str).tolist()]]
    warm = {
        "before": evaluate_embeddings(warm_queries, old, data.test.items, ks=(K,), exclude=data.test_exclusions),
        "after": evaluate_embeddings(warm_queries, moved, data.test.items, ks=(K,), exclude=data.test_exclusions),
        "max_abs_embedding_difference": float(np.abs(moved - old).max()),
    }
    warm["max_abs_metric_difference"] = max(abs(warm["before"][m] - warm["after"][m]) for m in warm["before"])

    # Cold pairs: users the model knows (every MovieLens user has warm ratings, so all of them).
    user_row = {user: u for u, user in enumerate(data.user_ids.tolist())}
    pairs = [(user_row[u], row_of[i]) for u, i in zip(cold_log.user_ids, cold_log.item_ids, strict=True)
             if u in user_row]  # fmt: skip
    users = np.array([u for u, _ in pairs], np.int64)
    targets = np.array([i for _, i in pairs], np.int64)
    queries = encode(user_feature_rows(data.user_features, users))
    held_rows = np.array(sorted(row_of[i] for i in held.tolist()), np.int64)
    cold_by_user: dict[int, set[int]] = {}
    for u, i in pairs:
        cold_by_user.setdefault(u, set()).add(i)
    warm_seen = {u: set() for u in cold_by_user}
    for part in (data.train, data.validation, data.test):
        for u, i in zip(part.users.tolist(), part.items.tolist(), strict=True):
            if u in warm_seen:
                warm_seen[u].add(row_of[str(data.catalog.external_ids[i])])

    genre_scores = _genre_popularity(data, items, new_ids)
    item_popularity = after.load_items().popularity.astype(np.float32)
    results: dict[str, Any] = {"pairs": len(pairs), "users": len(cold_by_user)}
    for scope in ("held_out_only", "full_catalog"):
        if scope == "held_out_only":
            position = {row: p for p, row in enumerate(held_rows.tolist())}
            candidates, local_targets = embeddings[held_rows], np.array([position[t] for t in targets])
            excluded = [[position[o] for o in cold_by_user[u] if o != t] for u, t in pairs]
            genre, popularity = {k: v[held_rows] for k, v in genre_scores.items()}, None
        else:
            candidates, local_targets = embeddings, targets
            excluded = [[o for o in cold_by_user[u] | warm_seen[u] if o != t] for u, t in pairs]
            genre, popularity = genre_scores, item_popularity
        exclude = Exclusions.from_pairs(
            np.repeat(np.arange(len(pairs)), [len(e) for e in excluded]),
            np.array([o for e in excluded for o in e], np.int64),
            len(pairs),
        )
        scores = {
            "model": evaluate_embeddings(queries, candidates, local_targets, ks=(K,), exclude=exclude),
            **{name: evaluate_scores(v, local_targets, ks=(K,), exclude=exclude) for name, v in genre.items()},
            "random_expected": _random_expected(len(candidates), [len(e) for e in excluded]),
        }
        if popularity is not None:
            scores["item_popularity"] = evaluate_scores(popularity, local_targets, ks=(K,), exclude=exclude)
        results[scope] = {
            name: {m: v for m, v in metrics.items() if m in (f"recall@{K}", f"ndcg@{K}")}
            for name, metrics in scores.items()
        }
    return {"cold": results, "warm": warm}


def _genre_popularity(data: Any, items: FeatureTable, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Two feature-popularity baselines, fixed before any result was seen, per item of `ids` (0 without genres):
    "genre_popularity": the mean over its genres of the genre's training interactions per warm movie of that
    genre (how popular a typical movie of these genres is); "genre_interactions": the mean over its genres of
    the genre's total training interactions."""
    genres = items.lookup(ids)["genres"]
    train_ids = data.catalog.external_ids[data.train.items].astype(str)
    interactions: dict[str, int] = {}
    for tokens in items.lookup(train_ids)["genres"]:
        for genre in tokens:
            interactions[genre] = interactions.get(genre, 0) + 1
    movies: dict[str, int] = {}
    for tokens in items.lookup(data.catalog.external_ids.astype(str))["genres"]:
        for genre in tokens:
            movies[genre] = movies.get(genre, 0) + 1
    per_movie = {g: interactions.get(g, 0) / movies[g] for g in movies}

    def score(per_genre: dict[str, float]) -> np.ndarray:
        return np.array([np.mean([per_genre.get(g, 0.0) for g in t]) if t else 0.0 for t in genres], np.float32)

    return {
        "genre_popularity": score(per_movie),
        "genre_interactions": score({g: float(n) for g, n in interactions.items()}),
    }


def _random_expected(num_candidates: int, excluded: list[int]) -> dict[str, float]:
    """Recall@K and NDCG@K of a uniformly random ranking, in expectation: the target is equally likely at every
    rank among the candidates left after exclusions."""
    left = np.array([num_candidates - e for e in excluded], np.float64)
    discount = np.cumsum(1.0 / np.log2(np.arange(2, K + 2)))
    hits = np.minimum(K, left)
    return {
        f"recall@{K}": float(np.mean(hits / left)),
        f"ndcg@{K}": float(np.mean(discount[hits.astype(int) - 1] / left)),
    }


def _markdown(report: dict[str, Any]) -> str:
    cold, warm, holdout = report["cold"], report["warm"], report["holdout"]
    lines = [
        "# Cold start on MovieLens-100K: held-out movies served after a catalog refresh",
        "",
        f"Command: `{report['command']}` (2 CPU cores shared with other jobs). Generated by bench/cold_start.py.",
        "",
        f"{holdout['movies']} movies ({holdout['fraction']:.0%}, seed {holdout['seed']}) held out of training "
        f"entirely ({holdout['ratings']} ratings); the model trained on the other {holdout['warm_movies']} "
        f"({report['training']['epochs_done']} epochs, best {report['training']['best_epoch']}) and the refresh "
        "embedded all movies with the bundle's item tower. Queries: every rating of a held-out movie "
        f"({cold['pairs']} pairs, {cold['users']} users), the user's other held-out movies excluded (and, in "
        "the full catalog, the user's warm movies).",
        "",
        f"| ranking | among held-out: Recall@{K} | NDCG@{K} | full catalog: Recall@{K} | NDCG@{K} |",
        "|---|---|---|---|---|",
    ]
    for name in ("model", "genre_popularity", "genre_interactions", "item_popularity", "random_expected"):
        cells = []
        for scope in ("held_out_only", "full_catalog"):
            metrics = cold[scope].get(name)
            cells += [f"{metrics[f'recall@{K}']:.4f}", f"{metrics[f'ndcg@{K}']:.4f}"] if metrics else ["-", "-"]
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(cells) + " |")
    ratio = cold["held_out_only"]["model"][f"recall@{K}"] / cold["held_out_only"]["random_expected"][f"recall@{K}"]
    seconds = report["refresh"]["seconds"]
    lines += [
        "",
        f"Held-out Recall@{K} among held-out movies: {ratio:.1f} times the random ranking.",
        "",
        f"Warm test (leave-last-out over the warm movies, Recall@{K} / NDCG@{K}): before the refresh "
        f"{warm['before'][f'recall@{K}']:.6f} / {warm['before'][f'ndcg@{K}']:.6f}, after "
        f"{warm['after'][f'recall@{K}']:.6f} / {warm['after'][f'ndcg@{K}']:.6f}; largest metric difference "
        f"{warm['max_abs_metric_difference']:.2e}, largest warm embedding difference "
        f"{warm['max_abs_embedding_difference']:.2e}.",
        "",
        f"Refresh of {holdout['movies'] + holdout['warm_movies']} movies: {seconds['total']:.2f} s "
        f"(embed {seconds['embed']:.2f} s, index {seconds['index']:.2f} s, write {seconds['write']:.2f} s).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
