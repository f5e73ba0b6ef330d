"""Helpers of the catalog-refresh tests: a bundle with an item tower, and item tables to refresh it with."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.bundle.attributes import AttributeColumn
from model.bundle.export import export_bundle
from model.bundle.index import IndexSpec, l2_normalize
from model.features import CategoricalFeature, NumericFeature, TowerSpec
from model.towers import build_tower
from tests.service.helpers import DIM, MODEL, SPEC, item_id

GENRES = ("drama", "comedy", "horror")
NUM_TRAINED = 300  # items item0000..item0299 are in the item tower's id vocabulary
ITEM_SPEC = TowerSpec(
    name="item",
    features=(
        CategoricalFeature("item_id", tuple(item_id(i) for i in range(NUM_TRAINED)), embedding_dim=8),
        CategoricalFeature("genres", GENRES, embedding_dim=4, max_values=2),
        NumericFeature("year", mean=1990.0, std=10.0),
    ),
    hidden_units=(12,),
    output_dim=DIM,
)


def item_rows(rows: range | list[int], seed: int = 0) -> dict[str, list]:
    """An item table's columns for items `item_id(r)`: genres (space-separated), year, title; row r's values
    depend on r and the seed only."""
    genres = []
    for r in rows:
        rng = np.random.default_rng([seed, r])
        genres.append(" ".join(rng.choice(GENRES, size=int(rng.integers(0, 3)), replace=False)))
    return {
        "item_id": [item_id(r) for r in rows],
        "genres": genres,
        "year": [float(1950 + (r * 7) % 70 + r / 100) for r in rows],
        "title": [f"Title {r}" for r in rows],
    }


def tower_features(columns: dict[str, list]) -> dict[str, np.ndarray]:
    """The item tower's raw inputs of an item table (the reference the refresh must reproduce)."""
    padded = np.full((len(columns["item_id"]), 2), "", dtype=object)
    for i, tokens in enumerate(columns["genres"]):
        parts = tokens.split()
        padded[i, : len(parts)] = parts
    return {
        "item_id": np.array(columns["item_id"], dtype=str),
        "genres": padded.astype(str),
        "year": np.array(columns["year"], dtype=np.float32),
    }


def write_table(path: Path, columns: dict[str, list]) -> Path:
    """Writes an item table as Parquet or CSV (by the suffix of `path`)."""
    table = pa.table(columns)
    if path.suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def export_item_bundle(
    models_dir: Path,
    *,
    version: int = 1,
    seed: int = 0,
    num_items: int = NUM_TRAINED,
    similarity: str = "dot",
    index_spec: IndexSpec | None = None,
    item_tower: bool = True,
    filterable: Mapping[str, AttributeColumn] | None = None,
) -> tuple[Path, keras.Model]:
    """Exports a bundle whose item embeddings are its (untrained, seeded) item tower's outputs; `filterable`
    holds attribute values of items 0..num_items-1."""
    keras.utils.set_random_seed(seed)
    query_tower, tower = build_tower(SPEC), build_tower(ITEM_SPEC)
    columns = item_rows(range(num_items), seed)
    embeddings = np.asarray(tower(tower_features(columns), training=False), dtype=np.float32)
    path = export_bundle(
        models_dir,
        MODEL,
        query_tower=query_tower,
        query_spec=SPEC,
        item_embeddings=l2_normalize(embeddings) if similarity == "cosine" else embeddings,
        item_ids=np.array(columns["item_id"]),
        popularity=np.arange(num_items) % 17,
        index_spec=index_spec or IndexSpec("Flat"),
        similarity=similarity,
        metrics={},
        display={"title": np.array(columns["title"], dtype=object)},
        version=version,
        seed=seed,
        item_tower=tower if item_tower else None,
        item_spec=ITEM_SPEC if item_tower else None,
        filterable=filterable,
    )
    return path, tower
