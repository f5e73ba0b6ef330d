import numpy as np
import pytest

from model.evaluation.blend import blend_scores


def test_each_row_is_scaled_to_a_maximum_of_one_then_mixed():
    first = np.array([[2.0, 4.0, 0.0], [-1.0, 0.5, 0.25]])
    second = np.array([[0.1, 0.0, 0.2], [0.0, 0.0, 0.0]])

    mixed = blend_scores(first, second, 0.25)

    # row 0: 0.25 * [0.5, 1, 0] + 0.75 * [0.5, 0, 1]; row 1: 0.25 * [-1, 0.5, 0.25] + 0.75 * zeros
    np.testing.assert_allclose(mixed, [[0.5, 0.25, 0.75], [-0.25, 0.125, 0.0625]])


def test_the_ends_of_the_weight_keep_one_ranking():
    rng = np.random.default_rng(0)
    first, second = rng.random((3, 6)), rng.random((3, 6))

    np.testing.assert_array_equal(np.argsort(blend_scores(first, second, 1.0)), np.argsort(first))
    np.testing.assert_array_equal(np.argsort(blend_scores(first, second, 0.0)), np.argsort(second))


def test_rejects_a_weight_outside_zero_one():
    with pytest.raises(ValueError, match=r"weight must be in \[0, 1\], got 1.5"):
        blend_scores(np.ones((1, 2)), np.ones((1, 2)), 1.5)
