import numpy as np
import pytest

from model.evaluation.ease import ease_scores, fit_ease, interaction_matrix


def _interactions(seed: int = 3, users: int = 40, items: int = 7) -> np.ndarray:
    return (np.random.default_rng(seed).random((users, items)) < 0.35).astype(np.float32)


def test_interaction_matrix_marks_each_pair_once():
    matrix = interaction_matrix([0, 0, 2, 2], [1, 1, 0, 3], num_rows=3, num_items=4)

    np.testing.assert_array_equal(matrix, [[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]])


def test_interaction_matrix_names_out_of_range_ids():
    with pytest.raises(ValueError, match=r"items must lie in \[0, 4\), got \[1, 4\]"):
        interaction_matrix([0, 1], [1, 4], num_rows=2, num_items=4)


def test_closed_form_equals_per_item_ridge_regressions():
    # Column j of B is the ridge regression of X[:, j] on the other columns: solved here directly.
    x, l2 = _interactions().astype(np.float64), 5.0
    weights = fit_ease(x, l2)

    for j in range(x.shape[1]):
        others = np.delete(np.arange(x.shape[1]), j)
        a = x[:, others]
        direct = np.linalg.solve(a.T @ a + l2 * np.eye(len(others)), a.T @ x[:, j])
        np.testing.assert_allclose(weights[others, j], direct, rtol=1e-4, atol=1e-6)
        assert weights[j, j] == 0.0


def test_two_items_by_hand():
    # X = [[1, 1], [1, 0]], l2 = 1, columns x0 = [1, 1], x1 = [1, 0]:
    # b_01 (item 1 from item 0) = x0·x1 / (x0·x0 + 1) = 1 / 3; b_10 = x1·x0 / (x1·x1 + 1) = 1 / 2
    weights = fit_ease([[1, 1], [1, 0]], 1.0)

    np.testing.assert_allclose(weights, [[0.0, 1 / 3], [1 / 2, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(ease_scores([[1, 0], [1, 1]], weights), [[0.0, 1 / 3], [1 / 2, 1 / 3]], rtol=1e-6)


def test_rejects_a_non_positive_penalty_and_bad_shapes():
    with pytest.raises(ValueError, match=r"l2 must be > 0, got 0\.0"):
        fit_ease(_interactions(), 0.0)
    with pytest.raises(ValueError, match=r"need histories \[Q, N\] and weights \[N, N\]"):
        ease_scores(np.ones((2, 3)), np.ones((4, 4)))
