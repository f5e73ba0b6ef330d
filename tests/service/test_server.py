"""End to end over gRPC: answers equal the offline exact top-k, concurrency, errors, health, reflection."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from service.client import RetrievalClient, build_request
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.observer import RecordingObserver
from tests.service.helpers import DIM, LIMITS, MODEL, NUM_ITEMS, ServerThread, oracle_top_k

USERS = ["u1", "u7", "stranger", "u29"]
GENRES = [["drama"], ["comedy", "horror"], [], ["unseen", "drama"]]
AGES = [25.0, 61.5, None, 18.0]


def _request(i: int, k: int, **kwargs: object) -> pb.RetrieveCandidatesRequest:
    features: dict = {"genres": GENRES[i]}
    if AGES[i] is not None:
        features["age"] = AGES[i]
    return build_request(USERS[i], k, features=features, request_id=f"req-{i}", **kwargs)  # type: ignore[arg-type]


def _raw_features() -> dict[str, np.ndarray]:
    return {
        "user_id": np.array(USERS, dtype=object),
        "genres": np.array([[*g, "", "", ""][:3] for g in GENRES], dtype=object),
        "country": np.array([""] * 4, dtype=object),
        "age": np.array([np.nan if a is None else a for a in AGES], dtype=np.float32),
    }


def _ids(response: pb.RetrieveCandidatesResponse) -> list[str]:
    return [c.item_id for c in response.candidates]


def test_single_rpc_equals_offline_exact_top_k(server: ServerThread, bundle_path: Path) -> None:
    k = 10
    expected_ids, expected_scores = oracle_top_k(bundle_path, _raw_features(), k)
    with RetrievalClient(server.target) as client:
        responses = [client.call(client.stub.RetrieveCandidates, _request(i, k, display=["*"])) for i in range(4)]
    for i, response in enumerate(responses):
        assert _ids(response) == expected_ids[i]
        np.testing.assert_allclose([c.score for c in response.candidates], expected_scores[i], atol=1e-5)
        assert [c.rank for c in response.candidates] == list(range(k))
        assert (response.model_name, response.model_version) == (MODEL, "1")
        assert response.request_id == f"req-{i}"
        assert not response.truncated
        # display attributes come from the bundle's items: item0042 is titled "Title 42"
        assert [c.display["title"] for c in response.candidates] == [
            f"Title {int(c.item_id.removeprefix('item'))}" for c in response.candidates
        ]


def test_display_attributes_are_returned_only_when_selected(server: ServerThread) -> None:
    with RetrievalClient(server.target) as client:
        plain = client.call(client.stub.RetrieveCandidates, _request(0, 5))
        chosen = client.call(client.stub.RetrieveCandidates, _request(0, 5, display=["title", "title"]))
        batch = client.retrieve_batch([_request(1, 3), _request(1, 3, display=["*"])])
        with pytest.raises(grpc.RpcError) as error:
            client.call(client.stub.RetrieveCandidates, _request(0, 5, display=["title", "price"]))
    assert _ids(plain) == _ids(chosen)
    assert all(len(c.display) == 0 for c in plain.candidates)  # the cheap default: ids and scores only
    assert [dict(c.display) for c in chosen.candidates] == [
        {"title": f"Title {int(c.item_id.removeprefix('item'))}"} for c in chosen.candidates
    ]
    assert [len(c.display) for r in batch for c in r.candidates] == [0, 0, 0, 1, 1, 1]
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("display_attributes[1]: unknown display attribute 'price'")


def test_batch_rpc_keeps_results_per_request_and_order(server: ServerThread, bundle_path: Path) -> None:
    k = 7
    expected_ids, expected_scores = oracle_top_k(bundle_path, _raw_features(), k)
    with RetrievalClient(server.target) as client:
        responses = client.retrieve_batch([_request(i, k) for i in (3, 0, 2, 1)])
    for position, i in enumerate((3, 0, 2, 1)):
        assert _ids(responses[position]) == expected_ids[i]
        np.testing.assert_allclose([c.score for c in responses[position].candidates], expected_scores[i], atol=1e-5)
        assert responses[position].request_id == f"req-{i}"


def test_exclusions_and_history_are_removed_keeping_order(server: ServerThread, bundle_path: Path) -> None:
    k = 5
    top = oracle_top_k(bundle_path, _raw_features(), 12)[0][0]
    excluded, history = {top[0], top[3], "no-such-item"}, [top[1], top[5]]
    expected = oracle_top_k(bundle_path, _raw_features(), k, exclude=[excluded | set(history)] * 4)[0][0]
    request = _request(0, k, exclude=sorted(excluded), history=history, exclude_history=True)
    with RetrievalClient(server.target) as client:
        response = client.call(client.stub.RetrieveCandidates, request)
        kept_history = client.call(client.stub.RetrieveCandidates, _request(0, k, history=history))
    assert _ids(response) == expected
    assert top[1] in _ids(kept_history)  # history is excluded only when asked
    assert not response.truncated


def test_k_beyond_the_catalog_is_truncated(tmp_path: Path) -> None:
    from tests.service.helpers import export_test_bundle, server_config

    export_test_bundle(tmp_path, version=1, num_items=6)
    with ServerThread(server_config(tmp_path)) as small, RetrievalClient(small.target) as client:
        response = client.retrieve("u1", 5, exclude=["item0000", "item0001"])
    assert len(response.candidates) == 4 and response.truncated
    assert not {"item0000", "item0001"} & set(_ids(response))


def test_64_concurrent_requests_each_get_their_own_answer_in_batches(
    server: ServerThread, bundle_path: Path, observer: RecordingObserver
) -> None:
    users = [f"u{i % 30}" if i % 3 else f"new-user-{i}" for i in range(64)]
    ks = [1 + i % 20 for i in range(64)]
    features = {
        "user_id": np.array(users, dtype=object),
        "genres": np.array([["", "", ""]] * 64, dtype=object),
        "country": np.array([["DE", "FR", "US", ""][i % 4] for i in range(64)], dtype=object),
        "age": np.full(64, np.nan, dtype=np.float32),
    }
    expected, _ = oracle_top_k(bundle_path, features, 20)
    before = len(observer.batch_sizes)
    with RetrievalClient(server.target) as client:
        client.service_info()  # connect first, so the requests arrive together
        futures = [
            client.stub.RetrieveCandidates.future(
                build_request(
                    users[i],
                    ks[i],
                    features={"country": features["country"][i]} if i % 4 != 3 else None,
                    request_id=str(i),
                ),
                timeout=30,
            )
            for i in range(64)
        ]
        responses = [f.result() for f in futures]
    for i, response in enumerate(responses):
        assert response.request_id == str(i)
        assert _ids(response) == expected[i][: ks[i]]
    sizes = observer.batch_sizes[before:]
    assert sum(sizes) == 64 and max(sizes) > 1, sizes


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"user_id": ""}, "user_id"),
        ({"num_candidates": 0}, "num_candidates"),
        ({"num_candidates": LIMITS.max_k + 1}, "num_candidates"),
        ({"user_features": {"shoe_size": pb.FeatureValue(float_value=42.0)}}, 'user_features["shoe_size"]'),
        ({"user_features": {"age": pb.FeatureValue(string_value="old")}}, 'user_features["age"]'),
        ({"user_features": {"age": pb.FeatureValue(float_value=float("nan"))}}, 'user_features["age"]'),
        ({"user_features": {"country": pb.FeatureValue(float_value=1.0)}}, 'user_features["country"]'),
        (
            {"user_features": {"country": pb.FeatureValue(string_list=pb.StringList(values=["DE"]))}},
            'user_features["country"]',
        ),
        ({"exclude_item_ids": [f"i{n}" for n in range(LIMITS.max_exclusions + 1)]}, "exclude_item_ids"),
    ],
)
def test_invalid_argument_names_the_field(server: ServerThread, request_kwargs: dict, field: str) -> None:
    request = pb.RetrieveCandidatesRequest(user_id="u1", num_candidates=3)
    for key, value in request_kwargs.items():
        if key == "user_features":
            for name, feature in value.items():
                request.user_features[name].CopyFrom(feature)
        elif isinstance(value, list):
            getattr(request, key).extend(value)
        else:
            setattr(request, key, value)
    with RetrievalClient(server.target) as client, pytest.raises(grpc.RpcError) as error:
        client.call(client.stub.RetrieveCandidates, request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(f"{field}:"), error.value.details()


def test_invalid_request_in_a_batch_fails_the_call_naming_its_index(server: ServerThread) -> None:
    requests = [_request(0, 3), _request(1, 3), _request(2, 0)]
    with RetrievalClient(server.target) as client:
        with pytest.raises(grpc.RpcError) as error:
            client.retrieve_batch(requests)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details().startswith("requests[2].num_candidates:")
        with pytest.raises(grpc.RpcError) as too_many:
            client.retrieve_batch([_request(0, 1)] * (LIMITS.max_batch_requests + 1))
        assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert client.retrieve_batch([]) == []


def test_service_info_describes_the_bundle(server: ServerThread) -> None:
    with RetrievalClient(server.target) as client:
        info = client.service_info()
    assert (info.model_name, info.model_version, info.embedding_dim, info.item_count) == (MODEL, "1", DIM, NUM_ITEMS)
    assert (info.index_type, info.index_device, info.query_device) == ("Flat", "cpu", "cpu")
    assert (info.max_num_candidates, info.max_exclusions) == (LIMITS.max_k, LIMITS.max_exclusions)
    assert {(f.name, f.kind) for f in info.features} == {
        ("genres", pb.FEATURE_KIND_STRING_LIST),
        ("country", pb.FEATURE_KIND_STRING),
        ("age", pb.FEATURE_KIND_FLOAT),
    }
    assert (info.similarity, info.bundle_format_version) == ("dot", "1")
    assert list(info.display_attributes) == ["title"]
    assert info.max_batch_requests == LIMITS.max_batch_requests


def test_health_serving_and_reflection_lists_the_services(server: ServerThread) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with RetrievalClient(server.target) as client:
        assert client.health() == "SERVING"
        assert client.health("retrieval.v1.RetrievalService") == "SERVING"
        stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in response.list_services_response.service}
    assert names == {
        "retrieval.v1.RetrievalService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
