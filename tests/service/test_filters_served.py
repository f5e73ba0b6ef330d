"""Item filters through a real gRPC server on loopback: filtered RetrieveCandidates and RetrieveSimilarItems equal
the brute-force oracle, GetServiceInfo lists the attributes with their kinds, and a bad filter is
INVALID_ARGUMENT with a BadRequest field violation naming the field."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from model.bundle.attributes import AttributeColumn, AttributeKind
from model.bundle.reader import open_bundle
from service.client import RetrievalClient, error_details
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from tests.service.filter_oracle import assert_same_top, filtered_top_k
from tests.service.helpers import NUM_ITEMS, ServerThread, export_test_bundle, item_id, server_config

OP = pb.NumericRestrict
BRANDS = ("acme", "zeta", "omega")
GENRES = ("Comedy", "Drama", "Horror", "Noir")


def _items() -> list[dict[str, Any]]:
    """Seeded attributes of the test catalog: a brand (or none), 0-2 genres, a release year (or none)."""
    rng = np.random.default_rng(5)
    items = []
    for _ in range(NUM_ITEMS):
        brand = None if rng.random() < 0.1 else str(rng.choice(BRANDS))
        genres = [str(g) for g in rng.choice(GENRES, size=rng.integers(0, 3), replace=False)]
        year = math.nan if rng.random() < 0.1 else float(rng.integers(1980, 2010))
        items.append({"brand": brand, "genres": genres, "year": year})
    return items


ITEMS = _items()


@pytest.fixture(scope="module")
def filtered_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/movies/1/: a Flat bundle with three filterable attributes, one of each kind."""
    filterable = {
        "brand": AttributeColumn(AttributeKind.CATEGORICAL, [i["brand"] for i in ITEMS]),
        "genres": AttributeColumn(AttributeKind.MULTI_CATEGORICAL, [i["genres"] for i in ITEMS]),
        "release_year": AttributeColumn(AttributeKind.NUMERIC, [i["year"] for i in ITEMS]),
    }
    return export_test_bundle(tmp_path_factory.mktemp("filtered"), version=1, filterable=filterable)


@pytest.fixture(scope="module")
def filtered_server(filtered_bundle: Path) -> Iterator[ServerThread]:
    with ServerThread(server_config(filtered_bundle.parent.parent, reload_interval_s=3600.0)) as running:
        yield running


def _oracle_items() -> list[dict[str, Any]]:
    return [{"brand": i["brand"], "genres": i["genres"], "release_year": i["year"]} for i in ITEMS]


FILTERS = {
    "one genre": pb.ItemFilter(categorical=[pb.CategoricalRestrict(namespace="genres", allow=["Noir"])]),
    "brands, deny a genre, a year range": pb.ItemFilter(
        categorical=[
            pb.CategoricalRestrict(namespace="brand", allow=["acme", "zeta"]),
            pb.CategoricalRestrict(namespace="genres", deny=["Horror"]),
        ],
        numeric=[
            pb.NumericRestrict(namespace="release_year", op=OP.OPERATOR_GREATER_EQUAL, value=1990),
            pb.NumericRestrict(namespace="release_year", op=OP.OPERATOR_LESS, value=2000),
        ],
    ),
    "fewer than k pass": pb.ItemFilter(
        categorical=[pb.CategoricalRestrict(namespace="brand", allow=["omega"])],
        numeric=[pb.NumericRestrict(namespace="release_year", op=OP.OPERATOR_EQUAL, value=1995)],
    ),
    "none pass": pb.ItemFilter(categorical=[pb.CategoricalRestrict(namespace="brand", allow=["no-such-brand"])]),
}
K = 20


def _ids(response: Any) -> list[str]:
    return [c.item_id for c in response.candidates]


@pytest.mark.parametrize("name", list(FILTERS))
def test_filtered_candidates_equal_the_exact_filtered_top_k(
    filtered_server: ServerThread, filtered_bundle: Path, name: str
) -> None:
    message = FILTERS[name]
    bundle = open_bundle(filtered_bundle)
    features = {"user_id": np.array(["u3"]), "genres": np.array([["drama", "", ""]]), "country": np.array(["FR"])}
    vector = bundle.load_query_tower()({**features, "age": np.array([40.0], dtype=np.float32)})[0]
    embeddings = bundle.load_item_embeddings()
    unfiltered, _, _ = filtered_top_k(vector, embeddings, _oracle_items(), pb.ItemFilter(), 3)
    exclude = {unfiltered[0], 7, 123}  # excluded items pass or fail the filter
    rows, scores, count = filtered_top_k(vector, embeddings, _oracle_items(), message, K, exclude)
    with RetrievalClient(filtered_server.target) as client:
        response = client.retrieve(
            "u3",
            K,
            features={"genres": ["drama"], "country": "FR", "age": 40},
            exclude=[item_id(r) for r in exclude],
            filter=message,
        )
    assert_same_top(_ids(response), [c.score for c in response.candidates], [item_id(r) for r in rows], scores)
    assert response.truncated == (count < K)
    assert [c.rank for c in response.candidates] == list(range(min(K, count)))


