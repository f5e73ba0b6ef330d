"""export_bundle -> open_bundle round trip, atomicity, versioning, and precise refusals of broken bundles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import faiss
import keras
import numpy as np
import pytest
import tensorflow as tf

from model.bundle import export as export_module
from model.bundle.export import export_bundle
from model.bundle.index import IndexSpec
from model.bundle.manifest import sha256_file
from model.bundle.reader import BundleError, latest_version, list_versions, open_bundle
from model.bundle.reserved import HISTORY_FEATURE, OUTPUT_KEY, RESERVED_INPUTS, USER_ID_FEATURE
from model.evaluation import exact_top_k
from model.features import CategoricalFeature, NumericFeature, TowerSpec
from model.towers import build_tower

NUM_ITEMS, DIM = 300, 16
SPEC = TowerSpec(
    name="query",
    features=(
        CategoricalFeature("user_id", tuple(f"u{i}" for i in range(20)), embedding_dim=8, num_oov_buckets=2),
        CategoricalFeature("genres", ("drama", "comedy", "horror"), embedding_dim=4, max_values=3),
        NumericFeature("age", mean=30.0, std=12.0),
    ),
    hidden_units=(12,),
    output_dim=DIM,
)
# Includes an unknown user id, an unknown genre, padding only, and a NaN age.
FEATURES = {
    "user_id": np.array(["u1", "u19", "stranger", "u3"]),
    "genres": np.array([["drama", "", ""], ["comedy", "horror", ""], ["unseen", "drama", ""], ["", "", ""]]),
    "age": np.array([25.0, 61.5, np.nan, 18.0], dtype=np.float32),
}


def _export(models_dir: Path, name: str = "movies", **overrides) -> tuple[Path, dict]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    kwargs = {
        "query_tower": build_tower(SPEC),
        "query_spec": SPEC,
        "item_embeddings": rng.standard_normal((NUM_ITEMS, DIM)).astype(np.float32),
        "item_ids": np.array([f"item{i:03d}" for i in range(NUM_ITEMS)]),
        "popularity": rng.integers(0, 1000, NUM_ITEMS),
        "index_spec": IndexSpec("Flat"),
        "similarity": "dot",
        "metrics": {"recall@10": np.float32(0.25), "ks": [10, 100]},
        "display": {"title": np.array([f"Title {i}" for i in range(NUM_ITEMS)], dtype=object)},
        **overrides,
    }
    return export_bundle(models_dir, name, **kwargs), kwargs


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _export(tmp_path_factory.mktemp("models"))


@pytest.fixture
def bundle_copy(exported, tmp_path: Path) -> Path:
    """A private copy of the exported bundle, for tests that break it."""
    return Path(shutil.copytree(exported[0], tmp_path / "movies" / "1"))


def test_manifest_fields(exported) -> None:
    path, _ = exported
    manifest = open_bundle(path).manifest
    assert (path.name, manifest.model_name, manifest.model_version) == ("1", "movies", 1)
    assert (manifest.embedding_dim, manifest.item_count, manifest.similarity) == (DIM, NUM_ITEMS, "dot")
    assert manifest.query_tower == SPEC and manifest.display_columns == ("title",)
    assert manifest.index == IndexSpec("Flat")
    assert (manifest.index_recall.k, manifest.index_recall.num_queries, manifest.index_recall.recall) == (100, 300, 1.0)
    assert manifest.metrics == {"recall@10": 0.25, "ks": [10, 100]}
    assert datetime.now(datetime.fromisoformat(manifest.created_at).tzinfo) - datetime.fromisoformat(
        manifest.created_at
    ) < timedelta(minutes=5)
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest.files) == on_disk and "query_tower/variables/variables.index" in on_disk
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind


def test_items_embeddings_and_index_round_trip(exported) -> None:
    path, kwargs = exported
    bundle = open_bundle(path)
    items = bundle.load_items()
    assert items.ids.tolist() == kwargs["item_ids"].tolist()
    np.testing.assert_array_equal(items.popularity, kwargs["popularity"])
    assert items.popularity.dtype == np.int64 and items.display["title"][7] == "Title 7"
    embeddings = bundle.load_item_embeddings()
    np.testing.assert_array_equal(embeddings, kwargs["item_embeddings"])
    queries = np.random.default_rng(1).standard_normal((20, DIM)).astype(np.float32)
    _, found = bundle.load_index().search(queries, 10)
    expected, _ = exact_top_k(queries, embeddings, 10, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(found, expected)


def test_query_tower_matches_keras(exported) -> None:
    path, kwargs = exported
    encoder = open_bundle(path).load_query_tower()
    out = encoder(FEATURES)
    assert out.shape == (4, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(out, kwargs["query_tower"](FEATURES).numpy(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="differ from the tower inputs"):
        encoder({"user_id": FEATURES["user_id"]})
    with pytest.raises(ValueError, match="feature 'user_id': shape"):
        encoder({**FEATURES, "user_id": np.asarray(FEATURES["user_id"])[:, None]})
    # The flat call of the concrete function (the serving path) equals the signature's structured call.
    structured = encoder._signature(
        **{k: tf.constant(v, dtype=encoder.input_specs[k].dtype) for k, v in FEATURES.items()}
    )
    np.testing.assert_array_equal(out, structured[OUTPUT_KEY].numpy())
    assert encoder._flat


def test_saved_model_loads_with_plain_tensorflow(exported) -> None:
    """A process that imports only TensorFlow (no Keras custom objects) can serve the signature."""
    path, kwargs = exported
    script = (
        "import json, sys, tensorflow as tf\n"
        "f = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = f(user_id=tf.constant(['stranger', 'u1']), genres=tf.constant([['drama', '', ''], ['', '', '']]),"
        " age=tf.constant([40.0, 20.0]))['embedding']\n"
        "print(json.dumps(out.numpy().tolist()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path / "query_tower")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    features = {
        "user_id": np.array(["stranger", "u1"]),
        "genres": np.array([["drama", "", ""], ["", "", ""]]),
        "age": np.array([40.0, 20.0], dtype=np.float32),
    }
    np.testing.assert_allclose(
        json.loads(done.stdout.splitlines()[-1]), kwargs["query_tower"](features).numpy(), atol=1e-5
    )


def test_cosine_bundle_normalises_items_and_queries(tmp_path: Path) -> None:
    path, kwargs = _export(tmp_path, similarity="cosine", index_spec=IndexSpec("HNSW8", ef_search=64))
    bundle = open_bundle(path)
    embeddings = bundle.load_item_embeddings()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    raw = kwargs["item_embeddings"]
    np.testing.assert_allclose(embeddings, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    out = bundle.load_query_tower()(FEATURES)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    keras_out = kwargs["query_tower"](FEATURES).numpy()
    np.testing.assert_allclose(out, keras_out / np.linalg.norm(keras_out, axis=1, keepdims=True), atol=1e-5)
    index = bundle.load_index()
    assert isinstance(index, faiss.IndexHNSWFlat) and index.hnsw.efSearch == 64
    assert bundle.manifest.index_recall.recall > 0.9


def test_crash_mid_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_writer(index, path: str) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(export_module.faiss, "write_index", broken_writer)
    with pytest.raises(OSError, match="disk full"):
        _export(tmp_path)
    assert list((tmp_path / "movies").iterdir()) == []
    assert list_versions(tmp_path / "movies") == [] and latest_version(tmp_path / "movies") is None


def test_versions_auto_increment_and_never_overwrite(tmp_path: Path, exported) -> None:
    model_dir = tmp_path / "movies"
    shutil.copytree(exported[0], model_dir / "4")
    for name in (".tmp-abc", "007", "0", "latest"):
        (model_dir / name).mkdir()
    (model_dir / "9").write_text("a file, not a version")
    assert list_versions(model_dir) == [4]
    path, _ = _export(tmp_path)
    assert path == model_dir / "5" and open_bundle(path).manifest.model_version == 5
    assert list_versions(model_dir) == [4, 5] and latest_version(model_dir) == 5
    with pytest.raises(FileExistsError, match="version 4 already exists"):
        _export(tmp_path, version=4)
    with pytest.raises(ValueError, match="version must be a positive integer, got 0"):
        _export(tmp_path, version=0)
    assert list_versions(model_dir) == [4, 5]


def _rewrite_manifest(path: Path, **changes) -> None:
    data = json.loads((path / "manifest.json").read_text())
    data.update(changes)
    (path / "manifest.json").write_text(json.dumps(data))


def test_bad_checksum(bundle_copy: Path) -> None:
    file = bundle_copy / "item_embeddings.npy"
    data = bytearray(file.read_bytes())
    data[-5] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"^item_embeddings.npy: sha256 mismatch"):
        open_bundle(bundle_copy)
    open_bundle(bundle_copy, verify_checksums=False)  # structurally still fine


def test_missing_file(bundle_copy: Path) -> None:
    (bundle_copy / "items.parquet").unlink()
    with pytest.raises(BundleError, match=r"^items.parquet: listed in the manifest but missing"):
        open_bundle(bundle_copy)


def test_unlisted_required_file(bundle_copy: Path) -> None:
    data = json.loads((bundle_copy / "manifest.json").read_text())
    del data["files"]["index.faiss"]
    _rewrite_manifest(bundle_copy, files=data["files"])
    with pytest.raises(BundleError, match=r"^manifest.json: files does not list required file index.faiss"):
        open_bundle(bundle_copy)


def test_wrong_dim_fires_the_shape_check(bundle_copy: Path) -> None:
    file = bundle_copy / "item_embeddings.npy"
    np.save(file, np.zeros((NUM_ITEMS, 8), dtype=np.float32))
    files = json.loads((bundle_copy / "manifest.json").read_text())["files"]
    _rewrite_manifest(bundle_copy, files={**files, "item_embeddings.npy": sha256_file(file)})
    with pytest.raises(BundleError, match=r"^item_embeddings.npy: shape \(300, 8\) float32, manifest says \(300, 16\)"):
        open_bundle(bundle_copy)


def test_garbage_manifest(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").write_bytes(b"\x00{not json")
    with pytest.raises(BundleError, match=r"^manifest.json: not valid JSON"):
        open_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 2}, r"format_version: this reader understands 1, got 2"),
        ({"embedding_dim": "16"}, r"embedding_dim: expected int, got str"),
        ({"similarity": "l2"}, r"similarity: expected one of \('dot', 'cosine'\), got 'l2'"),
        ({"created_at": "2024-01-01T00:00:00+02:00"}, r"created_at: must be in UTC"),
        ({"model_version": 3}, r"model_version 3 != directory 1"),
        ({"files": {"../escape": "0" * 64}}, r"files: '../escape' is not a plain relative path"),
        ({"extra": 1}, r"manifest: unknown field\(s\) \['extra'\]"),
        ({"reserved_inputs": {"user_id": "uid", "history": "history"}}, r"reserved_inputs\['user_id'\]: .* 'uid'"),
        ({"reserved_inputs": {"user_id": "user_id"}}, r"reserved_inputs: expected the roles \['history', 'user_id'\]"),
        ({"reserved_inputs": ["user_id"]}, r"reserved_inputs: expected dict, got list"),
    ],
)
def test_bad_manifest_fields(bundle_copy: Path, changes: dict, message: str) -> None:
    _rewrite_manifest(bundle_copy, **changes)
    with pytest.raises(BundleError, match=r"^manifest.json: .*" + message):
        open_bundle(bundle_copy)


def test_reserved_inputs_recorded_and_defaulted(bundle_copy: Path) -> None:
    """The manifest records the reserved query-tower inputs; a manifest written before it did reads as the same."""
    data = json.loads((bundle_copy / "manifest.json").read_text())
    assert data["reserved_inputs"] == {"user_id": USER_ID_FEATURE, "history": HISTORY_FEATURE}
    assert open_bundle(bundle_copy).manifest.reserved_inputs == data["reserved_inputs"]
    del data["reserved_inputs"]
    (bundle_copy / "manifest.json").write_text(json.dumps(data))
    assert open_bundle(bundle_copy).manifest.reserved_inputs == dict(RESERVED_INPUTS)


def test_truncated_index(bundle_copy: Path) -> None:
    file = bundle_copy / "index.faiss"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"^index.faiss: sha256 mismatch"):
        open_bundle(bundle_copy)
    bundle = open_bundle(bundle_copy, verify_checksums=False)  # the header survives; the loader refuses
    with pytest.raises(BundleError, match=r"^index.faiss: cannot read the FAISS index"):
        bundle.load_index()
    file.write_bytes(data[:10])
    with pytest.raises(BundleError, match=r"^index.faiss: truncated \(10 bytes"):
        open_bundle(bundle_copy, verify_checksums=False)


def test_items_row_count_and_missing_directory(bundle_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bundle directory does not exist"):
        open_bundle(tmp_path / "nowhere")
    _rewrite_manifest(bundle_copy, item_count=NUM_ITEMS + 1)
    with pytest.raises(BundleError, match=r"^item_embeddings.npy: shape \(300, 16\) float32, manifest says \(301"):
        open_bundle(bundle_copy, verify_checksums=False)
