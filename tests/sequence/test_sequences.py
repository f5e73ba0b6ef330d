"""Per-user token windows: time order, truncation, padding side, strided windows."""

import numpy as np
import pytest

from model.sequence import ITEM_OFFSET, Padding, SequenceVocabulary, build_sequences

# user 0: items 5, 6, 7 at times 3, 1, 2 -> by time 6, 7, 5; user 1: 8 then 9 (equal times keep input order);
# user 2: one item; user 3: none.
USERS, ITEMS, TIMES = [0, 0, 0, 1, 1, 2], [5, 6, 7, 8, 9, 3], [3.0, 1.0, 2.0, 1.0, 1.0, 0.0]
T = ITEM_OFFSET


def test_left_padded_latest_items_one_row_per_user():
    s = build_sequences(USERS, ITEMS, TIMES, num_users=4, max_length=2)
    np.testing.assert_array_equal(s.tokens, [[7 + T, 5 + T], [8 + T, 9 + T], [0, 3 + T], [0, 0]])
    np.testing.assert_array_equal(s.padding_mask, s.tokens > 0)
    np.testing.assert_array_equal(s.user_rows, [0, 1, 2, 3])
    np.testing.assert_array_equal(s.lengths, [2, 2, 1, 0])


def test_right_padded_strided_windows():
    s = build_sequences(USERS, ITEMS, TIMES, num_users=4, max_length=2, padding=Padding.RIGHT, stride=1)
    np.testing.assert_array_equal(
        s.tokens, [[7 + T, 5 + T], [6 + T, 7 + T], [6 + T, 0], [8 + T, 9 + T], [8 + T, 0], [3 + T, 0]]
    )
    np.testing.assert_array_equal(s.user_rows, [0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(s.lengths, [2, 2, 1, 2, 1, 1])
    np.testing.assert_array_equal(s.take([5]).tokens, [[3 + T, 0]])


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="user rows must be in"):
        build_sequences([4], [1], [0.0], num_users=4, max_length=2)
    with pytest.raises(ValueError, match="max_length and stride"):
        build_sequences([0], [1], [0.0], num_users=1, max_length=0)
    with pytest.raises(ValueError, match="item ids must be in"):
        SequenceVocabulary(3).tokens([3])
    assert SequenceVocabulary(3).mask_token == 3 + T and SequenceVocabulary(3).size == 3 + T + 1
