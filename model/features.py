"""Feature specification: which columns feed which tower, and how they are embedded.

Everything is explicit: a tower lists its features, each feature says its kind, vocabulary and embedding size.
There are no schema tags and no string registries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_EMBEDDING_DIM = 32


@dataclass(frozen=True)
class EmbeddingDimRule:
    """How to size a categorical embedding that does not state its own dimension.

    Attributes:
        default_dim: dimension used when `multiplier` is None.
        multiplier: when set, dim = multiplier * cardinality ** 0.25, rounded to a multiple of `multiple_of`.
        multiple_of: rounding granularity of the cardinality rule.
        min_dim: lower bound of the cardinality rule.
        max_dim: upper bound of the cardinality rule.
    """

    default_dim: int = DEFAULT_EMBEDDING_DIM
    multiplier: float | None = None
    multiple_of: int = 8
    min_dim: int = 8
    max_dim: int = 512

    def __post_init__(self) -> None:
        if self.default_dim <= 0:
            raise ValueError(f"default_dim must be positive, got {self.default_dim}")
        if self.multiplier is not None and self.multiplier <= 0:
            raise ValueError(f"multiplier must be positive, got {self.multiplier}")
        if self.multiple_of <= 0 or self.min_dim <= 0 or self.max_dim < self.min_dim:
            raise ValueError(
                f"bad bounds: multiple_of={self.multiple_of}, min_dim={self.min_dim}, max_dim={self.max_dim}"
            )

    def dim_for(self, cardinality: int) -> int:
        """Embedding dimension for a vocabulary of `cardinality` entries."""
        if self.multiplier is None:
            return self.default_dim
        raw = self.multiplier * max(cardinality, 1) ** 0.25
        rounded = self.multiple_of * max(1, round(raw / self.multiple_of))
        return int(min(self.max_dim, max(self.min_dim, rounded)))


@dataclass(frozen=True)
class CategoricalFeature:
    """A string-valued feature looked up in a fixed vocabulary.

    Attributes:
        name: input name (the column, and the key of the tower's input dict).
        vocabulary: known values; anything else maps to one of `num_oov_buckets` out-of-vocabulary rows.
        embedding_dim: explicit embedding size; None lets the tower's `EmbeddingDimRule` decide.
        num_oov_buckets: number of hashed out-of-vocabulary rows (at least 1).
        max_values: 0 for a single value per example ([B] strings); n > 0 for a multi-valued feature
            given as [B, n] strings padded with "" and mean-pooled (e.g. genres).
    """

    name: str
    vocabulary: tuple[str, ...]
    embedding_dim: int | None = None
    num_oov_buckets: int = 1
    max_values: int = 0

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.num_oov_buckets < 1:
            raise ValueError(f"feature {self.name!r}: num_oov_buckets must be >= 1, got {self.num_oov_buckets}")
        if self.embedding_dim is not None and self.embedding_dim <= 0:
            raise ValueError(f"feature {self.name!r}: embedding_dim must be positive, got {self.embedding_dim}")
        if self.max_values < 0:
            raise ValueError(f"feature {self.name!r}: max_values must be >= 0, got {self.max_values}")
        if "" in self.vocabulary:
            raise ValueError(f"feature {self.name!r}: the empty string is reserved for padding")
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError(f"feature {self.name!r}: vocabulary has duplicates")

    @property
    def cardinality(self) -> int:
        """Rows of the embedding table: vocabulary plus out-of-vocabulary buckets."""
        return len(self.vocabulary) + self.num_oov_buckets

    @property
    def multi_valued(self) -> bool:
        return self.max_values > 0

    def resolved_dim(self, rule: EmbeddingDimRule) -> int:
        return self.embedding_dim if self.embedding_dim is not None else rule.dim_for(self.cardinality)


@dataclass(frozen=True)
class NumericFeature:
    """A float feature, standardised as (x - mean) / std; NaN becomes 0 after standardisation.

    Attributes:
        name: input name.
        mean: value subtracted before scaling.
        std: scale (must be positive).
    """

    name: str
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not (self.std > 0 and math.isfinite(self.std)):
            raise ValueError(f"feature {self.name!r}: std must be positive and finite, got {self.std}")
        if not math.isfinite(self.mean):
            raise ValueError(f"feature {self.name!r}: mean must be finite, got {self.mean}")


Feature = CategoricalFeature | NumericFeature


@dataclass(frozen=True)
class TowerSpec:
    """One tower: its input features and the MLP on top of their concatenated embeddings.

    Attributes:
        name: tower name ("query" or "item"), also the Keras model name.
        features: the inputs, in order.
        hidden_units: widths of the hidden Dense layers (ReLU).
        output_dim: size of the output embedding.
        dropout: dropout rate after each hidden layer.
        l2_normalize: whether the output embedding is L2-normalised.
        embedding_rule: sizes categorical embeddings that do not state their own dimension.
    """

    name: str
    features: tuple[Feature, ...]
    hidden_units: tuple[int, ...] = (128,)
    output_dim: int = 64
    dropout: float = 0.0
    l2_normalize: bool = False
    embedding_rule: EmbeddingDimRule = field(default_factory=EmbeddingDimRule)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not self.features:
            raise ValueError(f"tower {self.name!r} has no features")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"tower {self.name!r} has duplicate feature names: {names}")
        if self.output_dim <= 0 or any(u <= 0 for u in self.hidden_units):
            raise ValueError(
                f"tower {self.name!r}: sizes must be positive, got hidden_units={self.hidden_units}, "
                f"output_dim={self.output_dim}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"tower {self.name!r}: dropout must be in [0, 1), got {self.dropout}")

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"tower {self.name!r} has no feature {name!r}; it has {[f.name for f in self.features]}")


def _check_name(name: str) -> None:
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"names must be non-empty and alphanumeric/underscore, got {name!r}")
