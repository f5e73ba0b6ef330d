"""Masking functions: properties of random masking, and hand-computed mask-last / causal / inference inputs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.sequence import (
    Padding,
    append_mask_for_inference,
    causal_targets,
    mask_last,
    random_mask,
    read_last_for_inference,
)

MASK = 99


@st.composite
def batches(draw):
    length = draw(st.integers(1, 8))
    lengths = draw(st.lists(st.integers(0, length), min_size=1, max_size=6))
    left = draw(st.booleans())
    column = np.arange(length)
    real = (column >= length - np.array(lengths)[:, None]) if left else (column < np.array(lengths)[:, None])
    ids = np.where(real, draw(st.integers(2, 50)) + column, 0)
    return ids, real, draw(st.floats(0.0, 1.0)), draw(st.integers(0, 2**31 - 1))


@settings(max_examples=60, deadline=None)
@given(batches())
def test_random_mask_properties(batch):
    ids, real, p, seed = batch
    masked = random_mask(ids, real, mask_token=MASK, p=p, seed=seed)
    inputs, targets, target_mask = (np.asarray(x) for x in masked[:3])
    np.testing.assert_array_equal(np.asarray(masked.padding_mask), real)
    count, masked = real.sum(1), target_mask.sum(1)
    assert not np.any(target_mask & ~real), "padding is never masked"
    assert np.all(masked[count >= 1] >= 1), "every non-empty sequence has a masked position"
    assert np.all(masked[count >= 2] < count[count >= 2]), "never all positions of a longer sequence"
    assert np.all(masked[count == 0] == 0)
    np.testing.assert_array_equal(inputs, np.where(target_mask, MASK, ids))
    np.testing.assert_array_equal(targets, np.where(target_mask, ids, 0))
    # length 1: the single item is the target and the input is only the mask token
    single = count == 1
    np.testing.assert_array_equal(inputs[single][real[single]], MASK)
    again = random_mask(ids, real, mask_token=MASK, p=p, seed=seed)
    np.testing.assert_array_equal(np.asarray(again.target_mask), target_mask)


def test_random_mask_rate_and_seeds():
    ids = np.arange(2, 2 + 400 * 50).reshape(400, 50)
    real = np.ones_like(ids, bool)
    a = np.asarray(random_mask(ids, real, mask_token=MASK, p=0.2, seed=1).target_mask)
    b = np.asarray(random_mask(ids, real, mask_token=MASK, p=0.2, seed=2).target_mask)
    assert 0.18 < a.mean() < 0.22 and not np.array_equal(a, b)
    with pytest.raises(ValueError, match="p must be in"):
        random_mask(ids, real, mask_token=MASK, p=1.5)


def test_mask_last_and_causal_targets():
    ids = np.array([[0, 3, 4], [5, 6, 0], [0, 0, 0]])
    real = ids > 0
    inputs, targets, mask, inputs_real = (np.asarray(x) for x in mask_last(ids, real, mask_token=MASK))
    np.testing.assert_array_equal(inputs_real, real)
    np.testing.assert_array_equal(inputs, [[0, 3, MASK], [5, MASK, 0], [0, 0, 0]])
    np.testing.assert_array_equal(targets, [[0, 0, 4], [0, 6, 0], [0, 0, 0]])
    # windows of L + 1 = 3: the first two columns are the inputs, each predicts the column after it
    inputs, targets, mask, inputs_real = (np.asarray(x) for x in causal_targets(ids, real))
    np.testing.assert_array_equal(inputs, [[0, 3], [5, 6], [0, 0]])
    np.testing.assert_array_equal(inputs_real, inputs > 0)
    np.testing.assert_array_equal(targets, [[0, 4], [6, 0], [0, 0]])
    np.testing.assert_array_equal(mask, targets > 0)
    left = np.array([[0, 3, 4, 5], [2, 3, 4, 5]])  # left padding: the last input column is always trained
    inputs, targets, mask, _ = (np.asarray(x) for x in causal_targets(left, left > 0))
    np.testing.assert_array_equal(inputs, [[0, 3, 4], [2, 3, 4]])
    np.testing.assert_array_equal(targets, [[0, 4, 5], [3, 4, 5]])
    assert mask[:, -1].all()


def test_inference_inputs_left_and_right():
    left = np.array([[0, 3, 4], [5, 6, 7], [0, 0, 0]])
    inputs, real, positions = (np.asarray(x) for x in append_mask_for_inference(left, left > 0, mask_token=MASK))
    np.testing.assert_array_equal(inputs, [[3, 4, MASK], [6, 7, MASK], [0, 0, MASK]])
    np.testing.assert_array_equal(real, [[True, True, True], [True, True, True], [False, False, True]])
    np.testing.assert_array_equal(positions, [2, 2, 2])
    right = np.array([[3, 4, 0], [5, 6, 7], [0, 0, 0]])
    inputs, real, positions = (
        np.asarray(x) for x in append_mask_for_inference(right, right > 0, mask_token=MASK, padding=Padding.RIGHT)
    )
    np.testing.assert_array_equal(inputs, [[3, 4, MASK], [6, 7, MASK], [MASK, 0, 0]])
    np.testing.assert_array_equal(positions, [2, 2, 0])
    np.testing.assert_array_equal(np.asarray(read_last_for_inference(right, right > 0).positions), [1, 2, 0])
