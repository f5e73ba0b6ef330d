"""The classical baselines of a MovieLens benchmark run, on the models' split, queries and exclusions.

The baselines are fitted on the models' training interactions, chosen on the validation queries and scored
once on the test queries (`model.evaluation.baselines`). Beside them, direct checks for a leak between the
training interactions and the held-out targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model.data import InteractionLog, Split
from model.evaluation import Exclusions
from model.evaluation.baselines import Events, Queries, classical_baselines
from model.evaluation.transition import last_items
from model.training.config import RunConfig
from model.training.job import load_data, split_log
from model.training.prepare import PreparedData, prepare


def _events(log: InteractionLog, indices: np.ndarray, data: PreparedData) -> Events:
    return Events(
        users=np.searchsorted(data.user_ids, log.user_ids[indices]),
        items=np.searchsorted(data.catalog.external_ids, log.item_ids[indices]),
        timestamps=log.timestamps[indices],
    )


def _same_rows(first: Exclusions, second: Exclusions) -> bool:
    return bool(np.array_equal(first.indptr, second.indptr) and np.array_equal(first.indices, second.indices))


def leak_checks(log: InteractionLog, split: Split, data: PreparedData) -> dict[str, Any]:
    """Direct checks that no held-out target reaches training or escapes the exclusions.

    Returns:
        Counts of held-out targets among their user's earlier (and so training or excluded) items, whether
        the exclusions equal the user's training (validation) or training + validation (test) items, how
        many held-out events precede one of their user's training events, and the share of training events
        later in absolute time than the median test event (leave-last-out splits per user, not by time).
    """
    train, validation = _events(log, split.train, data), _events(log, split.validation, data)
    num_users = len(data.user_ids)
    train_rows = Exclusions.from_pairs(train.users, train.items, num_users)
    before_test = Exclusions.from_pairs(
        np.concatenate([train.users, validation.users]), np.concatenate([train.items, validation.items]), num_users
    )
    last_train_time = np.full(num_users, -np.inf)
    np.maximum.at(last_train_time, train.users, train.timestamps.astype(np.float64))
    test_times = log.timestamps[split.test].astype(np.float64)
    validation_times = log.timestamps[split.validation].astype(np.float64)
    return {
        "test_targets_in_histories": int(data.test_exclusions.contains(data.test.items).sum()),
        "validation_targets_in_histories": int(data.validation_exclusions.contains(data.validation.items).sum()),
        "validation_exclusions_are_training_items": _same_rows(
            data.validation_exclusions, _rows_of(train_rows, data.validation.users)
        ),
        "test_exclusions_are_training_and_validation_items": _same_rows(
            data.test_exclusions, _rows_of(before_test, data.test.users)
        ),
        "held_out_events_before_a_training_event_of_their_user": int(
            (validation_times < last_train_time[data.validation.users]).sum()
            + (test_times < last_train_time[data.test.users]).sum()
        ),
        "training_events_after_the_median_test_event": float(
            (log.timestamps[split.train].astype(np.float64) > np.median(test_times)).mean()
        ),
    }


def _rows_of(per_user: Exclusions, users: np.ndarray) -> Exclusions:
    rows = [per_user.row(int(u)) for u in users]
    return Exclusions.from_pairs(
        np.repeat(np.arange(len(users)), [len(r) for r in rows]), np.concatenate(rows), len(users)
    )


def movielens_baselines(config: RunConfig, seed: int) -> dict[str, Any]:
    """EASE, transitions, their mix and popularity on `config`'s data and split, plus the leak checks."""
    log, users, items, display = load_data(config.data)
    split = split_log(log, config.data)
    data = prepare(log, split, users=users, items=items, display_column=display)
    train = _events(log, split.train, data)
    before_test = _events(log, np.concatenate([split.train, split.validation]), data)
    num_users, num_items = len(data.user_ids), len(data.catalog)
    last_train = last_items(train.users, train.items, train.timestamps, num_users)
    last_before_test = last_items(before_test.users, before_test.items, before_test.timestamps, num_users)
    validation = Queries(data.validation_exclusions, last_train[data.validation.users], data.validation.items)
    test = Queries(data.test_exclusions, last_before_test[data.test.users], data.test.items)
    return {
        "baselines": classical_baselines(train, num_users, num_items, validation, test, seed=seed),
        "leak_checks": leak_checks(log, split, data),
    }
