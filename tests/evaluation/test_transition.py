import numpy as np
import pytest

from model.evaluation.transition import consecutive_pairs, last_items, transition_probabilities, transition_scores

# user 0: items 2, 0, 2 (times 1, 5, 9); user 1: items 1, 2 at the same time 3 (input order kept)
USERS = np.array([0, 1, 0, 1, 0])
ITEMS = np.array([0, 1, 2, 2, 2])
TIMES = np.array([5, 3, 1, 3, 9])


def test_consecutive_pairs_follow_time_then_input_order():
    previous, following = consecutive_pairs(USERS, ITEMS, TIMES)

    assert list(zip(previous.tolist(), following.tolist(), strict=True)) == [(2, 0), (0, 2), (1, 2)]


def test_last_items_per_user_and_minus_one_without_events():
    np.testing.assert_array_equal(last_items(USERS, ITEMS, TIMES, num_users=3), [2, 2, -1])


def test_probabilities_by_hand():
    # transitions 2->0, 0->2, 1->2; prior [0.5, 0.25, 0.25], smoothing 1:
    # row 0: counts [0, 0, 1] -> ([0, 0, 1] + prior) / 2; row 1 the same; row 2: ([1, 0, 0] + prior) / 2
    prior = np.array([0.5, 0.25, 0.25])
    table = transition_probabilities([2, 0, 1], [0, 2, 2], prior, smoothing=1.0)

    np.testing.assert_allclose(table[0], [0.25, 0.125, 0.625])
    np.testing.assert_allclose(table[1], [0.25, 0.125, 0.625])
    np.testing.assert_allclose(table[2], [0.75, 0.125, 0.125])


def test_an_item_never_followed_backs_off_to_the_prior():
    prior = np.array([0.2, 0.3, 0.5])
    table = transition_probabilities([0], [1], prior, smoothing=2.0)

    np.testing.assert_allclose(table[2], prior)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-6)


def test_scores_take_the_last_items_row_or_the_prior():
    prior = np.array([0.2, 0.3, 0.5], dtype=np.float32)
    table = np.arange(9, dtype=np.float32).reshape(3, 3)

    np.testing.assert_array_equal(
        transition_scores([2, -1], table, prior), np.array([[6, 7, 8], [0.2, 0.3, 0.5]], np.float32)
    )


def test_rejects_a_prior_that_is_not_a_distribution():
    with pytest.raises(ValueError, match="prior must be a 1-D distribution"):
        transition_probabilities([0], [1], [0.5, 0.6], smoothing=1.0)
    with pytest.raises(ValueError, match="smoothing must be > 0, got 0"):
        transition_probabilities([0], [1], [0.5, 0.5], smoothing=0)
