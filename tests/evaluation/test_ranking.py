import numpy as np
import pytest

from model.evaluation import Exclusions, exact_top_k, retrieval_metrics

# Scores of 3 queries over 5 items, distinct within each row. With identity item embeddings the
# dot-product scores are these rows.
SCORES = np.array(
    [
        [0.1, 0.9, 0.3, 0.5, 0.2],  # order 1, 3, 2, 4, 0
        [0.8, 0.1, 0.7, 0.2, 0.6],  # order 0, 2, 4, 3, 1
        [0.3, 0.2, 0.1, 0.4, 0.9],  # order 4, 3, 0, 1, 2
    ],
    dtype=np.float32,
)
ITEMS = np.eye(5, dtype=np.float32)


def _top_k(queries, items, k, seed=0, **kwargs):
    return exact_top_k(queries, items, k, rng=np.random.default_rng(seed), **kwargs)


def test_hand_computed_top_k():
    ids, scores = _top_k(SCORES, ITEMS, 3)

    np.testing.assert_array_equal(ids, [[1, 3, 2], [0, 2, 4], [4, 3, 0]])
    np.testing.assert_array_equal(scores, np.array([[0.9, 0.5, 0.3], [0.8, 0.7, 0.6], [0.9, 0.4, 0.3]], np.float32))
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_exclusion_moves_the_target_up():
    # Excluding query 0's rank-0 item (1) puts its target 3 at rank 0; query 1 loses item 0.
    exclude = Exclusions.from_pairs([0, 1], [1, 0], num_queries=3)

    ids, _ = _top_k(SCORES, ITEMS, 3, exclude=exclude)

    np.testing.assert_array_equal(ids, [[3, 2, 4], [2, 4, 3], [4, 3, 0]])
    assert retrieval_metrics(ids, [3, 4, 4], ks=(1,))["recall@1"] == pytest.approx(2 / 3)


def test_excluded_items_never_appear_and_short_rows_are_padded():
    # Query 0 keeps 2 of 5 items: the tail is id -1 with score -inf (the FAISS convention).
    exclude = Exclusions.from_pairs([0, 0, 0, 2], [1, 3, 4, 4], num_queries=3)

    ids, scores = _top_k(SCORES, ITEMS, 4, exclude=exclude)

    np.testing.assert_array_equal(ids[0], [2, 0, -1, -1])
    assert np.isneginf(scores[0, 2:]).all() and np.isfinite(scores[1:]).all()
    for row in range(3):
        assert not np.isin(ids[row], exclude.row(row)).any()


def test_k_at_least_n_is_clipped_to_the_catalog():
    ids, scores = _top_k(SCORES, ITEMS, 50)

    assert ids.shape == scores.shape == (3, 5)
    np.testing.assert_array_equal(ids[0], [1, 3, 2, 4, 0])


def test_constant_model_recall_is_k_over_n():
    num_queries, num_items, k = 2000, 1000, 10
    queries = np.ones((num_queries, 4), np.float32)
    items = np.ones((num_items, 4), np.float32)
    stderr = np.sqrt(k / num_items * (1 - k / num_items) / num_queries)

    ids, _ = _top_k(queries, items, k)

    uniform_targets = np.random.default_rng(1).integers(0, num_items, num_queries)
    low_id_targets = np.arange(num_queries) % k  # all hits if ties went to the lowest ids
    for targets in (uniform_targets, low_id_targets):
        recall = retrieval_metrics(ids, targets, ks=(k,))[f"recall@{k}"]
        assert abs(recall - k / num_items) < 5 * stderr, recall
    assert len(np.unique(ids)) > 0.9 * num_items


def test_ties_at_the_kth_position_are_broken_at_random():
    # Items 0..4 score above all others; items 5..199 tie. Slots 5..9 are a random pick among the tie.
    num_queries, num_items = 400, 200
    item_scores = np.zeros(num_items, np.float32)
    item_scores[:5] = [5, 4, 3, 2, 1]
    queries = np.ones((num_queries, 1), np.float32)

    ids, _ = _top_k(queries, item_scores[:, None], 10)

    np.testing.assert_array_equal(ids[:, :5], np.tile(np.arange(5), (num_queries, 1)))
    picked = np.bincount(ids[:, 5:].ravel(), minlength=num_items)[5:]
    expected = 5 * num_queries / 195  # about 10.3 picks per tied item
    assert picked.min() > 0 and picked.max() < 4 * expected
    assert not (np.sort(ids[:, 5:], axis=1) == ids[:, 5:]).all()  # order inside the tie is random too


def test_same_seed_is_deterministic_and_seeds_differ():
    queries = np.ones((50, 2), np.float32)
    items = np.ones((100, 2), np.float32)

    first, _ = _top_k(queries, items, 5, seed=3)
    again, _ = _top_k(queries, items, 5, seed=3)
    other, _ = _top_k(queries, items, 5, seed=4)

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batching_does_not_change_results(batch_size):
    rng = np.random.default_rng(0)
    queries = rng.integers(-1, 2, (64, 3)).astype(np.float32)  # small integers: many exact ties
    items = rng.integers(-1, 2, (40, 3)).astype(np.float32)
    exclude = Exclusions.from_pairs(rng.integers(0, 64, 100), rng.integers(0, 40, 100), 64)

    one_batch = _top_k(queries, items, 8, exclude=exclude, batch_size=1024)
    batched = _top_k(queries, items, 8, exclude=exclude, batch_size=batch_size)

    np.testing.assert_array_equal(one_batch[0], batched[0])
    np.testing.assert_array_equal(one_batch[1], batched[1])


def test_smaller_k_is_a_prefix_of_larger_k():
    queries = np.ones((30, 1), np.float32)
    items = np.repeat(np.arange(4, dtype=np.float32), 10)[:, None]  # 4 tie groups of 10

    small, _ = _top_k(queries, items, 3)
    large, _ = _top_k(queries, items, 25)

    np.testing.assert_array_equal(small, large[:, :3])


def test_matches_a_full_sort_when_there_are_no_ties():
    rng = np.random.default_rng(5)
    queries = rng.normal(size=(20, 8)).astype(np.float32)
    items = rng.normal(size=(300, 8)).astype(np.float32)

    ids, scores = _top_k(queries, items, 15, batch_size=6)

    full = queries @ items.T
    np.testing.assert_array_equal(ids, np.argsort(-full, axis=1, kind="stable")[:, :15])
    # float32 dot products summed in another order (blocks of 6 queries vs one matmul) differ in the last bit
    np.testing.assert_allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :15], rtol=1e-6)


@pytest.mark.parametrize(
    ("queries", "items", "k", "exclude", "message"),
    [
        (SCORES, ITEMS[:, :4], 2, None, "embedding dims differ"),
        (SCORES[0], ITEMS, 2, None, "must be 2-D"),
        (SCORES, ITEMS[:0], 2, None, "catalog is empty"),
        (SCORES, ITEMS, 0, None, "k and batch_size"),
        (np.full((3, 5), np.nan, np.float32), ITEMS, 2, None, "NaN"),
        (SCORES, ITEMS, 2, Exclusions.empty(2), "expected 3 queries"),
        (SCORES, ITEMS, 2, Exclusions.from_pairs([0], [5], 3), "item id 5"),
    ],
)
def test_rejects_bad_input(queries, items, k, exclude, message):
    with pytest.raises(ValueError, match=message):
        _top_k(queries, items, k, exclude=exclude)
