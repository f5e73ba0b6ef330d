"""The bundle's item tower: exported by the training job, equal to the training-time item embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.bundle.index import l2_normalize
from model.bundle.item_tower import load_item_tower
from model.bundle.reader import open_bundle
from model.catalog_refresh import refresh_catalog
from model.training.config import build_config
from model.training.job import run


@pytest.mark.slow
def test_trained_item_tower_signature_equals_training_embeddings_and_carries_unseen_ids(tmp_path: Path) -> None:
    config = build_config(
        {
            "data": {"source": "synthetic"},
            "train": {"epochs": 1, "batch_size": 256, "learning_rate": 0.01, "patience": 0, "verbose": 0},
            "export": {"enabled": True, "models_dir": str(tmp_path / "models"), "name": "demo"},
            "output_dir": str(tmp_path / "run"),
        }
    )
    result = run(config)
    assert result.bundle is not None
    bundle = open_bundle(result.bundle)
    assert bundle.manifest.item_tower == result.data.item_spec
    catalog = result.data.catalog
    served = load_item_tower(bundle)(dict(catalog.features))
    trained = result.model.item_embeddings()
    if bundle.manifest.similarity == "cosine":
        trained = l2_normalize(trained)
    np.testing.assert_allclose(served, trained, atol=1e-5)
    np.testing.assert_allclose(served, bundle.load_item_embeddings(), atol=1e-5)

    # The whole catalog again plus two ids the model never saw, with the features of item 0: both take the
    # out-of-vocabulary id row, so the features alone place them, and the trained items do not move.
    category = catalog.features["category"]
    table = pa.table(
        {
            "item_id": [*catalog.external_ids.astype(str).tolist(), "new-a", "new-b"],
            "category": [*category.tolist(), category[0], category[0]],
        }
    )
    pq.write_table(table, tmp_path / "items.parquet")
    refreshed = open_bundle(refresh_catalog(result.bundle, tmp_path / "items.parquet").path)
    embeddings = refreshed.load_item_embeddings()
    np.testing.assert_allclose(embeddings[: len(catalog)], bundle.load_item_embeddings(), atol=1e-6)
    np.testing.assert_array_equal(embeddings[-1], embeddings[-2])
    expected = result.model.item_tower({"item_id": np.array(["new-a"]), "category": category[:1]}, training=False)
    expected = np.asarray(expected, dtype=np.float32)
    if bundle.manifest.similarity == "cosine":
        expected = l2_normalize(expected)
    np.testing.assert_allclose(embeddings[-1:], expected, atol=1e-5)
    assert refreshed.manifest.lineage is not None
    assert (refreshed.manifest.lineage["items_added"], refreshed.manifest.lineage["items_changed"]) == (2, 0)
