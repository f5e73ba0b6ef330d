"""Catalog refresh without retraining: a bundle plus a new item table -> the next version of the same model.

The new version keeps the parent's query tower, item tower and manifest (schema, similarity, index spec,
metrics) and replaces the catalog: every item of the table is embedded by the parent's item tower (an id unseen
in training maps to the out-of-vocabulary id embedding and is carried by its other features), the index is
rebuilt with the parent's index spec (an IVF index keeps the parent's trained coarse quantizer, and PQ codebooks,
and only re-adds the vectors) and its recall against exact search is measured. The manifest's `lineage` records
the parent version and how many items were added, removed and changed; `catalog_changes.parquet` lists them.

An item is *changed* when it is in both catalogs and its embedding moved (by more than `CHANGE_TOLERANCE`) or
one of its carried-over `items.parquet` columns (display, filterable attributes) differs.

Everything is validated before anything is written; the version is written into a hidden temporary directory
and renamed into place, so a watching server sees a complete version or none.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.bundle.export import _fsync_dir, _fsync_tree, _pick_version, file_checksums
from model.bundle.index import build_index, measure_recall
from model.bundle.item_tower import TowerEncoder, load_item_tower
from model.bundle.reader import TEMP_PREFIX, Bundle, open_bundle
from model.bundle.refine import refined
from model.bundle.reserved import (
    CATALOG_CHANGES_FILE,
    EMBEDDINGS_FILE,
    INDEX_FILE,
    ITEM_ID_COLUMN,
    ITEM_TOWER_DIR,
    ITEMS_FILE,
    MANIFEST_FILE,
    POPULARITY_COLUMN,
    QUERY_TOWER_DIR,
)
from model.catalog_table import ItemTable, read_item_table
from model.evaluation import exact_top_k

logger = logging.getLogger(__name__)

BATCH_SIZE = 8192
RECALL_K = 100
RECALL_SAMPLE = 1000
# Exact-search queries scored per block while measuring recall ([block, N] float32 scores in memory).
RECALL_BLOCK = 64
CHANGE_TOLERANCE = 1e-5
LINEAGE_EXAMPLES = 10

Progress = Callable[[int, int], None]
"""Called with (items embedded so far, total) after each batch."""


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh wrote.

    Attributes:
        path: the new version directory.
        lineage: the manifest's lineage record.
        seconds: wall time by stage (read, embed, index, recall, write, total).
    """

    path: Path
    lineage: Mapping[str, Any]
    seconds: Mapping[str, float]


