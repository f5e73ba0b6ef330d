import numpy as np
import pytest

from model.evaluation import Exclusions, evaluate_query_scores, evaluate_scores, popularity_scores
from model.evaluation.baselines import Events, Grids, Queries, classical_baselines
from model.evaluation.ease import fit_ease, interaction_matrix

NUM_ITEMS, NUM_USERS = 6, 12
# Every user walks the item cycle: items s, s+1, ..., s+4 (mod 6) at times 0..4, s = user % 6. The first three
# events are training, the fourth the validation target, the fifth the test target.
WALKS = np.array([[(u + t) % NUM_ITEMS for t in range(5)] for u in range(NUM_USERS)])
USERS = np.arange(NUM_USERS)


def _queries(events: int) -> Queries:
    rows = np.repeat(USERS, events)
    return Queries(
        histories=Exclusions.from_pairs(rows, WALKS[:, :events].ravel(), NUM_USERS),
        last_items=WALKS[:, events - 1],
        targets=WALKS[:, events],
    )


FIT = Events(users=np.repeat(USERS, 3), items=WALKS[:, :3].ravel(), timestamps=np.tile(np.arange(3), NUM_USERS))
GRIDS = Grids(l2=(0.5, 5.0, 50.0), smoothing=(0.1, 1.0), weight=(0.25, 0.75))


@pytest.fixture(scope="module")
def report():
    return classical_baselines(
        FIT, NUM_USERS, NUM_ITEMS, _queries(3), _queries(4), grids=GRIDS, ks=(1, 3), choose_on="recall@1"
    )


def test_transitions_find_the_next_item_of_the_cycle(report):
    # Training holds every transition i -> i+1 four times and no other: the next item always ranks first.
    assert report["transition"]["validation"]["recall@1"] == 1.0
    assert report["transition"]["test"]["recall@1"] == 1.0
    assert report["transition"]["smoothing"] == 0.1  # ties keep the first grid value


def test_ease_l2_is_the_grid_value_of_best_validation_recall(report):
    validation = _queries(3)
    histories = interaction_matrix(*validation.histories.slice_pairs(0, NUM_USERS), NUM_USERS, NUM_ITEMS)
    fitted = interaction_matrix(FIT.users, FIT.items, NUM_USERS, NUM_ITEMS)
    recalls = [
        evaluate_query_scores(
            histories @ fit_ease(fitted, l2), validation.targets, ks=(1, 3), exclude=validation.histories
        )["recall@1"]
        for l2 in GRIDS.l2
    ]

    assert report["ease"]["l2"] == GRIDS.l2[int(np.argmax(recalls))]
    assert report["ease"]["validation"]["recall@1"] == pytest.approx(max(recalls))
    grid = report["ease"]["grid"]  # every value's metrics, test included as a diagnostic
    assert [row["value"] for row in grid] == list(GRIDS.l2)
    assert [row["validation"]["recall@1"] for row in grid] == pytest.approx(recalls)


def test_popularity_is_the_shared_protocol(report):
    test = _queries(4)
    counts = np.bincount(FIT.items, minlength=NUM_ITEMS)

    expected = evaluate_scores(popularity_scores(counts), test.targets, ks=(1, 3), exclude=test.histories)

    assert report["popularity"]["test"] == expected


def test_mix_leans_on_the_transitions_where_they_are_exact(report):
    # EASE alone ranks the next item first for fewer users; the mix's chosen weight gives EASE the smaller share.
    assert report["ease"]["validation"]["recall@1"] < 1.0
    assert report["mix"]["ease_weight"] == 0.25
    assert report["mix"]["validation"]["recall@1"] == 1.0
    assert report["mix"]["test"]["recall@1"] == 1.0
