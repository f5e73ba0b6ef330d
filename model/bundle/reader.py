"""Opens and validates a model bundle; loads its query tower, items, embeddings and FAISS index.

`open_bundle` checks everything it can without loading the heavy files: the manifest, the presence and sha256
of every listed file, and the headers of the embeddings (.npy), items (Parquet footer), index (FAISS header)
and query tower (SavedModel signature). Checksum verification reads every file once; the loaders read them
again (normally from the page cache). Loaders raise `BundleError` too, e.g. for a truncated index when
checksums were not verified.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from model.bundle.index import l2_normalize, read_index_header, set_search_params
from model.bundle.index_mmap import MmapMode, read_index
from model.bundle.manifest import Manifest, ManifestError, sha256_file
from model.bundle.reserved import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    ITEM_ID_COLUMN,
    ITEMS_FILE,
    MANIFEST_FILE,
    OUTPUT_KEY,
    POPULARITY_COLUMN,
    QUERY_TOWER_DIR,
    REQUIRED_FILES,
    SAVED_MODEL_FILE,
    SIGNATURE_NAME,
)
from model.features import CategoricalFeature

logger = logging.getLogger(__name__)

# Prefix of the hidden directories an export writes into before the atomic rename.
TEMP_PREFIX = ".tmp-"


class BundleError(Exception):
    """A bundle is missing, incomplete or inconsistent; the message names the file and the failed check."""


def list_versions(model_dir: str | Path) -> list[int]:
    """Versions present in `models/<name>/`, ascending; ignores hidden, temporary and non-integer entries."""
    root = Path(model_dir)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and _is_version_name(p.name))


def latest_version(model_dir: str | Path) -> int | None:
    """The largest version in `models/<name>/`, or None when there is none."""
    return max(list_versions(model_dir), default=None)


def _is_version_name(name: str) -> bool:
    return name.isascii() and name.isdigit() and str(int(name)) == name and int(name) > 0


@dataclass(frozen=True)
class BundleItems:
    """Row i is FAISS id i.

    Attributes:
        ids: [N] external item ids (object array of str).
        popularity: [N] int64 interaction counts.
        display: display columns by name, each [N].
        attributes: filterable attribute columns by name (manifest order), each an Arrow array of its kind's
            type (`model.bundle.attributes`), [N].
    """

    ids: np.ndarray
    popularity: np.ndarray
    display: Mapping[str, np.ndarray] = field(default_factory=dict)
    attributes: Mapping[str, pa.Array] = field(default_factory=dict)


class QueryEncoder:
    """The query tower SavedModel's serving signature: raw features -> [B, d] float32 query embeddings.

    A call checks each input's shape against the signature with plain tuples, converts it to a tensor of the
    signature's dtype and calls the signature's concrete function with its inputs flattened in the order
    the function declares them. That skips TensorFlow's structured-argument binding and TensorShape checks,
    which cost more than a small tower's ops (about 0.4 of 0.8 ms at batch 1 on a 2-core machine).

    Args:
        loaded: the object returned by `tf.saved_model.load` (kept alive: the signature needs its resources).
        l2_normalize: whether to L2-normalise outputs (bundles with cosine similarity).
    """

    def __init__(self, loaded: Any, *, l2_normalize: bool) -> None:
        self._loaded = loaded
        self._signature = loaded.signatures[SIGNATURE_NAME]
        self._normalize = l2_normalize
        self.input_specs: dict[str, tf.TensorSpec] = dict(self._signature.structured_input_signature[1])
        # (name, dtype, shape after the batch dimension) in the concrete function's own argument order.
        declared = [t.name.split(":")[0] for t in self._signature.inputs[: len(self.input_specs)]]
        if sorted(declared) != sorted(self.input_specs):
            declared = sorted(self.input_specs)  # an unexpected layout: the structured call below handles it
            self._flat = False
        else:
            self._flat = hasattr(self._signature, "_call_flat")
        self._inputs = [
            (name, self.input_specs[name].dtype, tuple(self.input_specs[name].shape.as_list()[1:])) for name in declared
        ]
        self._names = frozenset(self.input_specs)

    def __call__(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Encodes a batch.

        Args:
            features: every input by name: [B] strings, [B, n] ""-padded strings or [B] floats.

        Returns:
            [B, d] float32 embeddings (unit norm when the bundle's similarity is cosine).
        """
        if features.keys() != self._names:
            raise ValueError(f"features {sorted(features)} differ from the tower inputs {sorted(self._names)}")
        tensors = []
        for name, dtype, inner in self._inputs:
            value = np.asarray(features[name])
            fits = value.ndim == len(inner) + 1 and all(
                d is None or d == v for d, v in zip(inner, value.shape[1:], strict=True)
            )
            if not fits:
                raise ValueError(f"feature {name!r}: shape {value.shape} does not fit {(None, *inner)}")
            tensors.append(tf.constant(value, dtype=dtype))
        if self._flat:
            # ConcreteFunction._call_flat: the signature's own call minus argument binding (TensorFlow 2.21).
            outputs = self._signature._call_flat(tensors, self._signature.captured_inputs)
        else:
            outputs = self._signature(**{name: t for (name, _, _), t in zip(self._inputs, tensors, strict=True)})
        out = outputs[OUTPUT_KEY].numpy().astype(np.float32, copy=False)
        return l2_normalize(out) if self._normalize else out


