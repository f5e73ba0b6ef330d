import math

import numpy as np
import pytest

from model.evaluation import metrics_from_ranks, rank_of_target, retrieval_metrics

# Retrieved lists of 3 queries over 5 items (best first) and their held-out targets:
#   query 0: [1, 3, 2, 4, 0], target 3 -> rank 1
#   query 1: [0, 2, 4, 3, 1], target 4 -> rank 2
#   query 2: [4, 3, 0, 1, 2], target 4 -> rank 0
TOP_IDS = np.array([[1, 3, 2, 4, 0], [0, 2, 4, 3, 1], [4, 3, 0, 1, 2]])
TARGETS = np.array([3, 4, 4])
# k=1: only query 2 hits at rank 0: recall = ndcg = mrr = 1/3.
# k=2: queries 0 (rank 1) and 2 (rank 0): recall 2/3, ndcg (1/log2(3) + 1)/3, mrr (1/2 + 1)/3 = 1/2.
# k=3: all hit: recall 1, ndcg (1/log2(3) + 1/log2(4) + 1)/3, mrr (1/2 + 1/3 + 1)/3 = 11/18.
EXPECTED = {
    "recall@1": 1 / 3,
    "ndcg@1": 1 / 3,
    "mrr@1": 1 / 3,
    "recall@2": 2 / 3,
    "ndcg@2": (1 / math.log2(3) + 1) / 3,
    "mrr@2": 1 / 2,
    "recall@3": 1.0,
    "ndcg@3": (1 / math.log2(3) + 0.5 + 1) / 3,
    "mrr@3": 11 / 18,
}


def test_rank_of_target():
    np.testing.assert_array_equal(rank_of_target(TOP_IDS, TARGETS), [1, 2, 0])
    np.testing.assert_array_equal(rank_of_target([[5, -1], [-1, -1]], [6, 0]), [-1, -1])


def test_retrieval_metrics_hand_computed():
    result = retrieval_metrics(TOP_IDS, TARGETS, ks=(1, 2, 3))

    assert list(result) == list(EXPECTED)
    for key, value in EXPECTED.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


def test_targets_beyond_the_retrieved_columns_are_misses():
    result = retrieval_metrics(TOP_IDS[:, :2], TARGETS, ks=(1, 3))

    assert result["recall@3"] == pytest.approx(2 / 3)
    assert result["mrr@3"] == pytest.approx(1 / 2)


def test_metrics_from_ranks_matches_retrieval_metrics():
    assert metrics_from_ranks([1, 2, 0], ks=(1, 2, 3)) == retrieval_metrics(TOP_IDS, TARGETS, ks=(1, 2, 3))


@pytest.mark.parametrize(
    ("top_ids", "targets", "ks", "message"),
    [
        (TOP_IDS, TARGETS[:2], (1,), "expected top_ids"),
        (TOP_IDS, [3, -4, 4], (1,), "targets must be >= 0"),
        (TOP_IDS, TARGETS, (0,), "ks must be"),
        (TOP_IDS, TARGETS, (), "ks must be"),
        (np.zeros((0, 3), np.int64), np.zeros(0, np.int64), (1,), "non-empty"),
    ],
)
def test_rejects_bad_input(top_ids, targets, ks, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(top_ids, targets, ks)
