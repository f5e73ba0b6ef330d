"""TowerSpec <-> JSON-ready dict, an exact round trip (vocabularies, OOV buckets, statistics, sizes, rule).

The dict is what `manifest.json` stores as the query tower's schema, so that a server can validate requests
without Keras. Parsing is strict: a missing, unknown or mistyped key raises `SpecFormatError` naming its path
(e.g. `query_tower.features[1].vocabulary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model.features import CategoricalFeature, EmbeddingDimRule, Feature, NumericFeature, TowerSpec

CATEGORICAL = "categorical"
NUMERIC = "numeric"


class SpecFormatError(ValueError):
    """A tower spec dict is malformed; the message names the offending field."""


def tower_spec_to_dict(spec: TowerSpec) -> dict[str, Any]:
    """Serialises a tower spec to plain JSON types.

    Args:
        spec: the tower.

    Returns:
        `{"name", "features": [...], "hidden_units", "output_dim", "dropout", "l2_normalize",
        "embedding_rule"}`; each feature carries a `"kind"` of "categorical" or "numeric".
    """
    rule = spec.embedding_rule
    return {
        "name": spec.name,
        "features": [_feature_to_dict(f) for f in spec.features],
        "hidden_units": list(spec.hidden_units),
        "output_dim": spec.output_dim,
        "dropout": spec.dropout,
        "l2_normalize": spec.l2_normalize,
        "embedding_rule": {
            "default_dim": rule.default_dim,
            "multiplier": rule.multiplier,
            "multiple_of": rule.multiple_of,
            "min_dim": rule.min_dim,
            "max_dim": rule.max_dim,
        },
    }


def _feature_to_dict(feature: Feature) -> dict[str, Any]:
    if isinstance(feature, CategoricalFeature):
        return {
            "kind": CATEGORICAL,
            "name": feature.name,
            "vocabulary": list(feature.vocabulary),
            "embedding_dim": feature.embedding_dim,
            "num_oov_buckets": feature.num_oov_buckets,
            "max_values": feature.max_values,
        }
    return {"kind": NUMERIC, "name": feature.name, "mean": feature.mean, "std": feature.std}


def tower_spec_from_dict(data: Any, where: str = "tower") -> TowerSpec:
    """Parses the output of `tower_spec_to_dict`.

    Args:
        data: the dict (e.g. from `json.load`).
        where: path of `data` in the enclosing document, used in error messages.

    Returns:
        The equal TowerSpec.

    Raises:
        SpecFormatError: on a missing, unknown or mistyped field, or values the dataclasses reject.
    """
    obj = _object(
        data,
        where,
        {"name", "features", "hidden_units", "output_dim", "dropout", "l2_normalize", "embedding_rule"},
    )
    features_raw = _get(obj, "features", list, where)
    features = tuple(_feature_from_dict(f, f"{where}.features[{i}]") for i, f in enumerate(features_raw))
    rule_where = f"{where}.embedding_rule"
    rule_obj = _object(
        obj["embedding_rule"], rule_where, {"default_dim", "multiplier", "multiple_of", "min_dim", "max_dim"}
    )
    multiplier = rule_obj["multiplier"]
    if multiplier is not None:
        multiplier = float(_get(rule_obj, "multiplier", (int, float), rule_where))
    rule = _construct(
        EmbeddingDimRule,
        rule_where,
        default_dim=_get(rule_obj, "default_dim", int, rule_where),
        multiplier=multiplier,
        multiple_of=_get(rule_obj, "multiple_of", int, rule_where),
        min_dim=_get(rule_obj, "min_dim", int, rule_where),
        max_dim=_get(rule_obj, "max_dim", int, rule_where),
    )
    return _construct(
        TowerSpec,
        where,
        name=_get(obj, "name", str, where),
        features=features,
        hidden_units=tuple(_int_list(obj, "hidden_units", where)),
        output_dim=_get(obj, "output_dim", int, where),
        dropout=float(_get(obj, "dropout", (int, float), where)),
        l2_normalize=_get(obj, "l2_normalize", bool, where),
        embedding_rule=rule,
    )


def _feature_from_dict(data: Any, where: str) -> Feature:
    if not isinstance(data, Mapping):
        raise SpecFormatError(f"{where}: expected an object, got {type(data).__name__}")
    kind = data.get("kind")
    if kind == CATEGORICAL:
        obj = _object(data, where, {"kind", "name", "vocabulary", "embedding_dim", "num_oov_buckets", "max_values"})
        vocabulary = _get(obj, "vocabulary", list, where)
        if not all(isinstance(v, str) for v in vocabulary):
            raise SpecFormatError(f"{where}.vocabulary: every entry must be a string")
        dim = obj["embedding_dim"]
        return _construct(
            CategoricalFeature,
            where,
            name=_get(obj, "name", str, where),
            vocabulary=tuple(vocabulary),
            embedding_dim=None if dim is None else _get(obj, "embedding_dim", int, where),
            num_oov_buckets=_get(obj, "num_oov_buckets", int, where),
            max_values=_get(obj, "max_values", int, where),
        )
    if kind == NUMERIC:
        obj = _object(data, where, {"kind", "name", "mean", "std"})
        return _construct(
            NumericFeature,
            where,
            name=_get(obj, "name", str, where),
            mean=float(_get(obj, "mean", (int, float), where)),
            std=float(_get(obj, "std", (int, float), where)),
        )
    raise SpecFormatError(f"{where}.kind: expected {CATEGORICAL!r} or {NUMERIC!r}, got {kind!r}")


def _object(data: Any, where: str, keys: set[str]) -> Mapping[str, Any]:
    """Checks that `data` is a mapping with exactly `keys`."""
    if not isinstance(data, Mapping):
        raise SpecFormatError(f"{where}: expected an object, got {type(data).__name__}")
    missing, unknown = keys - data.keys(), data.keys() - keys
    if missing:
        raise SpecFormatError(f"{where}: missing field(s) {sorted(missing)}")
    if unknown:
        raise SpecFormatError(f"{where}: unknown field(s) {sorted(unknown)}")
    return data


def _get(obj: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    value = obj[key]
    # bool is an int subclass: accept it only where bool is asked for.
    if isinstance(value, bool) and types is not bool:
        raise SpecFormatError(f"{where}.{key}: expected {_type_names(types)}, got bool {value!r}")
    if not isinstance(value, types):
        raise SpecFormatError(f"{where}.{key}: expected {_type_names(types)}, got {type(value).__name__}")
    return value


def _int_list(obj: Mapping[str, Any], key: str, where: str) -> list[int]:
    values = _get(obj, key, list, where)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise SpecFormatError(f"{where}.{key}: expected a list of integers, got {values!r}")
    return values


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))


def _construct(cls: Any, where: str, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ValueError as error:
        raise SpecFormatError(f"{where}: {error}") from error
