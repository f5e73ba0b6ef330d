import keras
import numpy as np

from model.features import CategoricalFeature, EmbeddingDimRule, NumericFeature, TowerSpec
from model.towers import build_tower
from tests.helpers import assert_close, save_load_model

SPEC = TowerSpec(
    "query",
    (
        CategoricalFeature("user_id", ("a", "b", "c"), num_oov_buckets=2),
        CategoricalFeature("genres", ("x", "y"), max_values=3, embedding_dim=4),
        NumericFeature("age", mean=30.0, std=10.0),
    ),
    hidden_units=(8,),
    output_dim=5,
    dropout=0.1,
    l2_normalize=True,
    embedding_rule=EmbeddingDimRule(default_dim=6),
)
INPUTS = {
    "user_id": np.array(["a", "unknown-user"]),
    "genres": np.array([["x", "y", ""], ["", "", ""]]),
    "age": np.array([20.0, np.nan], "float32"),
}


def test_tower_shapes_normalisation_and_embedding_sizes():
    tower = build_tower(SPEC)
    out = np.asarray(tower(INPUTS))
    assert out.shape == (2, 5)
    assert_close(np.linalg.norm(out, axis=1), [1.0, 1.0])
    assert tower.get_layer("query_user_id_embedding").embeddings.shape == (5, 6)  # 3 + 2 OOV rows, rule dim
    assert tower.get_layer("query_genres_embedding").embeddings.shape == (4, 4)  # pad + 1 OOV + 2


def test_unknown_ids_use_out_of_vocabulary_rows_not_errors():
    tower = build_tower(SPEC)
    out = np.asarray(tower({**INPUTS, "user_id": np.array(["zzz", "never-seen"])}))
    assert np.all(np.isfinite(out))


def test_tower_save_load_gives_identical_outputs(tmp_path):
    tower = build_tower(SPEC)
    restored = save_load_model(tower, tmp_path)
    assert_close(restored(INPUTS), tower(INPUTS), atol=1e-6)


def test_dropout_only_in_training():
    tower = build_tower(TowerSpec("item", (NumericFeature("x"),), hidden_units=(64,), output_dim=4, dropout=0.5))
    INPUTS = {"x": np.array([1.0, 2.0], "float32")}
    assert_close(tower(INPUTS, training=False), tower(INPUTS, training=False), atol=0)
    keras.utils.set_random_seed(1)
    assert not np.allclose(tower(INPUTS, training=True), tower(INPUTS, training=False))
