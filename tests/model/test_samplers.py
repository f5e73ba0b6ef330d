import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from model.samplers import (
    CountedFrequency,
    CrossBatchSampler,
    InBatchSampler,
    MixedSampler,
    PopularitySampler,
    StreamingFrequency,
)
from tests.helpers import assert_close, serialize_round_trip


def _encoder(ids):
    return tf.cast(tf.stack([ids, -ids], axis=1), tf.float32)


def test_popularity_sampler_matches_its_probabilities_chi_square():
    counts = np.array([50.0, 20.0, 10.0, 10.0, 5.0, 5.0])
    sampler = PopularitySampler.from_counts(counts, num_samples=20_000, seed=3)
    ids = np.asarray(sampler.draw())
    observed = np.bincount(ids, minlength=6)
    expected = np.asarray(sampler.probabilities) * ids.size
    _, p_value = stats.chisquare(observed, expected)
    assert p_value > 1e-3
    assert_close(np.exp(np.asarray(sampler.log_q(np.arange(6)))), (counts + 1) / (counts + 1).sum())


def test_log_uniform_sampler_is_zipfian_over_frequency_ranks():
    counts = np.array([1.0, 100.0, 10.0])  # ranks: item 1 -> 0, item 2 -> 1, item 0 -> 2
    sampler = PopularitySampler.log_uniform(counts, num_samples=30_000, seed=4)
    expected = np.array([np.log(4 / 3), np.log(2), np.log(3 / 2)]) / np.log(4)
    assert_close(sampler.probabilities, expected)
    observed = np.bincount(np.asarray(sampler.draw()), minlength=3)
    assert stats.chisquare(observed, expected * 30_000).pvalue > 1e-3


def test_popularity_negatives_come_from_the_item_tower_with_exact_log_q():
    sampler = PopularitySampler([0.0, 1.0, 3.0], num_samples=8, seed=0)
    negatives = sampler.sample(None, None, _encoder)
    ids = np.asarray(negatives.ids)
    assert set(ids.tolist()) <= {1, 2}
    assert_close(negatives.embeddings, np.stack([ids, -ids], 1))
    assert_close(negatives.log_q, np.log(np.where(ids == 1, 0.25, 0.75)))


def test_memory_bank_is_fifo_with_capacity():
    bank = CrossBatchSampler(capacity=4, embedding_dim=2)
    bank.update(np.array([1, 2, 3]), np.array([[1, 1], [2, 2], [3, 3]], "float32"))
    ids, emb = bank.contents()
    np.testing.assert_array_equal(np.asarray(ids), [1, 2, 3])
    bank.update(np.array([4, 5]), np.array([[4, 4], [5, 5]], "float32"))
    ids, emb = bank.contents()
    np.testing.assert_array_equal(np.asarray(ids), [2, 3, 4, 5])  # 1 was evicted first
    assert_close(emb, [[2, 2], [3, 3], [4, 4], [5, 5]])
    bank.update(np.arange(10, 16), np.zeros((6, 2), "float32"))  # a batch larger than the bank
    np.testing.assert_array_equal(np.asarray(bank.contents()[0]), [12, 13, 14, 15])


def test_memory_bank_marks_empty_slots_and_warmup_invalid():
    bank = CrossBatchSampler(capacity=3, embedding_dim=2, warmup_steps=2)
    bank.update(np.array([7]), np.ones((1, 2), "float32"))
    assert not np.asarray(bank.sample(None, None, _encoder).valid).any()  # still warming up
    bank.update(np.array([8]), np.ones((1, 2), "float32"))
    np.testing.assert_array_equal(np.asarray(bank.sample(None, None, _encoder).valid), [True, True, False])


