"""`retrieval-train` with model.tower = "sequential": planted next-item structure, bundle, resume, refit."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from model.bundle.reader import open_bundle
from model.bundle.reserved import HISTORY_FEATURE
from model.data import InteractionLog, leave_last_out
from model.training.config import SequenceConfig, build_config
from model.training.job import refit_split, run
from model.training.sequential import check_config, query_embeddings, sequence_data
from tests.helpers import Interrupt

pytestmark = pytest.mark.slow  # two short training runs, about 35 s together

NUM_ITEMS, CLUSTERS, USERS, EVENTS, L = 120, 6, 300, 14, 8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Each user walks through one cluster of consecutive items (i is followed by i + 1), 10% noise."""
    rng = np.random.default_rng(0)
    size = NUM_ITEMS // CLUSTERS
    cluster = rng.integers(CLUSTERS, size=USERS)
    start = rng.integers(size, size=USERS)
    items = cluster[:, None] * size + (start[:, None] + np.arange(EVENTS)) % size
    items = np.where(rng.random(items.shape) < 0.1, rng.integers(NUM_ITEMS, size=items.shape), items)
    directory = tmp_path_factory.mktemp("sequential-log")
    lines = ["user_id,item_id,timestamp"] + [
        f"u{u},i{items[u, t]},{1000 * u + t}" for u in range(USERS) for t in range(EVENTS)
    ]
    (directory / "log.csv").write_text("\n".join(lines) + "\n")
    (directory / "users.csv").write_text(
        "\n".join(["user_id,segment"] + [f"u{u},s{u % 3}" for u in range(USERS)]) + "\n"
    )
    return directory


def _config(world, tmp_path, name, epochs=6, **sequence):
    return build_config(
        {
            "data": {
                "source": "files",
                "interactions": str(world / "log.csv"),
                "user_features": str(world / "users.csv"),
                "user_categorical": ["segment"],
            },
            "model": {"tower": "sequential", "embedding_dim": 32, "temperature": 0.1},
            "sequence": {"max_length": L, "num_layers": 1, "dropout": 0.1, **sequence},
            "train": {"epochs": epochs, "batch_size": 64, "learning_rate": 0.005, "patience": 0, "verbose": 0},
            "export": {"models_dir": str(tmp_path / "models"), "name": "sequential"},
            "output_dir": str(tmp_path / name),
        }
    )


def test_sequential_job_learns_next_items_and_serves_the_offline_embedding(world, tmp_path):
    config = _config(world, tmp_path, "run", objective="masked", user_features=True, full_softmax=True)
    result = run(config)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    model, popularity = metrics["test"]["model"]["excluding_train"], metrics["test"]["popularity"]["excluding_train"]
    assert popularity["recall@10"] < 0.15
    assert model["recall@10"] > 0.6, model
    assert len(metrics["training"]["history"]) == 6
    for name in ("training.png", "summary.md"):
        assert (result.run_dir / name).stat().st_size > 0

    bundle = open_bundle(result.bundle)
    assert bundle.manifest.query_tower.feature(HISTORY_FEATURE).max_values == L
    assert bundle.manifest.item_count == len(result.data.catalog)
    served, offline = _served_and_offline(world, result, config, bundle, context=("segment",))
    np.testing.assert_allclose(served, offline, atol=1e-5)
    np.testing.assert_allclose(bundle.load_item_embeddings(), result.model.item_embeddings(), atol=1e-5)


def _served_and_offline(world, result, config, bundle, context=(), users=40):
    """The bundle's query embeddings of the first test users' histories (as the service receives them) and
    the trained model's offline ones for the same users."""
    log = np.loadtxt(world / "log.csv", delimiter=",", skiprows=1, dtype=str)
    sequences = sequence_data(*_log_and_split(log), result.data, config.sequence)
    offline = query_embeddings(result.model, sequences.test, sequences)[:users]
    rows = result.data.test.users[:users]
    features = {HISTORY_FEATURE: np.array([_history(log, result.data.user_ids[u]) for u in rows])}
    features.update({name: result.data.user_features[name][rows] for name in context})
    return np.asarray(bundle.load_query_tower()(features)), offline


