"""Shared helpers of the service tests: a tiny real bundle, an offline oracle, an in-process server thread."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import keras
import numpy as np

from model.bundle.attributes import AttributeColumn
from model.bundle.export import export_bundle
from model.bundle.index import IndexSpec
from model.bundle.reader import open_bundle
from model.evaluation import exact_top_k
from model.features import CategoricalFeature, NumericFeature, TowerSpec
from model.towers import build_tower
from service.server import ServerConfig, ServerHandles, build_server
from service.validation import ServiceLimits

T = TypeVar("T")

MODEL = "movies"
NUM_ITEMS, DIM = 400, 16
SPEC = TowerSpec(
    name="query",
    features=(
        CategoricalFeature("user_id", tuple(f"u{i}" for i in range(30)), embedding_dim=8, num_oov_buckets=2),
        CategoricalFeature("genres", ("drama", "comedy", "horror"), embedding_dim=4, max_values=3),
        CategoricalFeature("country", ("DE", "FR", "US"), embedding_dim=4),
        NumericFeature("age", mean=30.0, std=12.0),
    ),
    hidden_units=(12,),
    output_dim=DIM,
)
LIMITS = ServiceLimits(max_k=50, max_exclusions=20, max_history=30, max_batch_requests=16, max_string_length=64)


def item_id(row: int) -> str:
    return f"item{row:04d}"


def export_test_bundle(
    models_dir: Path,
    *,
    version: int | None = None,
    seed: int = 0,
    num_items: int = NUM_ITEMS,
    similarity: str = "dot",
    index_spec: IndexSpec | None = None,
    filterable: Mapping[str, AttributeColumn] | None = None,
) -> Path:
    """Exports a bundle with a random (untrained) query tower and seeded random item embeddings (and the given
    filterable attributes)."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    return export_bundle(
        models_dir,
        MODEL,
        query_tower=build_tower(SPEC),
        query_spec=SPEC,
        item_embeddings=rng.standard_normal((num_items, DIM)).astype(np.float32),
        item_ids=np.array([item_id(i) for i in range(num_items)]),
        popularity=rng.integers(0, 100, num_items),
        index_spec=index_spec or IndexSpec("Flat"),
        similarity=similarity,
        metrics={},
        display={"title": np.array([f"Title {i}" for i in range(num_items)], dtype=object)},
        version=version,
        seed=seed,
        filterable=filterable,
    )


def oracle_top_k(
    bundle_path: Path, features: dict[str, np.ndarray], k: int, exclude: Sequence[set[str]] | None = None
) -> tuple[list[list[str]], np.ndarray]:
    """Offline exact top-k of a bundle: its query tower, its item embeddings, full-catalog scoring.

    Args:
        bundle_path: the version directory.
        features: raw tower inputs [B] / [B, n].
        k: cutoff.
        exclude: per query, item ids to leave out (computed on the full score order).

    Returns:
        ([B] lists of item ids, [B, k] scores) — with exclusions, scores are [B] object rows of any length.
    """
    bundle = open_bundle(bundle_path)
    queries = bundle.load_query_tower()(features)
    embeddings = bundle.load_item_embeddings()
    ids = bundle.load_items().ids
    if exclude is None:
        rows, scores = exact_top_k(queries, embeddings, k, rng=np.random.default_rng(0))
        return [[ids[r] for r in row] for row in rows], scores
    all_scores = queries @ embeddings.T
    out_ids, out_scores = [], []
    for i, excluded in enumerate(exclude):
        order = [r for r in np.argsort(-all_scores[i], kind="stable") if ids[r] not in excluded][:k]
        out_ids.append([ids[r] for r in order])
        out_scores.append(all_scores[i][order])
    return out_ids, np.array(out_scores, dtype=object)


def server_config(models_dir: Path, **overrides: Any) -> ServerConfig:
    """A ServerConfig for an in-process test server on 127.0.0.1 with a free port."""
    base = ServerConfig(
        models_dir=models_dir,
        model_name=MODEL,
        host="127.0.0.1",
        port=0,
        limits=LIMITS,
        reload_interval_s=0.1,
        grace_period_s=0.5,
    )
    return dataclasses.replace(base, **overrides)


class ServerThread:
    """Runs `build_server` on its own event loop in a background thread; tests talk to it over gRPC.

    Args:
        config: the server configuration.
        **build_kwargs: passed to `build_server` (observer, interceptors, loader).
    """

    def __init__(self, config: ServerConfig, **build_kwargs: Any) -> None:
        self.config = config
        self._build_kwargs = build_kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-server", daemon=True)
        self.port = 0
        self.handles: ServerHandles | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True, timeout_s: float = 60.0) -> ServerThread:
        self._thread.start()
        _, self.port, self.handles = self.run(build_server(self.config, **self._build_kwargs))
        if wait_ready:
            self.run(self.handles.wait_ready(timeout_s))
        return self

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Runs a coroutine on the server's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def stop(self, grace_s: float = 0.0) -> None:
        if self.handles is not None:
            self.run(self.handles.shutdown(grace_s))
            self.handles = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> ServerThread:
        return self if self._thread.is_alive() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
