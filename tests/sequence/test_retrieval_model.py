"""The sequential model learns planted next-item structure; the served query tower matches the offline one."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from model.bundle.export import export_bundle
from model.bundle.index import IndexSpec
from model.bundle.reader import open_bundle
from model.bundle.reserved import HISTORY_FEATURE
from model.catalog import ItemCatalog
from model.evaluation import Exclusions, evaluate_embeddings, evaluate_scores, popularity_scores
from model.features import CategoricalFeature, TowerSpec
from model.samplers import CountedFrequency, InBatchSampler, MixedSampler, PopularitySampler
from model.scorer import FALSE_NEGATIVE_SCORE, ContrastiveScorer
from model.sequence import (
    ITEM_OFFSET,
    CausalObjective,
    HistoryAverageEncoder,
    MaskedItemObjective,
    Padding,
    SequenceVocabulary,
    SequentialRetrievalModel,
    TransformerSequenceEncoder,
    build_query_model,
    build_sequences,
    query_spec,
    sequence_dataset,
)
from model.sequence.catalog_sampler import FullCatalogSampler
from model.towers import build_tower
from tests.helpers import assert_close

NUM_ITEMS, NUM_CLUSTERS, NUM_USERS, EVENTS, L, DIM = 200, 10, 500, 12, 10, 32


def _world():
    """Each user walks through one cluster of consecutive items: item i is followed by i + 1 (10% noise)."""
    rng = np.random.default_rng(0)
    size = NUM_ITEMS // NUM_CLUSTERS
    cluster = rng.integers(NUM_CLUSTERS, size=NUM_USERS)
    start = rng.integers(size, size=NUM_USERS)
    step = np.arange(EVENTS)
    items = cluster[:, None] * size + (start[:, None] + step) % size
    noise = rng.random(items.shape) < 0.1
    items = np.where(noise, rng.integers(NUM_ITEMS, size=items.shape), items)
    users = np.repeat(np.arange(NUM_USERS), EVENTS)
    return users, items.reshape(-1), np.tile(step, NUM_USERS).astype(float), cluster


USERS, ITEMS, TIMES, CLUSTER = _world()
HISTORY = TIMES < EVENTS - 1  # the last event of every user is held out
TARGETS = ITEMS[~HISTORY]
COUNTS = np.bincount(ITEMS[HISTORY], minlength=NUM_ITEMS)
EXTERNAL = np.array([f"item{i}" for i in range(NUM_ITEMS)], dtype=object)
CATALOG = ItemCatalog(EXTERNAL, {"item_id": EXTERNAL.astype(str)}, COUNTS)
SEGMENTS = np.array([f"s{c}" for c in CLUSTER], dtype=object)


def _sequences(padding=Padding.LEFT, stride=None, max_length=L):
    args = (USERS[HISTORY], ITEMS[HISTORY], TIMES[HISTORY])
    return build_sequences(*args, num_users=NUM_USERS, max_length=max_length, padding=padding, stride=stride)


def _history_strings(sequences, width):
    """The histories as the service sends them: external ids, most recent last, "" padding on the right."""
    rows = []
    for tokens, real in zip(sequences.tokens, sequences.padding_mask, strict=True):
        ids = [str(EXTERNAL[t - 2]) for t in tokens[real]][-width:]
        rows.append(ids + [""] * (width - len(ids)))
    return tf.constant(rows)


@pytest.fixture(scope="module")
def masked_model():
    keras.utils.set_random_seed(0)
    model = SequentialRetrievalModel(
        keras.layers.Embedding(SequenceVocabulary(NUM_ITEMS).size, DIM),
        TransformerSequenceEncoder(L, DIM, num_layers=1, num_heads=2, dropout=0.1),
        CATALOG,
        InBatchSampler(CountedFrequency(COUNTS)),
        ContrastiveScorer(temperature=0.1, logq_correction=True),
        MaskedItemObjective(p=0.3),
        max_length=L,
        l2_normalize=True,
        seed=1,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.005))
    history = model.fit(
        sequence_dataset(_sequences(stride=4), batch_size=128, seed=0), epochs=8, verbose=0, shuffle=False
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
    return model


def test_masked_transformer_learns_next_items(masked_model):
    histories = _sequences()
    queries = masked_model.query_embeddings(histories.tokens, histories.padding_mask)
    exclude = Exclusions.from_pairs(USERS[HISTORY], ITEMS[HISTORY], NUM_USERS)
    model = evaluate_embeddings(queries, masked_model.item_embeddings(), TARGETS, ks=(10,), exclude=exclude)
    popularity = evaluate_scores(popularity_scores(COUNTS), TARGETS, ks=(10,), exclude=exclude)
    assert popularity["recall@10"] < 0.1
    assert model["recall@10"] > 0.6, model


def test_served_embedding_equals_offline_and_exports(masked_model, tmp_path):
    histories = _sequences()
    offline = masked_model.query_embeddings(histories.tokens, histories.padding_mask)
    width = L + 3  # wider than the model's window: only the latest L items count
    tower = build_query_model(masked_model, history_length=width)
    strings = _history_strings(histories, width)
    assert_close(tower({HISTORY_FEATURE: strings}), offline, atol=1e-5)
    unknown = tf.constant([["item3", "no-such-item", ""] + [""] * (width - 3)])
    assert np.all(np.isfinite(np.asarray(tower({HISTORY_FEATURE: unknown}))))  # OOV ids are not errors

    spec = query_spec(masked_model, history_length=width)
    directory = export_bundle(
        tmp_path,
        "sequential",
        query_tower=tower,
        query_spec=spec,
        item_embeddings=masked_model.item_embeddings(),
        item_ids=EXTERNAL.astype(str),
        popularity=COUNTS,
        index_spec=IndexSpec(factory="Flat"),
        similarity="cosine",
        metrics={},
    )
    served = tf.saved_model.load(str(directory / "query_tower")).signatures["serving_default"]
    assert_close(served(**{HISTORY_FEATURE: strings[:50]})["embedding"], offline[:50], atol=1e-5)
    assert open_bundle(directory).manifest.query_tower.feature(HISTORY_FEATURE).max_values == width


def test_history_average_with_context_and_separate_item_tower():
    keras.utils.set_random_seed(1)
    context_spec = TowerSpec("user", (CategoricalFeature("segment", tuple(sorted(set(SEGMENTS)))),), (), 8)
    item_spec = TowerSpec("item", (CategoricalFeature("item_id", tuple(EXTERNAL)),), (), DIM)
    sampler = MixedSampler(
        [InBatchSampler(CountedFrequency(COUNTS)), PopularitySampler.from_counts(COUNTS, 32, seed=0)]
    )
    model = SequentialRetrievalModel(
        keras.layers.Embedding(SequenceVocabulary(NUM_ITEMS).size, 16),
        HistoryAverageEncoder(last_n=3, hidden_units=(32,), output_dim=DIM),
        CATALOG,
        sampler,
        ContrastiveScorer(temperature=0.2, logq_correction=True),
        CausalObjective(),
        max_length=L,
        item_tower=build_tower(item_spec),
        context_tower=build_tower(context_spec),
        padding=Padding.RIGHT,
        max_targets=300,
        seed=2,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    assert model.training_window_length == L + 1
    windows = _sequences(Padding.RIGHT, stride=5, max_length=model.training_window_length)
    data = sequence_dataset(windows, {"segment": SEGMENTS}, batch_size=100, seed=0)
    losses = model.fit(data, epochs=2, verbose=0, shuffle=False).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]

    histories = _sequences(Padding.RIGHT)
    offline = model.query_embeddings(histories.tokens, histories.padding_mask, {"segment": SEGMENTS})
    tower = build_query_model(model)
    served = tower({HISTORY_FEATURE: _history_strings(histories, L), "segment": tf.constant(SEGMENTS.astype(str))})
    assert_close(served, offline, atol=1e-5)
    assert [f.name for f in query_spec(model, context_spec).features] == [HISTORY_FEATURE, "segment"]


def _causal_model(sampler, **kwargs):
    """A one-block causal transformer over the planted world's catalog, trained with `sampler`'s negatives."""
    return SequentialRetrievalModel(
        keras.layers.Embedding(SequenceVocabulary(NUM_ITEMS).size, DIM),
        TransformerSequenceEncoder(L, DIM, num_layers=1, num_heads=2, dropout=0.0, causal=True),
        CATALOG,
        sampler,
        ContrastiveScorer(temperature=0.1, logq_correction=False),
        CausalObjective(),
        max_length=L,
        **kwargs,
    )


def _windows(model, count):
    """The first `count` training windows of the world and their feature dict."""
    windows = _sequences(max_length=model.training_window_length).take(np.arange(count))
    return windows, {"tokens": tf.constant(windows.tokens), "padding_mask": tf.constant(windows.padding_mask)}


def test_causal_training_scores_the_column_a_query_reads():
    """The last input column of left-padded windows (where a causal query reads) gets a target and a gradient."""
    keras.utils.set_random_seed(3)
    model = _causal_model(InBatchSampler(), seed=4)
    _, features = _windows(model, 64)
    with tf.GradientTape() as tape:
        logits, _, targets, _ = model.compute_logits(features, None, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.zeros_like(targets), logits))
    positions = tf.convert_to_tensor(tape.gradient(loss, model.encoder.positions.embeddings))
    assert len(targets) == 64 * L  # every user has L + 1 training events: L targets per window
    assert float(tf.reduce_sum(tf.abs(positions[L - 1]))) > 0.0


def test_mask_seen_negatives_masks_each_targets_window_items():
    """With the full catalog as negatives, a target's row masks exactly its window's items (and itself)."""
    keras.utils.set_random_seed(5)
    model = _causal_model(FullCatalogSampler(NUM_ITEMS), mask_seen_negatives=True)
    windows, features = _windows(model, 16)
    logits, _, targets, _ = model.compute_logits(features, None, training=False)
    masked = np.asarray(logits)[:, 1:] == np.float32(FALSE_NEGATIVE_SCORE)
    assert masked.shape == (16 * L, NUM_ITEMS)  # full windows: L targets each, in window order
    for row, target in enumerate(np.asarray(targets)):
        window = windows.tokens[row // L]
        expected = set((window[window >= ITEM_OFFSET] - ITEM_OFFSET).tolist()) | {int(target)}
        assert set(np.flatnonzero(masked[row]).tolist()) == expected
    model.mask_seen_negatives = False
    plain = np.asarray(model.compute_logits(features, None, training=False)[0])[:, 1:]
    assert (plain == np.float32(FALSE_NEGATIVE_SCORE)).sum() == 16 * L  # only the accidental hits


def test_rejects_inconsistent_parts():
    common = dict(max_length=L)
    sampler, scorer = InBatchSampler(), ContrastiveScorer()
    table = keras.layers.Embedding(SequenceVocabulary(NUM_ITEMS).size, DIM)
    with pytest.raises(ValueError, match="needs a causal encoder"):
        SequentialRetrievalModel(
            table, TransformerSequenceEncoder(L, DIM), CATALOG, sampler, scorer, CausalObjective(), **common
        )
    with pytest.raises(ValueError, match="rows, expected"):
        SequentialRetrievalModel(
            keras.layers.Embedding(NUM_ITEMS, DIM),
            HistoryAverageEncoder(),
            CATALOG,
            sampler,
            scorer,
            CausalObjective(),
            **common,
        )
    with pytest.raises(ValueError, match="outputs 8 dims but the items have 32"):
        SequentialRetrievalModel(
            table, HistoryAverageEncoder(output_dim=8), CATALOG, sampler, scorer, CausalObjective(), **common
        )
    with pytest.raises(ValueError, match="logq_correction=True"):
        SequentialRetrievalModel(
            table,
            HistoryAverageEncoder(),
            CATALOG,
            sampler,
            ContrastiveScorer(logq_correction=True),
            CausalObjective(),
            **common,
        )