def test_a_batch_mixing_filters_answers_each_request_with_its_own_filter_k_and_exclusions(
    filtered_server: ServerThread, filtered_bundle: Path
) -> None:
    """Requests of one batch that share a filter share one search; each keeps its k and exclusions."""
    bundle = open_bundle(filtered_bundle)
    features = {"user_id": np.array(["u5"]), "genres": np.array([["", "", ""]]), "country": np.array([""])}
    vector = bundle.load_query_tower()({**features, "age": np.array([np.nan], dtype=np.float32)})[0]
    embeddings = bundle.load_item_embeddings()
    one_genre, ranged = FILTERS["one genre"], FILTERS["brands, deny a genre, a year range"]
    first, _, _ = filtered_top_k(vector, embeddings, _oracle_items(), one_genre, 2)
    plan = [(one_genre, 5, set()), (one_genre, 12, set(first)), (ranged, 7, {first[0]}), (pb.ItemFilter(), 4, set())]
    requests = [
        pb.RetrieveCandidatesRequest(
            user_id="u5", num_candidates=k, exclude_item_ids=[item_id(r) for r in exclude], filter=message
        )
        for message, k, exclude in plan
    ]
    with RetrievalClient(filtered_server.target) as client:
        responses = client.retrieve_batch(requests)
    for response, (message, k, exclude) in zip(responses, plan, strict=True):
        rows, scores, _ = filtered_top_k(vector, embeddings, _oracle_items(), message, k, exclude)
        assert_same_top(_ids(response), [c.score for c in response.candidates], [item_id(r) for r in rows], scores)


def test_restrict_strings_are_typed_by_the_kinds_the_server_reports(filtered_server: ServerThread) -> None:
    """`release_year=1995` is a numeric equality (the server reports the kind), not a token."""
    with RetrievalClient(filtered_server.target) as client:
        by_strings = client.retrieve("u3", K, filter=["brand=omega", "release_year=1995"])
        by_message = client.retrieve("u3", K, filter=FILTERS["fewer than k pass"])
    assert _ids(by_strings) == _ids(by_message) and len(_ids(by_strings)) > 0


@pytest.mark.parametrize("name", list(FILTERS))
def test_filtered_similar_items_equal_the_exact_filtered_neighbours(
    filtered_server: ServerThread, filtered_bundle: Path, name: str
) -> None:
    message = FILTERS[name]
    embeddings = open_bundle(filtered_bundle).load_item_embeddings()
    query_rows = [11, 250]
    vector = embeddings[query_rows].mean(axis=0)
    exclude = {*query_rows, 42}  # the query items are never returned
    rows, scores, count = filtered_top_k(vector, embeddings, _oracle_items(), message, K, exclude)
    with RetrievalClient(filtered_server.target) as client:
        response = client.similar_items([item_id(r) for r in query_rows], K, exclude=[item_id(42)], filter=message)
    assert_same_top(_ids(response), [c.score for c in response.candidates], [item_id(r) for r in rows], scores)
    assert response.truncated == (count < K)


def test_service_info_lists_the_filterable_attributes_with_their_kinds(filtered_server: ServerThread) -> None:
    with RetrievalClient(filtered_server.target) as client:
        info = client.service_info()
    assert sorted((a.name, a.kind) for a in info.filterable_attributes) == [
        ("brand", pb.ATTRIBUTE_KIND_CATEGORICAL),
        ("genres", pb.ATTRIBUTE_KIND_MULTI_CATEGORICAL),
        ("release_year", pb.ATTRIBUTE_KIND_NUMERIC),
    ]


BAD_FILTERS = [
    (
        pb.ItemFilter(categorical=[pb.CategoricalRestrict(namespace="colour", allow=["red"])]),
        "filter.categorical[0].namespace",
        "unknown attribute 'colour'",
    ),
    (
        pb.ItemFilter(
            categorical=[
                pb.CategoricalRestrict(namespace="genres", allow=["Noir"]),
                pb.CategoricalRestrict(namespace="release_year", allow=["1995"]),
            ]
        ),
        "filter.categorical[1].namespace",
        "attribute 'release_year' is numeric",
    ),
    (
        pb.ItemFilter(numeric=[pb.NumericRestrict(namespace="brand", op=OP.OPERATOR_LESS, value=3)]),
        "filter.numeric[0].namespace",
        "attribute 'brand' is categorical",
    ),
]


@pytest.mark.parametrize(("message", "field", "text"), BAD_FILTERS)
@pytest.mark.parametrize("rpc", ["candidates", "similar_items", "batch"])
def test_a_bad_filter_is_invalid_argument_with_a_field_violation(
    filtered_server: ServerThread, message: pb.ItemFilter, field: str, text: str, rpc: str
) -> None:
    with RetrievalClient(filtered_server.target) as client, pytest.raises(grpc.RpcError) as error:
        if rpc == "candidates":
            client.retrieve("u3", K, filter=message)
        elif rpc == "similar_items":
            client.similar_items([item_id(1)], K, filter=message)
        else:
            good = pb.RetrieveCandidatesRequest(user_id="u1", num_candidates=K)
            bad = pb.RetrieveCandidatesRequest(user_id="u3", num_candidates=K, filter=message)
            client.retrieve_batch([good, bad])
    details = error_details(error.value)
    path = f"requests[1].{field}" if rpc == "batch" else field
    assert (details.code, details.reason) == ("INVALID_ARGUMENT", "INVALID_FIELD")
    assert [f for f, _ in details.field_violations] == [path], details.field_violations
    assert text in details.field_violations[0][1]
