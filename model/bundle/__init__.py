"""The versioned model bundle `models/<name>/<version>/`: export, open and validate, FAISS index specs.

Index specs, manifests and GPU placement import without TensorFlow; the names of `export` and `reader`, which
need it, are loaded on first use (PEP 562), so `import model.bundle.index` and `model.bundle.gpu` (whose parent
package runs this file first) stay TensorFlow-free.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from model.bundle.gpu import place_index
from model.bundle.index import (
    IndexSpec,
    RecallRecord,
    build_index,
    choose_index_spec,
    measure_recall,
    set_search_params,
)
from model.bundle.manifest import FORMAT_VERSION, Manifest, ManifestError
from model.bundle.spec_io import SpecFormatError, tower_spec_from_dict, tower_spec_to_dict

if TYPE_CHECKING:
    from model.bundle.export import export_bundle, serving_input_signature
    from model.bundle.reader import (
        Bundle,
        BundleError,
        BundleItems,
        QueryEncoder,
        latest_version,
        list_versions,
        open_bundle,
    )

# Names whose modules import TensorFlow, by module.
_LAZY = {
    "export_bundle": "model.bundle.export",
    "serving_input_signature": "model.bundle.export",
    "Bundle": "model.bundle.reader",
    "BundleError": "model.bundle.reader",
    "BundleItems": "model.bundle.reader",
    "QueryEncoder": "model.bundle.reader",
    "latest_version": "model.bundle.reader",
    "list_versions": "model.bundle.reader",
    "open_bundle": "model.bundle.reader",
}

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
    "place_index",
    "serving_input_signature",
    "set_search_params",
    "tower_spec_from_dict",
    "tower_spec_to_dict",
]


def __getattr__(name: str) -> Any:
    """Imports a TensorFlow-bound name from its module on first access and caches it here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
