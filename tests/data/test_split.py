"""Tests for model.data.split."""

from __future__ import annotations

import time

import numpy as np
import pytest

from model.data import InteractionLog, Split, global_time_split, leave_last_out


def _log(users: list[str], times: list[float]) -> InteractionLog:
    return InteractionLog(
        user_ids=np.asarray(users, dtype=object),
        item_ids=np.asarray([f"i{row}" for row in range(len(users))], dtype=object),
        timestamps=np.asarray(times, dtype=np.float64),
        weights=np.ones(len(users), dtype=np.float32),
    )


def _assert_partition(split: Split, n: int) -> None:
    joined = np.concatenate([split.train, split.validation, split.test])
    assert joined.dtype == np.int64
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


def test_leave_last_out_hand_made_with_ties() -> None:
    #        row:  0    1    2    3    4    5    6    7    8    9
    users = ["a", "b", "a", "a", "b", "a", "c", "c", "b", "c"]
    times = [5.0, 1.0, 5.0, 1.0, 2.0, 5.0, 9.0, 9.0, 2.0, 9.0]
    # a: rows 3 (t=1) then 0, 2, 5 all at t=5 -> file order keeps 5 last: test 5, validation 2.
    # b: 1 (t=1), 4 and 8 at t=2 -> test 8, validation 4.   c: all tied -> test 9, validation 7.
    split = leave_last_out(_log(users, times))

    assert split.test.tolist() == [5, 8, 9]
    assert split.validation.tolist() == [2, 4, 7]
    assert split.train.tolist() == [0, 1, 3, 6]
    assert split.describe() == {"train": 4, "validation": 3, "test": 3, "total": 10}
    _assert_partition(split, 10)


def test_leave_last_out_short_users_go_to_train() -> None:
    split = leave_last_out(_log(["a", "a", "b", "b", "b"], [1, 2, 1, 2, 3]), min_interactions=3)
    assert split.train.tolist() == [0, 1, 2] and split.validation.tolist() == [3] and split.test.tolist() == [4]
    with_two = leave_last_out(_log(["a", "a"], [2, 1]), min_interactions=2)
    assert with_two.test.tolist() == [0] and with_two.validation.tolist() == [1] and len(with_two.train) == 0
    with pytest.raises(ValueError, match="got 1"):
        leave_last_out(_log(["a"], [1]), min_interactions=1)


def test_leave_last_out_random_log_invariants() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    users = rng.integers(0, 2_000, n).astype(str)
    log = _log(users.tolist(), rng.integers(0, 5_000, n).astype(float).tolist())

    start = time.perf_counter()
    split = leave_last_out(log, min_interactions=3)
    assert time.perf_counter() - start < 1.0

    _assert_partition(split, n)
    assert not np.intersect1d(split.train, np.concatenate([split.test, split.validation])).size
    counts = dict(zip(*np.unique(log.user_ids, return_counts=True), strict=True))
    eligible = sorted(user for user, count in counts.items() if count >= 3)
    assert sorted(log.user_ids[split.test]) == eligible
    assert sorted(log.user_ids[split.validation]) == eligible
    # The held-out rows are each user's latest two under (timestamp, file row) order.
    for user in eligible[:200]:
        rows = np.flatnonzero(log.user_ids == user)
        latest = rows[np.lexsort((rows, log.timestamps[rows]))][-2:]
        assert split.validation[np.isin(split.validation, rows)].tolist() == [latest[0]]
        assert split.test[np.isin(split.test, rows)].tolist() == [latest[1]]


def test_leave_last_out_empty_log() -> None:
    assert leave_last_out(_log([], [])).describe() == {"train": 0, "validation": 0, "test": 0, "total": 0}


def test_global_time_split_boundaries() -> None:
    log = _log(["a"] * 6, [0.0, 9.99, 10.0, 15.0, 20.0, 30.0])

    split = global_time_split(log, validation_cutoff=10.0, test_cutoff=20.0)

    assert split.train.tolist() == [0, 1]
    assert split.validation.tolist() == [2, 3]
    assert split.test.tolist() == [4, 5]
    _assert_partition(split, 6)


@pytest.mark.parametrize(("validation_cutoff", "test_cutoff"), [(20.0, 10.0), (10.0, 10.0), (float("nan"), 1.0)])
def test_global_time_split_rejects_non_increasing_cutoffs(validation_cutoff: float, test_cutoff: float) -> None:
    with pytest.raises(ValueError, match=f"validation_cutoff={validation_cutoff}"):
        global_time_split(_log(["a"], [1.0]), validation_cutoff=validation_cutoff, test_cutoff=test_cutoff)