def _log_and_split(rows):
    log = InteractionLog(rows[:, 0], rows[:, 1], rows[:, 2].astype(float), np.ones(len(rows)))
    return log, leave_last_out(log)


def _history(rows, user):
    """The user's items before their test item, most recent last, as the service receives them."""
    mine = rows[rows[:, 0] == user]
    return mine[np.argsort(mine[:, 2].astype(float), kind="stable"), 1][-L - 1 : -1]


def test_sequential_resume_continues_the_interrupted_run(world, tmp_path):
    config = _config(world, tmp_path, "interrupted", epochs=3, encoder="average", last_n=4, full_softmax=False)
    with pytest.raises(KeyboardInterrupt):
        run(config, callbacks=[Interrupt(after=2)])
    resumed = run(config, resume=True)
    history = resumed.metrics["training"]["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]  # epochs 1-2 from the first process, 3 resumed
    test = resumed.metrics["test"]
    assert test["model"]["excluding_train"]["recall@10"] > 2 * test["popularity"]["excluding_train"]["recall@10"]


def test_refit_on_validation_trains_on_validation_events_for_exactly_the_given_epochs(world, tmp_path):
    selected = run(_config(world, tmp_path, "selected", epochs=2, encoder="average", last_n=4))
    base = _config(world, tmp_path, "refit", epochs=3, encoder="average", last_n=4)
    refit = dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, refit_on_validation=True),
        train=dataclasses.replace(base.train, patience=1),  # nothing to be patient about without validation
        export=dataclasses.replace(base.export, enabled=False),
    )
    refitted = run(refit)
    before, after = selected.metrics["data"], refitted.metrics["data"]
    assert after["validation"] == 0 and after["train"] == before["train"] + before["validation"]
    np.testing.assert_array_equal(refitted.data.test.items, selected.data.test.items)
    np.testing.assert_array_equal(refitted.data.test_exclusions.indices, selected.data.test_exclusions.indices)
    training = refitted.metrics["training"]
    assert [row["epoch"] for row in training["history"]] == [1, 2, 3]
    assert not any(key.startswith("val_") for row in training["history"] for key in row)
    assert (training["best_epoch"], training["stopped_early"]) == (3, False)
    assert not (refitted.run_dir / "best.weights.h5").exists()  # the last epoch's weights are the model
    log = np.loadtxt(world / "log.csv", delimiter=",", skiprows=1, dtype=str)
    windows = sequence_data(*_log_and_split(log), selected.data, refit.sequence).train
    log_rows, split = _log_and_split(log)
    refit_windows = sequence_data(log_rows, refit_split(split), refitted.data, refit.sequence).train
    assert refit_windows.lengths.sum() == windows.lengths.sum() + before["validation"]


def test_bad_sequence_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"sequence.encoder must be one of .* got 'lstm'"):
        check_config(SequenceConfig(encoder="lstm"))
    with pytest.raises(ValueError, match="max_length >= 1"):
        check_config(SequenceConfig(max_length=0))
    config = {"data": {"source": "synthetic"}, "model": {"tower": "three"}, "output_dir": str(tmp_path)}
    with pytest.raises(ValueError, match=r"config field model.tower: 'three' is not one of 'two-tower', 'sequential'"):
        run(build_config(config))


def test_sequential_causal_transformer_trains_under_mixed_precision(world, tmp_path):
    config = _config(world, tmp_path, "mixed", objective="causal", tied_item_embeddings=False, stride=4)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, mixed_precision=True))
    result = run(config)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the policy is the run's only
    test = result.metrics["test"]
    model, popularity = test["model"]["excluding_train"], test["popularity"]["excluding_train"]
    assert model["recall@10"] > 0.5, model
    assert model["recall@10"] > 4 * popularity["recall@10"]
    history = result.metrics["training"]["history"]
    assert all(np.isfinite(row["loss"]) for row in history)

    bundle = open_bundle(result.bundle)
    served, offline = _served_and_offline(world, result, config, bundle)
    assert served.dtype == np.float32
    # the same weights; the offline encoder computes in float16 (mixed precision), so they agree to its rounding
    np.testing.assert_allclose(served, offline, atol=1e-3)
