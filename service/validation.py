"""Validates a RetrieveCandidatesRequest against the query tower's feature spec and the service limits.

Every refusal is an `InvalidRequest` naming the field and the value received. A valid request becomes a
`Query`: one raw tower input per feature, with defaults for the optional features the request leaves out
("" for a categorical, all-"" padding for a multi-valued one, NaN for a numeric one).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

# The tower inputs that the request's `user_id` and `history_item_ids` fields feed; not accepted in `user_features`.
from model.bundle.contract import (
    HISTORY_FEATURE,
    USER_ID_FEATURE,
    AttributeKind,
    CategoricalFeature,
    Feature,
    TowerSpec,
)
from service.config import ServiceLimits
from service.errors import InvalidRequest
from service.filters import compile_filter
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.query import FeatureInput, Query


def value_field(feature: Feature) -> str:
    """The FeatureValue oneof field that a request must set for `feature`."""
    if isinstance(feature, CategoricalFeature):
        return "string_list" if feature.multi_valued else "string_value"
    return "float_value"


def feature_kind(feature: Feature) -> pb.FeatureKind:
    """The `FeatureKind` enum value that GetServiceInfo reports for `feature`."""
    return {
        "string_value": pb.FEATURE_KIND_STRING,
        "string_list": pb.FEATURE_KIND_STRING_LIST,
        "float_value": pb.FEATURE_KIND_FLOAT,
    }[value_field(feature)]


def request_features(spec: TowerSpec) -> list[Feature]:
    """The features a request may set in `user_features` (all tower inputs but the user id and history)."""
    return [f for f in spec.features if f.name not in (USER_ID_FEATURE, HISTORY_FEATURE)]


def history_length(spec: TowerSpec) -> int:
    """How many recent items a sequential query tower reads (0 when the tower takes no history)."""
    for feature in spec.features:
        if feature.name == HISTORY_FEATURE and isinstance(feature, CategoricalFeature):
            return feature.max_values
    return 0


# The display_attributes entry that selects every display attribute.
ALL_DISPLAY = "*"


def validate_request(
    request: pb.RetrieveCandidatesRequest,
    spec: TowerSpec,
    limits: ServiceLimits,
    display_names: Collection[str] = (),
    attribute_kinds: Mapping[str, AttributeKind] | None = None,
) -> Query:
    """Checks `request` and converts it to a `Query`.

    Args:
        request: the request as received.
        spec: the query tower's feature spec.
        limits: the service's request limits.
        display_names: the display attributes that the serving bundle has.
        attribute_kinds: the filterable attributes of the serving bundle, with their kinds.

    Raises:
        InvalidRequest: naming the first offending field.
    """
    check_string("user_id", request.user_id, limits, allow_empty=False)
    check_string("request_id", request.request_id, limits, allow_empty=True)
    check_k(request.num_candidates, limits)
    check_ids("history_item_ids", request.history_item_ids, limits.max_history, limits)
    check_ids("exclude_item_ids", request.exclude_item_ids, limits.max_exclusions, limits)
    exclude = set(request.exclude_item_ids)
    if request.exclude_history:
        exclude.update(request.history_item_ids)
        count = len(request.exclude_item_ids) + len(request.history_item_ids)
        if count > limits.max_exclusions:
            raise InvalidRequest(
                "exclude_item_ids",
                f"at most {limits.max_exclusions} exclusions counting the history (exclude_history), got {count}",
            )
    features = _convert_features(request, spec, limits)
    display = display_selection(request.display_attributes, display_names) if request.display_attributes else ()
    return Query(
        features=features,
        k=request.num_candidates,
        exclude=frozenset(exclude),
        display=display,
        request_id=request.request_id,
        filter=compile_filter(request.filter, attribute_kinds or {}, limits),
    )


def display_selection(selected: Sequence[str], names: Collection[str]) -> tuple[str, ...]:
    """The display attributes a request selected ("*": all), in the order asked, each once."""
    if ALL_DISPLAY in selected:
        return tuple(names)
    for i, name in enumerate(selected):
        if name not in names:
            raise InvalidRequest(
                f"display_attributes[{i}]", f"unknown display attribute {name!r}; known: {sorted(names)}"
            )
    return tuple(dict.fromkeys(selected))


def _convert_features(
    request: pb.RetrieveCandidatesRequest, spec: TowerSpec, limits: ServiceLimits
) -> dict[str, FeatureInput]:
    known = {f.name: f for f in request_features(spec)}
    for name in request.user_features:
        if name == USER_ID_FEATURE:
            raise InvalidRequest(f'user_features["{name}"]', "set the request's user_id field instead")
        if name == HISTORY_FEATURE:
            raise InvalidRequest(f'user_features["{name}"]', "set the request's history_item_ids field instead")
        if name not in known:
            raise InvalidRequest(f'user_features["{name}"]', f"unknown feature; known features: {sorted(known)}")
    row: dict[str, FeatureInput] = {}
    for feature in spec.features:
        if feature.name == USER_ID_FEATURE:
            row[feature.name] = request.user_id
        elif feature.name == HISTORY_FEATURE and isinstance(feature, CategoricalFeature):
            # The sequential tower reads the latest max_values items, most recent last.
            recent = tuple(request.history_item_ids)[-feature.max_values :] if feature.max_values else ()
            row[feature.name] = recent + ("",) * (feature.max_values - len(recent))
        elif feature.name in request.user_features:
            row[feature.name] = _convert_value(feature, request.user_features[feature.name], limits)
        else:
            row[feature.name] = _default(feature)
    return row


def _convert_value(feature: Feature, value: pb.FeatureValue, limits: ServiceLimits) -> FeatureInput:
    field = f'user_features["{feature.name}"]'
    expected, got = value_field(feature), value.WhichOneof("value")
    if expected == "float_value" and got == "int64_value":
        return float(value.int64_value)  # a number is a number: `age: 30` needs no float_value
    if got != expected:
        raise InvalidRequest(field, f"expected {expected}, got {got or 'no value'}")
    if expected == "float_value":
        if not math.isfinite(value.float_value):
            raise InvalidRequest(field, f"must be finite, got {value.float_value}")
        return float(value.float_value)
    if expected == "string_value":
        check_string(field, value.string_value, limits, allow_empty=True)
        return value.string_value
    assert isinstance(feature, CategoricalFeature)
    values = list(value.string_list.values)
    if len(values) > feature.max_values:
        raise InvalidRequest(field, f"at most {feature.max_values} values, got {len(values)}")
    for i, item in enumerate(values):
        check_string(f"{field}.string_list.values[{i}]", item, limits, allow_empty=False)
    return tuple(values) + ("",) * (feature.max_values - len(values))


def default_features(spec: TowerSpec, user_id: str) -> dict[str, FeatureInput]:
    """A tower input row for `user_id` with every other feature at its default (e.g. for warm-up)."""
    return {f.name: user_id if f.name == USER_ID_FEATURE else _default(f) for f in spec.features}


def _default(feature: Feature) -> FeatureInput:
    if isinstance(feature, CategoricalFeature):
        return ("",) * feature.max_values if feature.multi_valued else ""
    return math.nan


def check_k(k: int, limits: ServiceLimits) -> None:
    """num_candidates must be in [1, max_k]."""
    if not 1 <= k <= limits.max_k:
        raise InvalidRequest("num_candidates", f"must be in [1, {limits.max_k}], got {k}")


def check_ids(field: str, ids: Sequence[str], max_count: int, limits: ServiceLimits) -> None:
    if len(ids) > max_count:
        raise InvalidRequest(field, f"at most {max_count} ids, got {len(ids)}")
    for i, item_id in enumerate(ids):
        check_string(f"{field}[{i}]", item_id, limits, allow_empty=False)


def check_string(field: str, value: str, limits: ServiceLimits, *, allow_empty: bool) -> None:
    if not value and not allow_empty:
        raise InvalidRequest(field, "must not be empty")
    if len(value) > limits.max_string_length:
        raise InvalidRequest(field, f"longer than {limits.max_string_length} characters ({len(value)})")
