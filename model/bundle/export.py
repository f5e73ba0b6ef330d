"""Writes a versioned model bundle `models/<name>/<version>/` atomically.

Everything is written into a hidden temporary directory inside `models/<name>/`, fsynced, then renamed to the
version directory in one `os.rename`, so a watcher sees either no new version or a complete one.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import keras
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from model.bundle.attributes import AttributeColumn, FilterableAttribute, attribute_array
from model.bundle.index import IndexSpec, build_index, l2_normalize, measure_recall
from model.bundle.manifest import SIMILARITIES, Manifest, sha256_file
from model.bundle.reader import TEMP_PREFIX, list_versions
from model.bundle.refine import refined
from model.bundle.reserved import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    ITEM_ID_COLUMN,
    ITEM_TOWER_DIR,
    ITEMS_FILE,
    MANIFEST_FILE,
    OUTPUT_KEY,
    POPULARITY_COLUMN,
    QUERY_TOWER_DIR,
    SIGNATURE_NAME,
)
from model.features import CategoricalFeature, TowerSpec

logger = logging.getLogger(__name__)

RECALL_K = 100
RECALL_SAMPLE = 1000


def export_bundle(
    models_dir: str | os.PathLike[str],
    name: str,
    *,
    query_tower: keras.Model,
    query_spec: TowerSpec,
    item_embeddings: npt.ArrayLike,
    item_ids: npt.ArrayLike,
    popularity: npt.ArrayLike,
    index_spec: IndexSpec,
    similarity: str,
    metrics: Mapping[str, Any],
    display: Mapping[str, npt.ArrayLike] | None = None,
    version: int | None = None,
    recall_queries: npt.ArrayLike | None = None,
    seed: int = 0,
    item_tower: keras.Model | None = None,
    item_spec: TowerSpec | None = None,
    filterable: Mapping[str, AttributeColumn] | None = None,
) -> Path:
    """Exports a bundle and returns its version directory.

    Args:
        models_dir: root holding one directory per model name.
        name: model name; the bundle goes to `models_dir/name/<version>/`.
        query_tower: functional Keras model mapping the raw features of `query_spec` to [B, d].
        query_spec: the query tower's spec (stored in the manifest for request validation).
        item_embeddings: [N, d] item embeddings; row i is FAISS id i. Stored L2-normalised for cosine.
        item_ids: [N] external item ids (unique, non-empty strings).
        popularity: [N] interaction counts.
        index_spec: the FAISS index to build.
        similarity: "dot" or "cosine".
        metrics: JSON-ready dict recorded in the manifest (e.g. the evaluation report).
        display: optional [N] display columns for items.parquet (e.g. {"title": ...}).
        version: explicit version (>= 1); default max(existing) + 1.
        recall_queries: [M, d] queries for measuring ANN recall@min(100, N) against exact search; default a
            seeded sample of up to 1000 item embeddings.
        seed: seed of index training and of the recall sample.
        item_tower: optional functional Keras model mapping the raw features of `item_spec` to [B, d], written
            as `item_tower/` (what `retrieval-catalog` embeds new items with); `item_embeddings` should be its
            outputs for the catalog.
        item_spec: the item tower's spec (the item table schema, recorded in the manifest); with `item_tower`.
        filterable: item attributes requests may filter on, by name: each becomes an items.parquet column of
            its kind's Arrow type and is listed in the manifest.

    Returns:
        The new version directory.

    Raises:
        ValueError: on inconsistent inputs. FileExistsError: if the version exists. Any error while writing
            propagates after the temporary directory is removed.
    """
    items, ids, pops, columns = _checked_inputs(
        item_embeddings, item_ids, popularity, display or {}, similarity, query_tower, query_spec
    )
    if (item_tower is None) != (item_spec is None):
        raise ValueError("item_tower and item_spec go together: pass both or neither")
    if item_spec is not None and item_spec.output_dim != items.shape[1]:
        raise ValueError(f"item_spec.output_dim {item_spec.output_dim} != item embedding dim {items.shape[1]}")
    attributes = _attribute_arrays(filterable or {}, len(ids), columns)
    model_dir = Path(models_dir) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = _pick_version(model_dir, version)
    queries = _recall_queries(items, recall_queries, similarity, seed)
    tmp = model_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        _write_query_tower(query_tower, query_spec, tmp / QUERY_TOWER_DIR)
        if item_tower is not None and item_spec is not None:
            _write_query_tower(item_tower, item_spec, tmp / ITEM_TOWER_DIR)  # the same raw-features signature
        _write_items(tmp / ITEMS_FILE, ids, pops, columns, attributes)
        np.save(tmp / EMBEDDINGS_FILE, items, allow_pickle=False)
        index = build_index(items, index_spec, seed=seed)
        searched = refined(index, items, index_spec.k_factor)  # the recall of the search the server will run
        recall = measure_recall(searched, items, queries, min(RECALL_K, len(items)), seed=seed)
        faiss.write_index(index, str(tmp / INDEX_FILE))
        manifest = Manifest(
            model_name=name,
            model_version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            embedding_dim=items.shape[1],
            similarity=similarity,
            query_tower=query_spec,
            item_count=items.shape[0],
            index=index_spec,
            index_recall=recall,
            metrics=dict(metrics),
            display_columns=tuple(columns),
            filterable_attributes=tuple(FilterableAttribute(n, filterable[n].kind) for n in attributes)
            if filterable
            else (),
            files=file_checksums(tmp),
            item_tower=item_spec,
        )
        (tmp / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
        _fsync_tree(tmp)
        final = model_dir / str(version)
        if final.exists():
            raise FileExistsError(f"version {version} appeared at {final} while exporting")
        os.rename(tmp, final)
        _fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(
        "bundle exported path=%s items=%d dim=%d index=%s recall@%d=%.4f",
        final,
        items.shape[0],
        items.shape[1],
        index_spec.factory,
        recall.k,
        recall.recall,
    )
    return final


def _checked_inputs(
    item_embeddings: npt.ArrayLike,
    item_ids: npt.ArrayLike,
    popularity: npt.ArrayLike,
    display: Mapping[str, npt.ArrayLike],
    similarity: str,
    query_tower: keras.Model,
    query_spec: TowerSpec,
) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, np.ndarray]]:
    items = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    if items.ndim != 2 or items.shape[0] == 0 or not np.all(np.isfinite(items)):
        raise ValueError(f"item_embeddings must be finite [N, d] with N >= 1, got shape {items.shape}")
    n, d = items.shape
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    if similarity == "cosine":
        items = l2_normalize(items)
    ids = [str(i) for i in np.asarray(item_ids).tolist()]
    if len(ids) != n or len(set(ids)) != n or "" in ids:
        raise ValueError(f"item_ids must be {n} unique non-empty strings, got {len(ids)} ({len(set(ids))} unique)")
    pops = np.asarray(popularity)
    if pops.shape != (n,) or not np.array_equal(pops, pops.astype(np.int64)):
        raise ValueError(f"popularity must be [{n}] integer counts, got shape {pops.shape} dtype {pops.dtype}")
    columns = {key: np.asarray(values) for key, values in display.items()}
    for key, values in columns.items():
        if key in (ITEM_ID_COLUMN, POPULARITY_COLUMN) or values.shape != (n,):
            raise ValueError(f"display column {key!r}: reserved name or shape {values.shape} != ({n},)")
    inputs = {t.name for t in query_tower.inputs}
    expected = {f.name for f in query_spec.features}
    if inputs != expected:
        raise ValueError(f"query_tower inputs {sorted(inputs)} differ from query_spec features {sorted(expected)}")
    out_dim = query_tower.outputs[0].shape[-1]
    if out_dim != d or query_spec.output_dim != d:
        raise ValueError(f"query tower outputs {out_dim} (spec {query_spec.output_dim}) dims, items have {d}")
    return items, ids, pops.astype(np.int64), columns


def _pick_version(model_dir: Path, version: int | None) -> int:
    if version is None:
        return max(list_versions(model_dir), default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    if (model_dir / str(version)).exists():
        raise FileExistsError(f"version {version} already exists at {model_dir / str(version)}; refusing to overwrite")
    return version


def _recall_queries(items: np.ndarray, recall_queries: npt.ArrayLike | None, similarity: str, seed: int) -> np.ndarray:
    if recall_queries is None:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(items), size=min(RECALL_SAMPLE, len(items)), replace=False))
        return items[rows]
    queries = np.ascontiguousarray(recall_queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(f"recall_queries must be [M, {items.shape[1]}], got shape {queries.shape}")
    return l2_normalize(queries) if similarity == "cosine" else queries


def serving_input_signature(spec: TowerSpec) -> dict[str, tf.TensorSpec]:
    """Serving inputs by feature name: tf.string [None] / [None, n], or tf.float32 [None]."""
    signature = {}
    for feature in spec.features:
        if isinstance(feature, CategoricalFeature):
            shape = [None, feature.max_values] if feature.multi_valued else [None]
            signature[feature.name] = tf.TensorSpec(shape, tf.string, name=feature.name)
        else:
            signature[feature.name] = tf.TensorSpec([None], tf.float32, name=feature.name)
    return signature


def _write_query_tower(tower: keras.Model, spec: TowerSpec, path: Path) -> None:
    archive = keras.export.ExportArchive()
    archive.track(tower)

    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {OUTPUT_KEY: tf.cast(tower(features, training=False), tf.float32)}

    archive.add_endpoint(SIGNATURE_NAME, serve, input_signature=[serving_input_signature(spec)])
    archive.write_out(str(path), verbose=False)


def _attribute_arrays(
    filterable: Mapping[str, AttributeColumn], n: int, display: Mapping[str, np.ndarray]
) -> dict[str, pa.Array]:
    arrays = {}
    for name, column in filterable.items():
        if not name or name in (ITEM_ID_COLUMN, POPULARITY_COLUMN) or name in display:
            raise ValueError(f"filterable attribute {name!r}: empty, reserved or also a display column")
        try:
            arrays[name] = attribute_array(column)
        except ValueError as error:
            raise ValueError(f"filterable attribute {name!r}: {error}") from error
        if len(arrays[name]) != n:
            raise ValueError(f"filterable attribute {name!r}: {len(arrays[name])} values for {n} items")
    return arrays


def _write_items(
    path: Path,
    ids: list[str],
    popularity: np.ndarray,
    display: Mapping[str, np.ndarray],
    attributes: Mapping[str, pa.Array],
) -> None:
    columns = {ITEM_ID_COLUMN: pa.array(ids, type=pa.string()), POPULARITY_COLUMN: pa.array(popularity)}
    for key, values in display.items():
        columns[key] = pa.array(values.tolist() if values.dtype.kind in "OUS" else values)
    columns.update(attributes)
    pq.write_table(pa.table(columns), path)


def file_checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` except the manifest, by relative POSIX path."""
    checksums = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative != MANIFEST_FILE:
            checksums[relative] = sha256_file(path)
    return checksums


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
