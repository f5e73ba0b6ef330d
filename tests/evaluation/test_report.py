import json

import numpy as np
import pytest

from model.evaluation import Exclusions, evaluate_embeddings, full_report


def _data(num_queries=40, num_items=60, dim=4):
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(num_queries, dim)).astype(np.float32)
    items = rng.normal(size=(num_items, dim)).astype(np.float32)
    targets = rng.integers(0, num_items, num_queries)
    counts = rng.integers(0, 10, num_items)
    train = Exclusions.from_pairs(rng.integers(0, num_queries, 200), rng.integers(0, num_items, 200), num_queries)
    return queries, items, targets, counts, train


def test_full_report_structure_and_values():
    queries, items, targets, counts, train = _data()

    report = full_report(queries, items, targets, counts, train, ks=(5, 20), seed=3)

    expected_keys = {"model", "popularity", "num_queries", "num_items", "ks", "tie_breaking", "seed"}
    assert set(report) == expected_keys | {"targets_in_exclusions"}
    assert (report["num_queries"], report["num_items"], report["ks"]) == (40, 60, [5, 20])
    assert (report["tie_breaking"], report["seed"]) == ("random", 3)
    assert report["targets_in_exclusions"] == int(train.contains(targets).sum())
    for section in ("model", "popularity"):
        assert set(report[section]) == {"excluding_train", "including_train"}
        assert set(report[section]["excluding_train"]) == {
            f"{name}@{k}" for name in ("recall", "ndcg", "mrr") for k in (5, 20)
        }
    assert report["model"]["excluding_train"] == evaluate_embeddings(
        queries, items, targets, ks=(5, 20), exclude=train, seed=3
    )
    assert report["model"]["including_train"] == evaluate_embeddings(queries, items, targets, ks=(5, 20), seed=3)
    json.dumps(report)


def test_full_report_rejects_mismatched_counts():
    queries, items, targets, counts, train = _data()

    with pytest.raises(ValueError, match="item_counts has 59 items"):
        full_report(queries, items, targets, counts[:-1], train)
