"""The bundle's optional item tower: raw item features -> [B, d] item embeddings, as the training exported them.

The exporter writes it with the query tower's signature (`SIGNATURE_NAME`, output `OUTPUT_KEY`) under
`ITEM_TOWER_DIR`, and records its feature schema as the manifest's `item_tower`. Bundles exported before the item
tower existed have neither; `load_item_tower` refuses them with `ItemTowerMissingError`.
"""

from __future__ import annotations

import tensorflow as tf

from model.bundle.reader import Bundle, BundleError, QueryEncoder
from model.bundle.reserved import ITEM_TOWER_DIR, MANIFEST_FILE

TowerEncoder = QueryEncoder
"""A tower SavedModel's serving signature; the query tower's encoder works for any tower of that signature."""


class ItemTowerMissingError(BundleError):
    """The bundle was exported without an item tower, so its items cannot be re-embedded from features."""


def has_item_tower(bundle: Bundle) -> bool:
    """Whether the bundle carries an item tower and its schema."""
    return bundle.manifest.item_tower is not None and (bundle.path / ITEM_TOWER_DIR).is_dir()


def load_item_tower(bundle: Bundle) -> TowerEncoder:
    """Loads `item_tower/`: a callable from the raw item features of `manifest.item_tower` to [B, d] float32.

    Outputs are L2-normalised for cosine bundles, as the exporter stores item embeddings.

    Raises:
        ItemTowerMissingError: the bundle has no item tower (exported before it existed).
        BundleError: the SavedModel cannot be loaded or its inputs differ from the manifest's schema.
    """
    spec = bundle.manifest.item_tower
    if spec is None or not (bundle.path / ITEM_TOWER_DIR).is_dir():
        raise ItemTowerMissingError(
            f"{bundle.path}: version {bundle.manifest.model_version} has no item tower ({MANIFEST_FILE} has no "
            f"item_tower, or {ITEM_TOWER_DIR}/ is absent): it was exported before bundles carried one, so its "
            "items cannot be embedded from features; retrain and export to refresh its catalog"
        )
    try:
        loaded = tf.saved_model.load(str(bundle.path / ITEM_TOWER_DIR))
    except Exception as error:
        raise BundleError(f"{ITEM_TOWER_DIR}/: cannot load the SavedModel: {error}") from error
    encoder = TowerEncoder(loaded, l2_normalize=bundle.manifest.similarity == "cosine")
    expected = sorted(f.name for f in spec.features)
    if sorted(encoder.input_specs) != expected:
        raise BundleError(
            f"{ITEM_TOWER_DIR}/: signature inputs {sorted(encoder.input_specs)} differ from the manifest's "
            f"item_tower features {expected}"
        )
    return encoder
