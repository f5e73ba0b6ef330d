import keras
import numpy as np

from model.layers import MaskedMeanPooling, Standardize
from tests.helpers import assert_close, save_load_model, serialize_round_trip


def test_standardize_hand_computed_and_nan_to_zero():
    layer = Standardize(mean=10.0, std=4.0)
    out = layer(np.array([14.0, 2.0, np.nan, np.inf], dtype="float32"))
    assert_close(out, [[1.0], [-2.0], [0.0], [0.0]])


def test_masked_mean_pooling_ignores_padding():
    emb = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 5.0], [7.0, 7.0], [9.0, 9.0]]], "float32")
    idx = np.array([[3, 4, 0], [0, 0, 0]])
    assert_close(MaskedMeanPooling()(emb, idx), [[2.0, 3.0], [0.0, 0.0]])


def test_layers_in_functional_model_round_trip_and_save_load(tmp_path):
    x = keras.Input(shape=(), dtype="float32", name="x")
    e = keras.Input(shape=(3, 2), dtype="float32", name="e")
    i = keras.Input(shape=(3,), dtype="int32", name="i")
    out = keras.layers.Concatenate()([Standardize(1.5, 2.5)(x), MaskedMeanPooling(padding_index=7)(e, i)])
    model = keras.Model({"x": x, "e": e, "i": i}, out)
    inputs = {
        "x": np.array([4.0, -1.0], "float32"),
        "e": np.arange(12, dtype="float32").reshape(2, 3, 2),
        "i": np.array([[7, 1, 2], [1, 7, 7]]),
    }
    expected = [[1.0, 3.0, 4.0], [-1.0, 6.0, 7.0]]
    assert_close(model(inputs), expected)
    assert_close(save_load_model(model, tmp_path)(inputs), expected)
    assert serialize_round_trip(Standardize(mean=3.0, std=0.5)).std == 0.5
    assert serialize_round_trip(MaskedMeanPooling(padding_index=5)).padding_index == 5
