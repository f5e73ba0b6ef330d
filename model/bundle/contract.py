"""What a bundle promises its readers, importable without TensorFlow: the one `model` module the server's
request path imports (besides `model.bundle.reader`, which loads the query tower).

- the reserved names (`model.bundle.reserved`): query-tower inputs filled from request fields, files,
  signature, item columns;
- the query tower's feature schema (`model.features`) and its JSON form (`model.bundle.spec_io`);
- the filterable item attributes (`model.bundle.attributes`);
- the manifest (`model.bundle.manifest`) and the FAISS index spec it records (`model.bundle.index`), whose
  k_factor asks for an exact re-rank of the index's candidates (`model.bundle.refine`);
- FAISS GPU placement of a loaded index (`model.bundle.gpu`), sharded across GPUs when there are several
  (`model.bundle.index_shards`).

Writing a bundle (`model.bundle.export`) and reading one (`model.bundle.reader`) need TensorFlow; import them
from their modules.
"""

from model.bundle.attributes import AttributeKind, FilterableAttribute
from model.bundle.gpu import GPU_MAX_K, place_index
from model.bundle.index import IndexKind, IndexSpec, RecallRecord
from model.bundle.index_shards import place_index_sharded
from model.bundle.manifest import FORMAT_VERSION, SIMILARITIES, Manifest, ManifestError
from model.bundle.refine import RefinedIndex, refined
from model.bundle.reserved import (
    DEFAULT_MODEL_NAME,
    EMBEDDINGS_FILE,
    HISTORY_FEATURE,
    INDEX_FILE,
    ITEM_ID_COLUMN,
    ITEMS_FILE,
    MANIFEST_FILE,
    OUTPUT_KEY,
    POPULARITY_COLUMN,
    QUERY_TOWER_DIR,
    REQUIRED_FILES,
    RESERVED_INPUTS,
    SAVED_MODEL_FILE,
    SIGNATURE_NAME,
    USER_ID_FEATURE,
)
from model.bundle.spec_io import SpecFormatError, tower_spec_from_dict, tower_spec_to_dict
from model.features import CategoricalFeature, EmbeddingDimRule, Feature, NumericFeature, TowerSpec

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EMBEDDINGS_FILE",
    "FORMAT_VERSION",
    "GPU_MAX_K",
    "HISTORY_FEATURE",
    "INDEX_FILE",
    "ITEMS_FILE",
    "ITEM_ID_COLUMN",
    "MANIFEST_FILE",
    "OUTPUT_KEY",
    "POPULARITY_COLUMN",
    "QUERY_TOWER_DIR",
    "REQUIRED_FILES",
    "RESERVED_INPUTS",
    "SAVED_MODEL_FILE",
    "SIGNATURE_NAME",
    "SIMILARITIES",
    "USER_ID_FEATURE",
    "AttributeKind",
    "CategoricalFeature",
    "EmbeddingDimRule",
    "Feature",
    "FilterableAttribute",
    "IndexKind",
    "IndexSpec",
    "Manifest",
    "ManifestError",
    "NumericFeature",
    "RecallRecord",
    "RefinedIndex",
    "SpecFormatError",
    "TowerSpec",
    "place_index",
    "place_index_sharded",
    "refined",
    "tower_spec_from_dict",
    "tower_spec_to_dict",
]
