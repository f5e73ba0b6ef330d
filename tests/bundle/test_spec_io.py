"""TowerSpec <-> dict: exact round trip through JSON, and strict parsing."""

from __future__ import annotations

import json

import pytest

from model.bundle.spec_io import SpecFormatError, tower_spec_from_dict, tower_spec_to_dict
from model.features import CategoricalFeature, EmbeddingDimRule, NumericFeature, TowerSpec


def _spec() -> TowerSpec:
    """Non-default value for every field of every dataclass."""
    return TowerSpec(
        name="query",
        features=(
            CategoricalFeature("user_id", ("u1", "ü2", "u 3"), embedding_dim=12, num_oov_buckets=3),
            CategoricalFeature("genres", ("drama", "comedy"), embedding_dim=None, num_oov_buckets=2, max_values=5),
            NumericFeature("age", mean=33.125, std=0.1 + 0.2),
        ),
        hidden_units=(96, 48),
        output_dim=24,
        dropout=0.25,
        l2_normalize=True,
        embedding_rule=EmbeddingDimRule(default_dim=20, multiplier=6.5, multiple_of=4, min_dim=4, max_dim=64),
    )


def test_round_trip_through_json_is_exact() -> None:
    spec = _spec()
    restored = tower_spec_from_dict(json.loads(json.dumps(tower_spec_to_dict(spec))))
    assert restored == spec
    assert restored.feature("age") == NumericFeature("age", mean=33.125, std=0.1 + 0.2)  # floats bit-exact


def test_default_rule_round_trips() -> None:
    spec = TowerSpec("item", (NumericFeature("price"),))
    assert tower_spec_from_dict(tower_spec_to_dict(spec)) == spec


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("hidden_units"), r"query_tower: missing field\(s\) \['hidden_units'\]"),
        (lambda d: d.update(extra=1), r"query_tower: unknown field\(s\) \['extra'\]"),
        (lambda d: d.update(output_dim="24"), r"query_tower.output_dim: expected int, got str"),
        (lambda d: d.update(output_dim=True), r"query_tower.output_dim: expected int, got bool"),
        (lambda d: d["features"][0].update(kind="blob"), r"query_tower.features\[0\].kind"),
        (lambda d: d["features"][1].update(vocabulary=["a", 3]), r"features\[1\].vocabulary: every entry"),
        (lambda d: d["features"][2].update(std=-1.0), r"features\[2\]: .*std must be positive"),
        (lambda d: d["embedding_rule"].pop("min_dim"), r"query_tower.embedding_rule: missing"),
        (lambda d: d.update(hidden_units=[8, 2.5]), r"query_tower.hidden_units: expected a list of integers"),
    ],
)
def test_malformed_dicts_name_the_field(mutate, message: str) -> None:
    data = tower_spec_to_dict(_spec())
    mutate(data)
    with pytest.raises(SpecFormatError, match=message):
        tower_spec_from_dict(data, "query_tower")
