"""Sequence encoders and their layers: hand-computed answers, padding and causality, serialization, save/load."""

import keras
import numpy as np
import pytest

from model.sequence import (
    CompactHistory,
    GatherPositions,
    HistoryAverageEncoder,
    QueryHead,
    QueryInputs,
    TransformerBlock,
    TransformerSequenceEncoder,
)
from tests.helpers import assert_close, save_load_model, serialize_round_trip

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 5, 8)).astype("float32")
REAL = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)  # left, full, right padded
CONTEXT = RNG.normal(size=(3, 4)).astype("float32")


def test_history_average_hand_computed():
    out = np.asarray(HistoryAverageEncoder(last_n=2)(X, REAL))
    assert_close(out[0, 2], X[0, 2])  # the padding before it is not averaged
    assert_close(out[1, 3], (X[1, 2] + X[1, 3]) / 2)
    assert_close(out[2, 1], (X[2, 0] + X[2, 1]) / 2)
    assert_close(out[2, 3], np.zeros(8))  # padding positions are zeros


ENCODERS = [
    lambda: HistoryAverageEncoder(last_n=3, hidden_units=(6,), output_dim=5),
    lambda: TransformerSequenceEncoder(5, 8, num_layers=2, num_heads=2, dropout=0.2, output_dim=5),
    lambda: TransformerSequenceEncoder(5, 8, num_layers=1, num_heads=4, causal=True, hidden_units=(6,)),
]


@pytest.mark.parametrize("make", ENCODERS)
def test_padded_values_change_nothing(make):
    encoder = make()
    noisy = np.where(REAL[..., None], X, RNG.normal(size=X.shape) * 100).astype("float32")
    expected = np.asarray(encoder(X, REAL, CONTEXT))
    assert_close(encoder(noisy, REAL, CONTEXT), expected)
    assert np.all(expected[~REAL] == 0)


def _change_last_position():
    later = X.copy()
    later[:, 4] = RNG.normal(size=(3, 8)) * 3
    return later


@pytest.mark.parametrize("make", ENCODERS[::2])
def test_causal_encoders_do_not_look_ahead(make):
    encoder, full = make(), np.ones_like(REAL)
    assert_close(
        np.asarray(encoder(X, full, CONTEXT))[:, :4], np.asarray(encoder(_change_last_position(), full, CONTEXT))[:, :4]
    )


def test_bidirectional_encoder_looks_ahead_and_checks_sizes():
    encoder = TransformerSequenceEncoder(5, 8, dropout=0.0)
    before, after = np.asarray(encoder(X, REAL)), np.asarray(encoder(_change_last_position(), REAL))
    assert not np.allclose(before[:2, 3], after[:2, 3], atol=1e-3)
    with pytest.raises(ValueError, match="expects dim=8"):
        TransformerSequenceEncoder(5, 8)(X[..., :4], REAL)
    with pytest.raises(ValueError, match="divisible"):
        TransformerSequenceEncoder(5, 8, num_heads=3)


def test_query_head_identity_and_context():
    assert_close(QueryHead()(X), X)
    head = QueryHead(output_dim=2)
    out = head(X, CONTEXT)
    kernel, bias = (np.asarray(w) for w in head.projection.weights)
    expected = np.concatenate([X, np.broadcast_to(CONTEXT[:, None], (3, 5, 4))], -1) @ kernel + bias
    assert_close(out, expected)


def test_serialization_round_trips_with_non_default_arguments():
    layers = [
        QueryHead(hidden_units=(7, 3), output_dim=4, dropout=0.3),
        HistoryAverageEncoder(last_n=4, hidden_units=(9,), output_dim=6, dropout=0.1),
        TransformerBlock(dim=8, num_heads=4, ff_dim=12, dropout=0.3, epsilon=1e-3),
        TransformerSequenceEncoder(
            7,
            8,
            num_layers=3,
            num_heads=4,
            ff_dim=10,
            dropout=0.3,
            causal=True,
            hidden_units=(5,),
            output_dim=6,
            epsilon=1e-4,
        ),
        CompactHistory(max_length=6, padding="right"),
        QueryInputs(mask_token=17, append_mask=False, padding="right"),
        GatherPositions(name="gather"),
    ]
    for layer in layers:
        serialize_round_trip(layer)


def test_save_load_in_functional_model(tmp_path):
    tokens = keras.Input(shape=(6,), dtype="int64", name="tokens")
    context = keras.Input(shape=(4,), dtype="float32", name="context")
    packed, real = CompactHistory(5)(tokens)
    inputs, mask, positions = QueryInputs(mask_token=20, append_mask=True)(packed, real)
    embedded = keras.layers.Embedding(21, 8)(inputs)
    transformer = TransformerSequenceEncoder(5, 8, num_layers=2, num_heads=2, ff_dim=16, hidden_units=(6,))
    average = HistoryAverageEncoder(last_n=2, hidden_units=(6,), output_dim=8)
    states = transformer(average(embedded, mask, context), mask, context)
    model = keras.Model({"tokens": tokens, "context": context}, GatherPositions()(states, positions))
    data = {"tokens": np.array([[0, 3, 0, 4, 5, 0], [7, 0, 0, 0, 0, 0], [3, 4, 5, 6, 7, 8]]), "context": CONTEXT}
    expected = np.asarray(model(data))
    assert expected.shape == (3, 8)
    assert_close(save_load_model(model, tmp_path)(data), expected)
