"""Every name a bundle reserves, defined once: what the exporter writes and the server reads.

- Query-tower inputs that the server fills from request fields rather than from `user_features`: the request's
  `user_id` feeds the input `USER_ID_FEATURE`, its `history_item_ids` the input `HISTORY_FEATURE` (the
  sequential tower's [B, H] item ids). `manifest.json` records them as `reserved_inputs` (role -> input name).
- The files of a version directory, the query tower's SavedModel signature and the `items.parquet` columns.

Imports nothing, so anything (the trainer, the server's request validation) may import it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Literal

# Query-tower inputs filled from request fields, and the roles under which the manifest records them.
USER_ID_FEATURE = "user_id"
HISTORY_FEATURE = "history"
RESERVED_INPUTS = MappingProxyType({"user_id": USER_ID_FEATURE, "history": HISTORY_FEATURE})

# The files of `models/<name>/<version>/`.
MANIFEST_FILE = "manifest.json"
QUERY_TOWER_DIR = "query_tower"
# Optional: the item tower SavedModel (same signature name and output key as the query tower's), which lets
# `retrieval-catalog` embed new items from their features. Bundles exported before it existed lack it.
ITEM_TOWER_DIR = "item_tower"
# Written by a catalog refresh: one row per item added, removed or changed against the parent version.
CATALOG_CHANGES_FILE = "catalog_changes.parquet"
ITEMS_FILE = "items.parquet"
EMBEDDINGS_FILE = "item_embeddings.npy"
INDEX_FILE = "index.faiss"
SAVED_MODEL_FILE = f"{QUERY_TOWER_DIR}/saved_model.pb"
REQUIRED_FILES = (ITEMS_FILE, EMBEDDINGS_FILE, INDEX_FILE, SAVED_MODEL_FILE)

# The query tower SavedModel: signature name and the key of its [None, d] float32 output.
SIGNATURE_NAME = "serving_default"
OUTPUT_KEY = "embedding"

# items.parquet columns that are not display columns.
ITEM_ID_COLUMN = "item_id"
POPULARITY_COLUMN = "popularity"

# The model name of `models/<name>/` that training exports to and the server serves unless told otherwise.
DEFAULT_MODEL_NAME = "retrieval"

# How the server reads a version's index file (model/bundle/index_mmap.py): memory-mapped ("on"), memory-mapped
# when large ("auto") or into memory ("off"). Here so that command lines offer the choices without loading FAISS.
IndexMmapMode = Literal["auto", "on", "off"]
INDEX_MMAP_MODES: tuple[IndexMmapMode, ...] = ("auto", "on", "off")
