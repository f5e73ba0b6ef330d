import math

import numpy as np
import pytest

from model.evaluation import Exclusions, evaluate_embeddings, evaluate_query_scores, evaluate_scores, popularity_scores

SCORES = np.array(
    [
        [0.1, 0.9, 0.3, 0.5, 0.2],  # order 1, 3, 2, 4, 0; target 3 -> rank 1
        [0.8, 0.1, 0.7, 0.2, 0.6],  # order 0, 2, 4, 3, 1; target 4 -> rank 2
        [0.3, 0.2, 0.1, 0.4, 0.9],  # order 4, 3, 0, 1, 2; target 4 -> rank 0
    ],
    dtype=np.float32,
)


def test_evaluate_embeddings_hand_computed():
    result = evaluate_embeddings(SCORES, np.eye(5, dtype=np.float32), [3, 4, 4], ks=(1, 2, 3))

    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 3)
    assert result["mrr@3"] == pytest.approx(11 / 18)


def test_popularity_scores_are_dense_ranks():
    np.testing.assert_array_equal(popularity_scores([10, 50, 50, 0, 20]), [1, 3, 3, 0, 2])
    assert popularity_scores(np.array([2**40, 2**40 + 1])).tolist() == [0.0, 1.0]  # float32 keeps them apart


def test_popularity_baseline_hand_computed():
    # Counts [10, 50, 50, 0, 20]: items 1 and 2 tie first, then 4, 0, 3.
    # Query 0 excludes item 1: ranking 2, 4, 0, 3 -> target 4 at rank 1.
    # Query 1 excludes nothing: {1, 2} in random order, then 4, 0, 3 -> target 0 at rank 3.
    exclude = Exclusions.from_pairs([0], [1], num_queries=2)

    result = evaluate_scores(popularity_scores([10, 50, 50, 0, 20]), [4, 0], ks=(1, 2, 4), exclude=exclude, seed=7)

    assert result["recall@1"] == 0.0
    assert result["recall@2"] == pytest.approx(0.5)
    assert result["recall@4"] == pytest.approx(1.0)
    assert result["mrr@4"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert result["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 2)


def test_evaluate_scores_uses_the_model_code_path():
    rng = np.random.default_rng(0)
    item_scores = rng.integers(0, 5, 300).astype(np.float32)  # heavy ties
    targets = rng.integers(0, 300, 500)

    as_scores = evaluate_scores(item_scores, targets, ks=(5, 20), seed=2)
    as_embeddings = evaluate_embeddings(np.ones((500, 1)), item_scores[:, None], targets, ks=(5, 20), seed=2)

    assert as_scores == as_embeddings


@pytest.mark.parametrize(("function", "argument"), [(popularity_scores, [[1, 2]]), (popularity_scores, [-1])])
def test_popularity_rejects_bad_counts(function, argument):
    with pytest.raises(ValueError, match="item_counts"):
        function(argument)


def test_evaluate_scores_rejects_2d_scores():
    with pytest.raises(ValueError, match="item_scores must be 1-D"):
        evaluate_scores(np.ones((3, 2)), [0, 1, 2])


def test_evaluate_query_scores_ranks_each_querys_own_scores():
    exclude = Exclusions.from_pairs(
        [1], [0], num_queries=3
    )  # query 1 without item 0: its target 4 moves from rank 2 to rank 1 (0-based)

    result = evaluate_query_scores(SCORES, [3, 4, 4], ks=(1, 2), exclude=exclude)

    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["recall@2"] == pytest.approx(1.0)
    assert result["mrr@2"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)


def test_evaluate_query_scores_names_a_wrong_shape():
    with pytest.raises(ValueError, match=r"scores must be 2-D \[U, N\], got shape \(5,\)"):
        evaluate_query_scores(np.ones(5), [0])
