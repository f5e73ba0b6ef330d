"""The bundle manifest (`manifest.json`): what a bundle holds and the checksums that vouch for it.

Parsing is strict: unknown or missing fields, wrong types and inconsistent values raise `ManifestError`
naming the field. `FORMAT_VERSION` changes whenever a reader of the previous version would misread a bundle.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from model.bundle.attributes import AttributeKind, FilterableAttribute
from model.bundle.index import METRIC, IndexSpec, RecallRecord
from model.bundle.reserved import ITEM_ID_COLUMN, MANIFEST_FILE, POPULARITY_COLUMN, RESERVED_INPUTS
from model.bundle.spec_io import SpecFormatError, tower_spec_from_dict, tower_spec_to_dict
from model.features import TowerSpec

FORMAT_VERSION = 1
SIMILARITIES = ("dot", "cosine")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = (
    "format_version",
    "model_name",
    "model_version",
    "created_at",
    "embedding_dim",
    "similarity",
    "query_tower",
    "item_count",
    "index",
    "metrics",
    "display_columns",
    "files",
)
# Fields added after format version 1 shipped: a manifest without them reads as the default.
_OPTIONAL_FIELDS = ("reserved_inputs", "item_tower", "lineage", "filterable_attributes")


class ManifestError(ValueError):
    """`manifest.json` is malformed; the message names the offending field."""


@dataclass(frozen=True)
class Manifest:
    """Contents of `manifest.json`.

    Attributes:
        model_name: the model's name (the `models/<name>/` directory).
        model_version: positive version (the `<version>/` directory).
        created_at: export time, ISO-8601 in UTC.
        embedding_dim: d of query and item embeddings.
        similarity: "dot", or "cosine" (item embeddings stored L2-normalised; queries normalised at serving).
        query_tower: the query tower's feature schema.
        item_count: N, the rows of items.parquet and item_embeddings.npy and the index's ntotal.
        index: the FAISS index built and its search parameters.
        index_recall: the index's recall@k against exact search, measured at export.
        metrics: free-form JSON (e.g. the evaluation report).
        display_columns: extra columns of items.parquet (e.g. "title").
        files: sha256 hex digest of every file other than the manifest, by relative POSIX path.
        reserved_inputs: the query-tower inputs the server fills from request fields, by role
            (`RESERVED_INPUTS`: "user_id" from the request's user_id, "history" from its history_item_ids).
        item_tower: the item tower's feature schema (the columns of an item table, see `retrieval-catalog`),
            or None for a bundle exported without `item_tower/`.
        lineage: for a version written by a catalog refresh, its parent version and the items added, removed
            and changed (`model.catalog_refresh`); None for a version written by training.
        filterable_attributes: item attributes requests may filter on, each a column of items.parquet (none in
            bundles exported before filters existed).
        format_version: bundle format version.
    """

    model_name: str
    model_version: int
    created_at: str
    embedding_dim: int
    similarity: str
    query_tower: TowerSpec
    item_count: int
    index: IndexSpec
    index_recall: RecallRecord
    metrics: Mapping[str, Any] = field(default_factory=dict)
    display_columns: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    reserved_inputs: Mapping[str, str] = field(default_factory=lambda: dict(RESERVED_INPUTS))
    item_tower: TowerSpec | None = None
    lineage: Mapping[str, Any] | None = None
    filterable_attributes: tuple[FilterableAttribute, ...] = ()
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ManifestError(f"format_version: expected {FORMAT_VERSION}, got {self.format_version!r}")
        if not self.model_name or "/" in self.model_name or self.model_name.startswith("."):
            raise ManifestError(f"model_name: must be a non-empty plain directory name, got {self.model_name!r}")
        for name in ("model_version", "embedding_dim", "item_count"):
            if getattr(self, name) < 1:
                raise ManifestError(f"{name}: must be >= 1, got {getattr(self, name)}")
        _check_created_at(self.created_at)
        if self.similarity not in SIMILARITIES:
            raise ManifestError(f"similarity: expected one of {SIMILARITIES}, got {self.similarity!r}")
        if self.query_tower.output_dim != self.embedding_dim:
            raise ManifestError(
                f"query_tower.output_dim: {self.query_tower.output_dim} != embedding_dim {self.embedding_dim}"
            )
        if not all(isinstance(c, str) and c for c in self.display_columns):
            raise ManifestError(f"display_columns: expected non-empty strings, got {list(self.display_columns)}")
        reserved = {ITEM_ID_COLUMN, POPULARITY_COLUMN}
        if reserved & set(self.display_columns) or len(set(self.display_columns)) != len(self.display_columns):
            raise ManifestError(f"display_columns: duplicates or reserved names in {list(self.display_columns)}")
        for path, digest in self.files.items():
            _check_relative_path(path)
            if not isinstance(digest, str) or not _SHA256.match(digest):
                raise ManifestError(f"files[{path!r}]: expected a lowercase sha256 hex digest, got {digest!r}")
        _check_reserved_inputs(self.reserved_inputs)
        if self.item_tower is not None and self.item_tower.output_dim != self.embedding_dim:
            raise ManifestError(
                f"item_tower.output_dim: {self.item_tower.output_dim} != embedding_dim {self.embedding_dim}"
            )
        _check_filterable(self.filterable_attributes, self.display_columns)

    def to_json(self) -> str:
        """The manifest as indented JSON text (strict JSON: no NaN)."""
        data: dict[str, Any] = {
            "format_version": self.format_version,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "embedding_dim": self.embedding_dim,
            "similarity": self.similarity,
            "query_tower": tower_spec_to_dict(self.query_tower),
            "item_count": self.item_count,
            "index": {
                "factory": self.index.factory,
                "metric": METRIC,
                "parameters": self.index.parameters(),
                "recall": {
                    "k": self.index_recall.k,
                    "num_queries": self.index_recall.num_queries,
                    "recall": self.index_recall.recall,
                },
            },
            "metrics": self.metrics,
            "display_columns": list(self.display_columns),
            "files": dict(sorted(self.files.items())),
            "reserved_inputs": dict(self.reserved_inputs),
        }
        if self.item_tower is not None:
            data["item_tower"] = tower_spec_to_dict(self.item_tower)
        if self.lineage is not None:
            data["lineage"] = dict(self.lineage)
        if self.filterable_attributes:
            data["filterable_attributes"] = [{"name": a.name, "kind": a.kind.value} for a in self.filterable_attributes]
        try:
            return json.dumps(data, indent=2, allow_nan=False, default=_json_default) + "\n"
        except (TypeError, ValueError) as error:
            raise ManifestError(f"metrics: not JSON-serialisable: {error}") from error

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parses and validates manifest JSON text.

        Raises:
            ManifestError: if the text is not JSON, a field is missing, unknown or wrong, or the format
                version differs from `FORMAT_VERSION`.
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ManifestError(f"not valid JSON: {error}") from error
        if not isinstance(data, dict):
            raise ManifestError(f"expected a JSON object at the top level, got {type(data).__name__}")
        if "format_version" in data and data["format_version"] != FORMAT_VERSION:
            raise ManifestError(
                f"format_version: this reader understands {FORMAT_VERSION}, got {data['format_version']!r}"
            )
        _check_keys(data, set(_FIELDS), "manifest", optional=set(_OPTIONAL_FIELDS))
        try:
            query_tower = tower_spec_from_dict(data["query_tower"], "query_tower")
        except SpecFormatError as error:
            raise ManifestError(str(error)) from error
        index, recall = _index_from_dict(data["index"])
        try:
            item_tower = tower_spec_from_dict(data["item_tower"], "item_tower") if "item_tower" in data else None
        except SpecFormatError as error:
            raise ManifestError(str(error)) from error
        lineage = _typed(data, "lineage", dict) if "lineage" in data else None
        # Manifests written before `reserved_inputs` was recorded used the same names.
        reserved_inputs = _typed(data, "reserved_inputs", dict) if "reserved_inputs" in data else dict(RESERVED_INPUTS)
        return cls(
            format_version=_typed(data, "format_version", int),
            model_name=_typed(data, "model_name", str),
            model_version=_typed(data, "model_version", int),
            created_at=_typed(data, "created_at", str),
            embedding_dim=_typed(data, "embedding_dim", int),
            similarity=_typed(data, "similarity", str),
            query_tower=query_tower,
            item_count=_typed(data, "item_count", int),
            index=index,
            index_recall=recall,
            metrics=_typed(data, "metrics", dict),
            display_columns=tuple(_typed(data, "display_columns", list)),
            files=_typed(data, "files", dict),
            reserved_inputs=reserved_inputs,
            item_tower=item_tower,
            lineage=lineage,
            filterable_attributes=_filterable_from_list(data.get("filterable_attributes", [])),
        )


def _index_from_dict(data: Any) -> tuple[IndexSpec, RecallRecord]:
    _check_keys(data, {"factory", "metric", "parameters", "recall"}, "index")
    if data["metric"] != METRIC:
        raise ManifestError(f"index.metric: expected {METRIC!r}, got {data['metric']!r}")
    params = _typed(data, "parameters", dict, "index.")
    try:
        spec = IndexSpec(
            _typed(data, "factory", str, "index."),
            nprobe=params.get("nprobe"),
            ef_search=params.get("efSearch"),
            k_factor=params.get("k_factor"),
        )
    except ValueError as error:
        raise ManifestError(f"index: {error}") from error
    if params != spec.parameters():
        raise ManifestError(f"index.parameters: {params} do not match factory {spec.factory!r}")
    _check_keys(data["recall"], {"k", "num_queries", "recall"}, "index.recall")
    recall = RecallRecord(
        k=_typed(data["recall"], "k", int, "index.recall."),
        num_queries=_typed(data["recall"], "num_queries", int, "index.recall."),
        recall=float(_typed(data["recall"], "recall", (int, float), "index.recall.")),
    )
    if recall.k < 1 or recall.num_queries < 0 or not 0.0 <= recall.recall <= 1.0:
        raise ManifestError(f"index.recall: out of range: {data['recall']}")
    return spec, recall


def _filterable_from_list(data: Any) -> tuple[FilterableAttribute, ...]:
    if not isinstance(data, list):
        raise ManifestError(f"filterable_attributes: expected a list, got {type(data).__name__}")
    attributes = []
    for i, entry in enumerate(data):
        _check_keys(entry, {"name", "kind"}, f"filterable_attributes[{i}]")
        name = _typed(entry, "name", str, f"filterable_attributes[{i}].")
        try:
            kind = AttributeKind(entry["kind"])
        except ValueError as error:
            kinds = [k.value for k in AttributeKind]
            raise ManifestError(
                f"filterable_attributes[{i}].kind: expected one of {kinds}, got {entry['kind']!r}"
            ) from error
        attributes.append(FilterableAttribute(name, kind))
    return tuple(attributes)


def _check_filterable(attributes: tuple[FilterableAttribute, ...], display_columns: tuple[str, ...]) -> None:
    """Each attribute is its own items.parquet column: a unique non-empty name, no reserved or display column."""
    taken = {ITEM_ID_COLUMN, POPULARITY_COLUMN, *display_columns}
    names = [a.name for a in attributes]
    for i, attribute in enumerate(attributes):
        if not isinstance(attribute.name, str) or not attribute.name or attribute.name in taken:
            raise ManifestError(
                f"filterable_attributes[{i}].name: must be a non-empty column name other than {sorted(taken)}, "
                f"got {attribute.name!r}"
            )
        if names.count(attribute.name) > 1:
            raise ManifestError(f"filterable_attributes[{i}].name: {attribute.name!r} is listed twice")
        if not isinstance(attribute.kind, AttributeKind):
            raise ManifestError(f"filterable_attributes[{i}].kind: expected an AttributeKind, got {attribute.kind!r}")


def _check_keys(data: Any, keys: set[str], where: str, optional: frozenset[str] | set[str] = frozenset()) -> None:
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
    missing, unknown = keys - data.keys(), data.keys() - keys - optional
    if missing:
        raise ManifestError(f"{where}: missing field(s) {sorted(missing)}")
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {sorted(unknown)}")


def _typed(data: Mapping[str, Any], key: str, types: type | tuple[type, ...], prefix: str = "") -> Any:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ManifestError(f"{prefix}{key}: expected {names}, got {type(value).__name__} {value!r}")
    return value


def _check_reserved_inputs(reserved: Mapping[str, str]) -> None:
    """This reader fills each reserved input under one name: a bundle that names them otherwise is refused."""
    if set(reserved) != set(RESERVED_INPUTS):
        raise ManifestError(f"reserved_inputs: expected the roles {sorted(RESERVED_INPUTS)}, got {sorted(reserved)}")
    for role, name in RESERVED_INPUTS.items():
        if reserved[role] != name:
            raise ManifestError(
                f"reserved_inputs[{role!r}]: this reader fills the input {name!r}, the bundle names it "
                f"{reserved[role]!r}"
            )


def _check_created_at(value: str) -> None:
    try:
        stamp = datetime.fromisoformat(value)
    except (TypeError, ValueError) as error:
        raise ManifestError(f"created_at: not an ISO-8601 timestamp: {value!r}") from error
    if stamp.utcoffset() != timedelta(0):
        raise ManifestError(f"created_at: must be in UTC (offset +00:00), got {value!r}")


def _check_relative_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ManifestError(f"files: {path!r} is not a plain relative path inside the bundle")
    if path == MANIFEST_FILE:
        raise ManifestError(f"files: the manifest cannot list itself ({path!r})")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
