"""The training job end to end on synthetic data: outputs, quality, resume after an interruption."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from model.bundle.attributes import AttributeKind
from model.bundle.reader import open_bundle
from model.synthetic import SyntheticConfig, make_synthetic, synthetic_tables
from model.training.config import build_config
from model.training.job import run
from model.training.pipeline import user_feature_rows
from tests.helpers import Interrupt


def _config(tmp_path, name, epochs=4, export=False, filterable=()):
    return build_config(
        {
            "data": {"source": "synthetic"},
            "train": {"epochs": epochs, "batch_size": 256, "learning_rate": 0.01, "patience": 0, "verbose": 0},
            "export": {
                "enabled": export,
                "models_dir": str(tmp_path / "models"),
                "name": "demo",
                "filterable": list(filterable),
            },
            "output_dir": str(tmp_path / name),
        }
    )


@pytest.mark.slow
def test_job_writes_outputs_beats_popularity_and_exports_a_bundle(tmp_path):
    result = run(_config(tmp_path, "run", epochs=3, export=True, filterable=["kind=category"]))
    for name in ("config.json", "metrics.json", "training.png", "summary.md"):
        assert (result.run_dir / name).stat().st_size > 0
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    test = metrics["test"]
    model, popularity = test["model"]["excluding_train"], test["popularity"]["excluding_train"]
    assert model["recall@10"] >= 2 * popularity["recall@10"]
    assert set(model) == {f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in (10, 50, 100)}
    assert len(metrics["training"]["history"]) == 3
    assert "| model | excluding train |" in (result.run_dir / "summary.md").read_text()

    assert result.bundle == tmp_path / "models" / "demo" / "1"
    bundle = open_bundle(result.bundle)
    assert bundle.manifest.item_count == len(result.data.catalog)
    users = result.data.test.users[:50]
    features = user_feature_rows(result.data.user_features, users)
    served = bundle.load_query_tower()(features)
    np.testing.assert_allclose(served, result.model.query_embeddings(features), atol=1e-5)
    np.testing.assert_allclose(bundle.load_item_embeddings(), result.model.item_embeddings(), atol=1e-5)
    # export.filterable: the item table's `category` column is the categorical attribute `kind`
    assert [(a.name, a.kind) for a in bundle.manifest.filterable_attributes] == [("kind", AttributeKind.CATEGORICAL)]
    _, _, items = synthetic_tables(make_synthetic(SyntheticConfig()))
    expected = items.lookup(bundle.load_items().ids)["category"].tolist()
    assert bundle.load_items().attributes["kind"].to_pylist() == expected and len(set(expected)) > 1


@pytest.mark.slow
def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path):
    full = run(_config(tmp_path, "full"))
    config = _config(tmp_path, "interrupted")
    with pytest.raises(KeyboardInterrupt):
        run(config, callbacks=[Interrupt(after=2)])
    state = json.loads((tmp_path / "interrupted" / "state.json").read_text())
    assert state["epochs_done"] == 2
    resumed = run(config, resume=True)
    history = resumed.metrics["training"]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]  # epochs 1-2 from the first process, 3-4 resumed
    full_recall = full.metrics["test"]["model"]["excluding_train"]["recall@10"]
    resumed_recall = resumed.metrics["test"]["model"]["excluding_train"]["recall@10"]
    assert resumed_recall == pytest.approx(full_recall, abs=0.03)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint under"):
        run(_config(tmp_path, "empty", epochs=1), resume=True)


@pytest.mark.slow
def test_mixed_precision_training_learns_and_restores_the_policy(tmp_path):
    config = _config(tmp_path, "mixed", epochs=2)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, mixed_precision=True))
    result = run(config)
    test = result.metrics["test"]
    assert test["model"]["excluding_train"]["recall@10"] >= 2 * test["popularity"]["excluding_train"]["recall@10"]
    assert keras.mixed_precision.dtype_policy().name == "float32"