def refresh_catalog(
    parent: str | Path,
    table: str | Path,
    *,
    version: int | None = None,
    batch_size: int = BATCH_SIZE,
    recall_queries: int = RECALL_SAMPLE,
    seed: int = 0,
    progress: Progress | None = None,
) -> RefreshResult:
    """Writes the next version of the parent's model with the items of `table`.

    Args:
        parent: the parent version directory `models/<name>/<version>/`.
        table: the new item table (the whole catalog as it should be served).
        version: explicit new version; default max(existing) + 1.
        batch_size: items per item-tower call.
        recall_queries: item embeddings sampled (seeded) as queries for the recall check.
        seed: seed of the recall sample (and of index training for index types that have no quantizer).
        progress: optional callback after each embedded batch.

    Returns:
        The new version directory, its lineage and stage timings.

    Raises:
        ItemTowerMissingError: the parent was exported without an item tower.
        CatalogTableError: the table does not match the item schema (nothing is written).
        BundleError: the parent bundle is invalid. FileExistsError: the version exists.
    """
    started = time.perf_counter()
    bundle = open_bundle(parent)
    encoder = load_item_tower(bundle)
    spec = bundle.manifest.item_tower
    assert spec is not None  # load_item_tower refuses bundles without one
    parent_items = pq.read_table(bundle.path / ITEMS_FILE)
    extra_types = {name: parent_items.schema.field(name).type for name in carried_columns(bundle)}
    items = read_item_table(table, spec, extra_types)
    seconds = {"read": time.perf_counter() - started}

    mark = time.perf_counter()
    embeddings = embed_items(encoder, items.features, len(items), batch_size, progress)
    seconds["embed"] = time.perf_counter() - mark

    lineage, changes, popularity = _lineage(bundle, parent_items, items, embeddings, Path(table).name)
    mark = time.perf_counter()
    index, reused = _build_index(bundle, embeddings, seed)
    seconds["index"] = time.perf_counter() - mark
    mark = time.perf_counter()
    recall = _recall(refined(index, embeddings, bundle.manifest.index.k_factor), embeddings, recall_queries, seed)
    seconds["recall"] = time.perf_counter() - mark
    lineage["index_quantizer"] = "reused from the parent" if reused else "built"

    mark = time.perf_counter()
    path = _write_version(bundle, version, items, embeddings, popularity, index, recall, lineage, changes)
    seconds["write"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    logger.info(
        "catalog refreshed path=%s parent=%d items=%d added=%d removed=%d changed=%d recall@%d=%.4f seconds=%.1f",
        path,
        bundle.manifest.model_version,
        len(items),
        lineage["items_added"],
        lineage["items_removed"],
        lineage["items_changed"],
        recall.k,
        recall.recall,
        seconds["total"],
    )
    return RefreshResult(path=path, lineage=lineage, seconds=seconds)


def carried_columns(bundle: Bundle) -> list[str]:
    """The parent's `items.parquet` columns besides id and popularity that a refresh carries over: display
    columns and, where the manifest lists them, filterable attribute columns."""
    manifest = bundle.manifest
    names = [*manifest.display_columns]
    for attribute in getattr(manifest, "filterable_attributes", ()) or ():
        names.append(attribute if isinstance(attribute, str) else attribute.name)
    return list(dict.fromkeys(n for n in names if n not in (ITEM_ID_COLUMN, POPULARITY_COLUMN)))


def embed_items(
    encoder: TowerEncoder,
    features: Mapping[str, np.ndarray],
    count: int,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> np.ndarray:
    """[count, d] float32 item embeddings, `batch_size` rows per item-tower call; logs progress every ~10 %."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts, logged, started = [], 0, time.perf_counter()
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        parts.append(encoder({name: values[start:stop] for name, values in features.items()}))
        if progress is not None:
            progress(stop, count)
        if stop * 10 // count > logged or stop == count:
            logged = stop * 10 // count
            rate = stop / max(time.perf_counter() - started, 1e-9)
            logger.info("embedding items done=%d/%d (%d%%) items_per_s=%.0f", stop, count, 100 * stop // count, rate)
    return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)


def _lineage(
    bundle: Bundle, parent_items: pa.Table, items: ItemTable, embeddings: np.ndarray, source: str
) -> tuple[dict[str, Any], pa.Table, np.ndarray]:
    """The lineage record, the per-item change list, and the new popularity (the parent's; 0 for new items)."""
    old_ids = parent_items.column(ITEM_ID_COLUMN).to_numpy(zero_copy_only=False).astype(str)
    new_ids = items.ids.astype(str)
    old_row = {item: i for i, item in enumerate(old_ids.tolist())}
    rows = np.array([old_row.get(item, -1) for item in new_ids.tolist()], dtype=np.int64)
    kept = np.flatnonzero(rows >= 0)
    old_embeddings = bundle.load_item_embeddings(mmap=True)
    moved = np.zeros(len(new_ids), dtype=bool)
    for start in range(0, kept.size, BATCH_SIZE):
        part = kept[start : start + BATCH_SIZE]
        diff = np.abs(embeddings[part] - old_embeddings[rows[part]])
        moved[part] = diff.max(axis=1) > CHANGE_TOLERANCE
    for name in items.extra.column_names:
        old = parent_items.column(name).take(pa.array(rows[kept])).to_pylist()
        new = items.extra.column(name).take(pa.array(kept)).to_pylist()
        moved[kept] |= np.array([a != b for a, b in zip(old, new, strict=True)], dtype=bool)
    added = new_ids[rows < 0]
    changed = new_ids[kept[moved[kept]]]
    removed = np.setdiff1d(old_ids, new_ids)
    old_popularity = parent_items.column(POPULARITY_COLUMN).to_numpy().astype(np.int64)
    popularity = np.where(rows >= 0, old_popularity[np.maximum(rows, 0)], 0).astype(np.int64)
    lineage: dict[str, Any] = {
        "parent_version": bundle.manifest.model_version,
        "source_table": source,
        "items_added": int(added.size),
        "items_removed": int(removed.size),
        "items_changed": int(changed.size),
        "items_unchanged": int(kept.size - changed.size),
        "changes_file": CATALOG_CHANGES_FILE,
        "examples": {
            "added": sorted(added.tolist())[:LINEAGE_EXAMPLES],
            "removed": sorted(removed.tolist())[:LINEAGE_EXAMPLES],
            "changed": sorted(changed.tolist())[:LINEAGE_EXAMPLES],
        },
    }
    kinds = ["added"] * added.size + ["removed"] * removed.size + ["changed"] * changed.size
    changes = pa.table(
        {
            ITEM_ID_COLUMN: pa.array([*added.tolist(), *removed.tolist(), *changed.tolist()], type=pa.string()),
            "change": pa.array(kinds, type=pa.string()),
        }
    )
    return lineage, changes, popularity


def _build_index(bundle: Bundle, embeddings: np.ndarray, seed: int) -> tuple[faiss.Index, bool]:
    """The parent's index spec over the new embeddings; an IVF index keeps the parent's trained quantizer."""
    spec = bundle.manifest.index
    if spec.nlist is None:
        return build_index(embeddings, spec, seed=seed), False
    index = bundle.load_index()  # trained quantizer (and PQ codebooks) with the parent's vectors
    index.reset()
    index.add(embeddings)
    return index, True


def _recall(index: Any, embeddings: np.ndarray, sample: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(embeddings), size=min(sample, len(embeddings)), replace=False))
    queries = embeddings[rows]
    k = min(RECALL_K, len(embeddings))
    exact, _ = exact_top_k(queries, embeddings, k, rng=np.random.default_rng(seed), batch_size=RECALL_BLOCK)
    return measure_recall(index, embeddings, queries, k, exact_ids=exact, seed=seed)


def _write_version(
    bundle: Bundle,
    version: int | None,
    items: ItemTable,
    embeddings: np.ndarray,
    popularity: np.ndarray,
    index: faiss.Index,
    recall: Any,
    lineage: dict[str, Any],
    changes: pa.Table,
) -> Path:
    model_dir = bundle.path.parent
    version = _pick_version(model_dir, version)
    tmp = model_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for tower in (QUERY_TOWER_DIR, ITEM_TOWER_DIR):
            shutil.copytree(bundle.path / tower, tmp / tower)
        columns = {ITEM_ID_COLUMN: pa.array(items.ids.astype(str).tolist(), type=pa.string())}
        columns[POPULARITY_COLUMN] = pa.array(popularity, type=pa.int64())
        for name in items.extra.column_names:
            columns[name] = items.extra.column(name)
        pq.write_table(pa.table(columns), tmp / ITEMS_FILE)
        np.save(tmp / EMBEDDINGS_FILE, embeddings, allow_pickle=False)
        faiss.write_index(index, str(tmp / INDEX_FILE))
        pq.write_table(changes, tmp / CATALOG_CHANGES_FILE)
        manifest = dataclasses.replace(
            bundle.manifest,
            model_version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            item_count=len(items),
            index_recall=recall,
            files=file_checksums(tmp),
            lineage=lineage,
        )
        (tmp / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_tree(tmp)
        final = model_dir / str(version)
        if final.exists():
            raise FileExistsError(f"version {version} appeared at {final} while refreshing")
        os.rename(tmp, final)
        _fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
