"""validate_request: conversion to tower inputs with defaults, and every refusal naming its field."""

from __future__ import annotations

import math

import pytest

from service.errors import InvalidRequest
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.validation import ServiceLimits, feature_kind, request_features, validate_request
from tests.service.helpers import LIMITS, SPEC


def _request(**kwargs: object) -> pb.RetrieveCandidatesRequest:
    base: dict = {"user_id": "u1", "num_candidates": 5}
    base.update(kwargs)
    return pb.RetrieveCandidatesRequest(**base)


def _error(request: pb.RetrieveCandidatesRequest, limits: ServiceLimits = LIMITS) -> str:
    with pytest.raises(InvalidRequest) as error:
        validate_request(request, SPEC, limits)
    return str(error.value)


def test_valid_request_becomes_a_full_tower_row_with_defaults() -> None:
    request = _request(
        user_features={
            "genres": pb.FeatureValue(string_list=pb.StringList(values=["drama"])),
            "age": pb.FeatureValue(float_value=31.5),
        },
        history_item_ids=["a", "b"],
        exclude_item_ids=["c", "a"],
        exclude_history=True,
    )
    query = validate_request(request, SPEC, LIMITS)
    assert query.k == 5
    assert query.exclude == {"a", "b", "c"}
    assert query.features == {"user_id": "u1", "genres": ("drama", "", ""), "country": "", "age": 31.5}

    bare = validate_request(_request(history_item_ids=["a"]), SPEC, LIMITS)
    assert bare.features["genres"] == ("", "", "") and bare.features["country"] == ""
    assert math.isnan(bare.features["age"])  # type: ignore[arg-type]
    assert bare.exclude == frozenset()  # history is excluded only on request


def test_unknown_ids_are_not_errors() -> None:
    query = validate_request(
        _request(user_id="never-seen", user_features={"country": pb.FeatureValue(string_value="Atlantis")}),
        SPEC,
        LIMITS,
    )
    assert query.features["user_id"] == "never-seen" and query.features["country"] == "Atlantis"


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"user_id": ""}, "user_id: must not be empty"),
        ({"user_id": "u" * 65}, "user_id: longer than 64 characters (65)"),
        ({"num_candidates": 0}, "num_candidates: must be in [1, 50], got 0"),
        ({"num_candidates": -3}, "num_candidates: must be in [1, 50], got -3"),
        ({"num_candidates": 51}, "num_candidates: must be in [1, 50], got 51"),
        ({"request_id": "r" * 65}, "request_id: longer than 64 characters"),
        ({"user_features": {"shoe": pb.FeatureValue(float_value=1.0)}}, 'user_features["shoe"]: unknown feature'),
        (
            {"user_features": {"user_id": pb.FeatureValue(string_value="u2")}},
            'user_features["user_id"]: set the request\'s user_id field instead',
        ),
        (
            {"user_features": {"age": pb.FeatureValue(string_value="old")}},
            'user_features["age"]: expected float_value, got string_value',
        ),
        (
            # An int64 for a numeric feature is accepted (issue 16); an integer list is not a number.
            {"user_features": {"age": pb.FeatureValue(int64_list=pb.Int64List(values=[30]))}},
            'user_features["age"]: expected float_value, got int64_list',
        ),
        ({"user_features": {"age": pb.FeatureValue()}}, 'user_features["age"]: expected float_value, got no value'),
        ({"user_features": {"age": pb.FeatureValue(float_value=math.inf)}}, 'user_features["age"]: must be finite'),
        (
            {"user_features": {"country": pb.FeatureValue(string_list=pb.StringList(values=["DE"]))}},
            'user_features["country"]: expected string_value, got string_list',
        ),
        (
            {"user_features": {"genres": pb.FeatureValue(string_value="drama")}},
            'user_features["genres"]: expected string_list, got string_value',
        ),
        (
            {"user_features": {"genres": pb.FeatureValue(string_list=pb.StringList(values=["a", "b", "c", "d"]))}},
            'user_features["genres"]: at most 3 values, got 4',
        ),
        (
            {"user_features": {"genres": pb.FeatureValue(string_list=pb.StringList(values=["a", ""]))}},
            'user_features["genres"].string_list.values[1]: must not be empty',
        ),
        ({"history_item_ids": ["x"] * 31}, "history_item_ids: at most 30 ids, got 31"),
        ({"history_item_ids": ["x", ""]}, "history_item_ids[1]: must not be empty"),
        ({"exclude_item_ids": ["x"] * 21}, "exclude_item_ids: at most 20 ids, got 21"),
        ({"exclude_item_ids": ["i" * 65]}, "exclude_item_ids[0]: longer than 64"),
        (
            {"exclude_item_ids": ["x"] * 15, "history_item_ids": ["y"] * 6, "exclude_history": True},
            "exclude_item_ids: at most 20 exclusions counting the history (exclude_history), got 21",
        ),
    ],
)
def test_invalid_requests_name_the_field(request_kwargs: dict, message: str) -> None:
    assert _error(_request(**request_kwargs)).startswith(message)


def test_history_counts_against_exclusions_only_when_excluded() -> None:
    request = _request(exclude_item_ids=["x"] * 15, history_item_ids=["y"] * 6)
    assert validate_request(request, SPEC, LIMITS).exclude == {"x"}


def test_feature_spec_reported_to_clients() -> None:
    kinds = {f.name: feature_kind(f) for f in request_features(SPEC)}
    assert kinds == {
        "genres": pb.FEATURE_KIND_STRING_LIST,
        "country": pb.FEATURE_KIND_STRING,
        "age": pb.FEATURE_KIND_FLOAT,
    }


def test_within_prefixes_the_field() -> None:
    error = InvalidRequest("num_candidates", "bad").within("requests[3].")
    assert (error.field, str(error)) == ("requests[3].num_candidates", "requests[3].num_candidates: bad")


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_k"):
        ServiceLimits(max_k=0)
