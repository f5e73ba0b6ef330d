"""The versioned model bundle `models/<name>/<version>/`: export, open and validate, FAISS index specs."""

from model.bundle.export import export_bundle, serving_input_signature
from model.bundle.index import (
    IndexSpec,
    RecallRecord,
    build_index,
    choose_index_spec,
    measure_recall,
    set_search_params,
)
from model.bundle.manifest import FORMAT_VERSION, Manifest, ManifestError
from model.bundle.reader import (
    Bundle,
    BundleError,
    BundleItems,
    QueryEncoder,
    latest_version,
    list_versions,
    open_bundle,
)
from model.bundle.spec_io import SpecFormatError, tower_spec_from_dict, tower_spec_to_dict

__all__ = [
    "FORMAT_VERSION",
    "Bundle",
    "BundleError",
    "BundleItems",
    "IndexSpec",
    "Manifest",
    "ManifestError",
    "QueryEncoder",
    "RecallRecord",
    "SpecFormatError",
    "build_index",
    "choose_index_spec",
    "export_bundle",
    "latest_version",
    "list_versions",
    "measure_recall",
    "open_bundle",
    "serving_input_signature",
    "set_search_params",
    "tower_spec_from_dict",
    "tower_spec_to_dict",
]