@dataclass(frozen=True)
class Bundle:
    """A validated bundle directory.

    Attributes:
        path: the version directory.
        manifest: its parsed manifest.
    """

    path: Path
    manifest: Manifest

    def load_query_tower(self) -> QueryEncoder:
        """Loads the query tower SavedModel (plain `tf.saved_model.load`, no custom objects)."""
        try:
            loaded = tf.saved_model.load(str(self.path / QUERY_TOWER_DIR))
        except Exception as error:
            raise BundleError(f"{QUERY_TOWER_DIR}/: cannot load the SavedModel: {error}") from error
        return QueryEncoder(loaded, l2_normalize=self.manifest.similarity == "cosine")

    def load_item_id_column(self) -> pa.Array:
        """items.parquet's item ids as one Arrow string array, row i = FAISS id i (no Python object per id)."""
        try:
            column = pq.read_table(self.path / ITEMS_FILE, columns=[ITEM_ID_COLUMN]).column(ITEM_ID_COLUMN)
        except Exception as error:
            raise BundleError(f"{ITEMS_FILE}: cannot read: {error}") from error
        if len(column) != self.manifest.item_count:
            raise BundleError(f"{ITEMS_FILE}: {len(column)} rows, manifest item_count {self.manifest.item_count}")
        return column.combine_chunks()

    def load_items(self, *, ids: bool = True) -> BundleItems:
        """Reads items.parquet: ids, popularity and display columns, row i = FAISS id i.

        Args:
            ids: read the ids into `BundleItems.ids` (False: leave it empty; `load_item_id_column` reads them
                as Arrow).
        """
        wanted = (*((ITEM_ID_COLUMN,) if ids else ()), POPULARITY_COLUMN, *self.manifest.display_columns)
        attributes = [a.name for a in self.manifest.filterable_attributes]
        try:  # only the columns asked for: without `ids` the id column is not read
            table = pq.read_table(self.path / ITEMS_FILE, columns=[*wanted, *attributes])
        except Exception as error:
            raise BundleError(f"{ITEMS_FILE}: cannot read: {error}") from error
        if table.num_rows != self.manifest.item_count:
            raise BundleError(f"{ITEMS_FILE}: {table.num_rows} rows, manifest item_count {self.manifest.item_count}")
        columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in wanted}
        return BundleItems(
            ids=columns[ITEM_ID_COLUMN].astype(object) if ids else np.empty(0, dtype=object),
            popularity=columns[POPULARITY_COLUMN].astype(np.int64),
            display={name: columns[name] for name in self.manifest.display_columns},
            attributes={name: table.column(name).combine_chunks() for name in attributes},
        )

    def load_item_embeddings(self, *, mmap: bool = False) -> np.ndarray:
        """Reads item_embeddings.npy [N, d] float32 (memory-mapped read-only when `mmap`)."""
        try:
            embeddings = np.load(self.path / EMBEDDINGS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as error:
            raise BundleError(f"{EMBEDDINGS_FILE}: cannot read: {error}") from error
        _check_embeddings(embeddings.shape, embeddings.dtype, self.manifest)
        return embeddings

    def load_index(self, *, mmap: MmapMode = "off") -> faiss.Index:
        """Reads index.faiss (CPU; memory-mapped as `mmap` says, see model/bundle/index_mmap.py) and applies the
        manifest's search parameters."""
        try:
            index = read_index(self.path / INDEX_FILE, mmap)
        except RuntimeError as error:
            raise BundleError(f"{INDEX_FILE}: cannot read the FAISS index: {error}") from error
        _check_index(index.d, index.ntotal, self.manifest)
        set_search_params(index, self.manifest.index)
        return index


def open_bundle(path: str | Path, *, verify_checksums: bool = True) -> Bundle:
    """Validates a bundle version directory.

    Args:
        path: `models/<name>/<version>/`.
        verify_checksums: hash every listed file against the manifest (reads each file once).

    Returns:
        The bundle, ready for its loaders.

    Raises:
        BundleError: naming the file and the check that failed.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: bundle directory does not exist")
    manifest = _read_manifest(root)
    if _is_version_name(root.name) and int(root.name) != manifest.model_version:
        raise BundleError(f"{MANIFEST_FILE}: model_version {manifest.model_version} != directory {root.name}")
    _check_files(root, manifest, verify_checksums)
    _check_embeddings(*_npy_header(root / EMBEDDINGS_FILE), manifest)
    _check_items(root, manifest)
    _check_index(*_index_header(root / INDEX_FILE), manifest)
    _check_signature(root, manifest)
    logger.info(
        "bundle opened path=%s model=%s version=%d items=%d checksums=%s",
        root,
        manifest.model_name,
        manifest.model_version,
        manifest.item_count,
        verify_checksums,
    )
    return Bundle(path=root, manifest=manifest)


def _read_manifest(root: Path) -> Manifest:
    try:
        text = (root / MANIFEST_FILE).read_bytes()
    except OSError as error:
        raise BundleError(f"{MANIFEST_FILE}: cannot read: {error}") from error
    try:
        return Manifest.from_json(text)
    except ManifestError as error:
        raise BundleError(f"{MANIFEST_FILE}: {error}") from error


def _check_files(root: Path, manifest: Manifest, verify_checksums: bool) -> None:
    for required in REQUIRED_FILES:
        if required not in manifest.files:
            raise BundleError(f"{MANIFEST_FILE}: files does not list required file {required}")
    for relative, digest in manifest.files.items():
        file = root / relative
        if not file.is_file():
            raise BundleError(f"{relative}: listed in the manifest but missing")
        if verify_checksums and sha256_file(file) != digest:
            raise BundleError(f"{relative}: sha256 mismatch (file changed or corrupt)")
    unlisted = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    unlisted -= {*manifest.files, MANIFEST_FILE}
    if unlisted:
        logger.warning("bundle has unlisted files path=%s files=%s", root, sorted(unlisted))


def _npy_header(file: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        with file.open("rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            data_bytes = file.stat().st_size - f.tell()
    except (OSError, ValueError) as error:
        raise BundleError(f"{EMBEDDINGS_FILE}: not a valid .npy file: {error}") from error
    if dtype.hasobject or data_bytes != int(np.prod(shape)) * dtype.itemsize:
        raise BundleError(f"{EMBEDDINGS_FILE}: holds {data_bytes} data bytes, header says {shape} {dtype}")
    return shape, dtype


def _check_embeddings(shape: tuple[int, ...], dtype: np.dtype, manifest: Manifest) -> None:
    expected = (manifest.item_count, manifest.embedding_dim)
    if tuple(shape) != expected or dtype != np.float32:
        raise BundleError(f"{EMBEDDINGS_FILE}: shape {tuple(shape)} {dtype}, manifest says {expected} float32")


def _check_items(root: Path, manifest: Manifest) -> None:
    try:
        metadata = pq.read_metadata(root / ITEMS_FILE)
    except Exception as error:
        raise BundleError(f"{ITEMS_FILE}: not a valid Parquet file: {error}") from error
    if metadata.num_rows != manifest.item_count:
        raise BundleError(f"{ITEMS_FILE}: {metadata.num_rows} rows, manifest item_count {manifest.item_count}")
    attributes = [a.name for a in manifest.filterable_attributes]
    # The Arrow schema's top-level names: the Parquet schema's names are its leaves ("element" of a list column).
    schema = metadata.schema.to_arrow_schema()
    missing = {ITEM_ID_COLUMN, POPULARITY_COLUMN, *manifest.display_columns, *attributes} - set(schema.names)
    if missing:
        raise BundleError(f"{ITEMS_FILE}: missing column(s) {sorted(missing)}")
    for attribute in manifest.filterable_attributes:
        found = schema.field(attribute.name).type
        if not attribute.kind.fits(found):
            raise BundleError(
                f"{ITEMS_FILE}: column {attribute.name!r} is {found}, a {attribute.kind.value} attribute needs "
                f"{attribute.kind.arrow_type}"
            )


def _index_header(file: Path) -> tuple[int, int]:
    try:
        return read_index_header(file)
    except ValueError as error:
        raise BundleError(f"{INDEX_FILE}: {error}") from error


def _check_index(d: int, ntotal: int, manifest: Manifest) -> None:
    if ntotal != manifest.item_count or d != manifest.embedding_dim:
        raise BundleError(
            f"{INDEX_FILE}: index holds {ntotal} vectors of dim {d}, manifest says "
            f"{manifest.item_count} of dim {manifest.embedding_dim}"
        )


def _check_signature(root: Path, manifest: Manifest) -> None:
    """The SavedModel's serving signature takes the spec's features and outputs [None, embedding_dim]."""
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((root / SAVED_MODEL_FILE).read_bytes())
        signature = proto.meta_graphs[0].signature_def[SIGNATURE_NAME]
    except Exception as error:
        raise BundleError(f"{SAVED_MODEL_FILE}: no readable {SIGNATURE_NAME!r} signature: {error}") from error
    output = signature.outputs.get(OUTPUT_KEY)
    out_dims = [d.size for d in output.tensor_shape.dim] if output is not None else []
    if output is None or out_dims[-1:] != [manifest.embedding_dim] or output.dtype != tf.float32.as_datatype_enum:
        raise BundleError(
            f"{SAVED_MODEL_FILE}: signature output {OUTPUT_KEY!r} has shape {out_dims}, "
            f"expected [-1, {manifest.embedding_dim}] float32"
        )
    for feature in manifest.query_tower.features:
        info = signature.inputs.get(feature.name)
        if isinstance(feature, CategoricalFeature):
            dtype, dims = tf.string, [-1, feature.max_values] if feature.multi_valued else [-1]
        else:
            dtype, dims = tf.float32, [-1]
        got = None if info is None else (tf.as_dtype(info.dtype), [d.size for d in info.tensor_shape.dim])
        if got != (dtype, dims):
            raise BundleError(f"{SAVED_MODEL_FILE}: input {feature.name!r} is {got}, expected ({dtype}, {dims})")
    if len(signature.inputs) != len(manifest.query_tower.features):
        raise BundleError(f"{SAVED_MODEL_FILE}: signature inputs {sorted(signature.inputs)} differ from the spec")
