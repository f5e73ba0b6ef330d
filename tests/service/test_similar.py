"""RetrieveSimilarItems ("more like this"): equal to the offline neighbours of the items' mean embedding."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from model.bundle.reader import open_bundle
from service.client import RetrievalClient, error_details
from tests.service.helpers import LIMITS, ServerThread, item_id


def _offline(bundle_path: Path, items: list[str], k: int, exclude: set[str]) -> tuple[list[str], np.ndarray]:
    bundle = open_bundle(bundle_path)
    embeddings, ids = bundle.load_item_embeddings(), bundle.load_items().ids.tolist()
    query = embeddings[[ids.index(i) for i in items]].mean(axis=0)
    scores = embeddings @ query
    order = [r for r in np.argsort(-scores, kind="stable") if ids[r] not in exclude | set(items)][:k]
    return [ids[r] for r in order], scores[order]


def test_similar_items_equal_the_offline_neighbours_without_the_query_items(
    server: ServerThread, bundle_path: Path
) -> None:
    with RetrievalClient(server.target) as client:
        one = client.similar_items([item_id(7)], 10, request_id="s1")
        two = client.similar_items([item_id(7), item_id(42)], 5, exclude=[one.candidates[0].item_id], display=["*"])
    expected, scores = _offline(bundle_path, [item_id(7)], 10, set())
    assert [c.item_id for c in one.candidates] == expected and item_id(7) not in expected
    np.testing.assert_allclose([c.score for c in one.candidates], scores, rtol=1e-5, atol=1e-5)
    assert [c.rank for c in one.candidates] == list(range(10)) and one.request_id == "s1"
    assert (one.model_version, one.truncated) == ("1", False)
    expected_two, _ = _offline(bundle_path, [item_id(7), item_id(42)], 5, {one.candidates[0].item_id})
    assert [c.item_id for c in two.candidates] == expected_two
    assert all(c.display["title"] == f"Title {int(c.item_id.removeprefix('item'))}" for c in two.candidates)


@pytest.mark.parametrize(
    ("item_ids", "k", "field", "reason_text"),
    [
        (
            ["no-such-item", "item0001", "nor-this"],
            3,
            "item_ids",
            "not in the serving catalog: ['no-such-item', 'nor-this']",
        ),
        ([], 3, "item_ids", "at least one item id is needed"),
        (["item0001"], 0, "num_candidates", "must be in [1, "),
        ([f"item{i:04d}" for i in range(LIMITS.max_exclusions + 1)], 3, "item_ids", "at most"),
    ],
)
def test_bad_similar_requests_name_the_field(
    server: ServerThread, item_ids: list[str], k: int, field: str, reason_text: str
) -> None:
    with RetrievalClient(server.target) as client, pytest.raises(grpc.RpcError) as error:
        client.similar_items(item_ids, k)
    details = error_details(error.value)
    assert details.code == "INVALID_ARGUMENT" and details.reason == "INVALID_FIELD"
    assert details.message.startswith(f"{field}: {reason_text}"), details.message
