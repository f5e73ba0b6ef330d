import pytest

from model.features import CategoricalFeature, EmbeddingDimRule, NumericFeature, TowerSpec


def test_default_rule_gives_default_dim():
    assert EmbeddingDimRule(default_dim=24).dim_for(10_000) == 24


@pytest.mark.parametrize(
    ("cardinality", "expected"),
    # 6 * 16**0.25 = 12 -> 16; 6 * 10_000**0.25 = 60 -> 64; 6 * 1e6**0.25 = 189.7 -> 192; 6 * 2**0.25 = 7.1 -> 8
    [(16, 16), (10_000, 64), (1_000_000, 192), (2, 8)],
)
def test_cardinality_rule_rounds_to_multiple_of_8(cardinality, expected):
    assert EmbeddingDimRule(multiplier=6.0, max_dim=200).dim_for(cardinality) == expected


def test_cardinality_rule_is_bounded():
    assert EmbeddingDimRule(multiplier=6.0, max_dim=128).dim_for(10**9) == 128


def test_feature_cardinality_counts_oov_buckets():
    f = CategoricalFeature("user_id", ("a", "b", "c"), num_oov_buckets=2)
    assert f.cardinality == 5
    assert f.resolved_dim(EmbeddingDimRule(default_dim=12)) == 12
    assert CategoricalFeature("x", ("a",), embedding_dim=4).resolved_dim(EmbeddingDimRule()) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "vocabulary": ("a",)}, "names must be"),
        ({"name": "x", "vocabulary": ("a", "a")}, "duplicates"),
        ({"name": "x", "vocabulary": ("",)}, "reserved for padding"),
        ({"name": "x", "vocabulary": ("a",), "num_oov_buckets": 0}, "num_oov_buckets"),
        ({"name": "x", "vocabulary": ("a",), "embedding_dim": 0}, "embedding_dim"),
    ],
)
def test_categorical_feature_errors_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CategoricalFeature(**kwargs)


def test_numeric_feature_rejects_bad_std():
    with pytest.raises(ValueError, match="std must be positive"):
        NumericFeature("age", std=0.0)


def test_tower_spec_validation_and_lookup():
    spec = TowerSpec("query", (CategoricalFeature("user_id", ("a",)), NumericFeature("age")))
    assert spec.feature("age") == NumericFeature("age")
    with pytest.raises(KeyError, match="no feature 'zip'"):
        spec.feature("zip")
    with pytest.raises(ValueError, match="duplicate feature names"):
        TowerSpec("query", (NumericFeature("a"), NumericFeature("a")))
    with pytest.raises(ValueError, match="dropout"):
        TowerSpec("query", (NumericFeature("a"),), dropout=1.0)