def test_no_gradient_flows_into_the_memory_bank():
    bank = CrossBatchSampler(capacity=2, embedding_dim=2)
    x = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
    bank.update(np.array([1, 2]), x)
    with tf.GradientTape() as tape:
        negatives = bank.sample(None, None, _encoder)
        loss = tf.reduce_sum(negatives.embeddings * x)
    assert tape.gradient(loss, x) is not None  # x itself is used directly...
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(bank.sample(None, None, _encoder).embeddings)
    assert tape.gradient(loss, x) is None  # ...but nothing flows back through the bank
    assert not bank.trainable_weights


def test_in_batch_sampler_uses_positives_and_frequency():
    counts = np.array([3.0, 1.0, 0.0])
    sampler = InBatchSampler(CountedFrequency(counts, smoothing=1.0))
    emb = np.eye(3, dtype="float32")
    negatives = sampler.sample(np.array([0, 1]), emb[:2], _encoder)
    np.testing.assert_array_equal(np.asarray(negatives.ids), [0, 1])
    assert_close(np.exp(np.asarray(negatives.log_q)), [4 / 7, 2 / 7])
    assert not InBatchSampler().provides_probabilities


def test_streaming_frequency_estimates_per_batch_probability():
    est = StreamingFrequency(num_items=3, alpha=0.1)
    for step in range(1, 3001):
        ids = [0] + ([1] if step % 4 == 0 else [])  # item 0 every batch, item 1 every 4th, item 2 never
        est.update(np.array(ids))
    p = np.exp(np.asarray(est.log_probability(np.arange(3))))
    assert p[0] == pytest.approx(1.0, abs=0.02)
    assert p[1] == pytest.approx(0.25, abs=0.02)
    assert p[2] == pytest.approx(1 / 1000)


def test_mixed_sampler_concatenates_and_requires_all_probabilities():
    freq = CountedFrequency([1.0, 1.0, 1.0, 1.0])
    mixed = MixedSampler([InBatchSampler(freq), PopularitySampler([1, 1, 1, 1], num_samples=3, seed=0)])
    negatives = mixed.sample(np.array([0, 1]), np.zeros((2, 2), "float32"), _encoder)
    assert np.asarray(negatives.ids).shape == (5,)
    assert np.asarray(negatives.log_q).shape == (5,)
    assert mixed.provides_probabilities
    assert not MixedSampler([InBatchSampler(), PopularitySampler([1.0], 1)]).provides_probabilities
    bank = CrossBatchSampler(capacity=2, embedding_dim=2)
    valid = MixedSampler([InBatchSampler(), bank]).sample(np.array([0]), np.zeros((1, 2), "float32"), _encoder).valid
    np.testing.assert_array_equal(np.asarray(valid), [True, False, False])


def test_samplers_config_round_trip_with_non_default_values():
    freq = StreamingFrequency(num_items=5, alpha=0.2, initial_gap=50.0)
    samplers = [
        CountedFrequency([1.0, 2.0], smoothing=0.5),
        freq,
        InBatchSampler(CountedFrequency([4.0, 5.0], smoothing=2.0)),
        CrossBatchSampler(capacity=7, embedding_dim=3, frequency=freq, warmup_steps=5),
        PopularitySampler([0.2, 0.8], num_samples=11, seed=9),
        MixedSampler([InBatchSampler(freq), PopularitySampler([0.5, 0.5], num_samples=2, seed=1)]),
    ]
    for sampler in samplers:
        serialize_round_trip(sampler)


def test_sampler_state_save_and_load(tmp_path):
    bank = CrossBatchSampler(capacity=3, embedding_dim=2)
    bank.update(np.array([4, 5]), np.array([[1, 2], [3, 4]], "float32"))
    path = str(tmp_path / "bank.weights.h5")
    holder = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    holder.bank = bank
    holder.save_weights(path)
    fresh = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    fresh.bank = CrossBatchSampler(capacity=3, embedding_dim=2)
    fresh.load_weights(path)
    np.testing.assert_array_equal(np.asarray(fresh.bank.contents()[0]), [4, 5])
    assert_close(fresh.bank.contents()[1], [[1, 2], [3, 4]])
