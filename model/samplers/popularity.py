"""Popularity negatives: ids drawn from the item frequency distribution, embedded by the item tower."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from model.samplers.base import ItemEncoder, NegativeSampler, NegativeSamples


@keras.saving.register_keras_serializable(package="retrieval")
class PopularitySampler(NegativeSampler):
    """Draws `num_samples` ids i.i.d. (with replacement) from fixed probabilities p_i.

    Sampling uses the inverse CDF (O(num_samples * log num_items)), so large catalogs are cheap. The
    candidates' embeddings come from the item tower, with gradient, and `log_q` is the exact log p_i.
    Build it with `from_counts` (p ∝ count ** power) or `log_uniform` (Zipfian over frequency ranks).

    Args:
        probabilities: [num_items] sampling probabilities (normalised here).
        num_samples: negatives drawn per batch.
        seed: seed of the sampler's random stream.
    """

    def __init__(
        self, probabilities: Sequence[float] | np.ndarray, num_samples: int, seed: int | None = None, **kwargs: Any
    ):
        super().__init__(**kwargs)
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 1 or p.size == 0 or np.any(p < 0) or not np.all(np.isfinite(p)) or p.sum() <= 0:
            raise ValueError(
                "probabilities must be a non-empty 1-D array of finite values >= 0 with a positive sum, "
                f"got shape {p.shape}"
            )
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        p = p / p.sum()
        self.probabilities = [float(x) for x in p]
        self.num_samples = int(num_samples)
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)
        cdf = np.cumsum(p)
        cdf[-1] = 1.0
        self._cdf = ops.convert_to_tensor(cdf.astype(np.float64))
        with np.errstate(divide="ignore"):
            self._log_p = ops.convert_to_tensor(np.log(p).astype(np.float32))

    @classmethod
    def from_counts(
        cls, counts: Sequence[float] | np.ndarray, num_samples: int, power: float = 1.0, seed: int | None = None
    ) -> PopularitySampler:
        """p_i ∝ (count_i + 1) ** power; power 0.75 is the word2vec choice, 1.0 the raw frequency."""
        return cls(np.power(np.asarray(counts, dtype=np.float64) + 1.0, power), num_samples, seed=seed)

    @classmethod
    def log_uniform(
        cls, counts: Sequence[float] | np.ndarray, num_samples: int, seed: int | None = None
    ) -> PopularitySampler:
        """Log-uniform (Zipfian) over items sorted by decreasing count: P(rank r) = log((r+2)/(r+1)) / log(N+1)."""
        values = np.asarray(counts, dtype=np.float64)
        ranks = np.empty(values.size, dtype=np.float64)
        ranks[np.argsort(-values, kind="stable")] = np.arange(values.size)
        p = np.log((ranks + 2.0) / (ranks + 1.0)) / np.log(values.size + 1.0)
        return cls(p, num_samples, seed=seed)

    @property
    def provides_probabilities(self) -> bool:
        return True

    def draw(self) -> Any:
        """[num_samples] int64 ids drawn from the distribution."""
        u = keras.random.uniform((self.num_samples,), dtype="float64", seed=self._seed_generator)
        ids = ops.searchsorted(self._cdf, u, side="right")
        return ops.minimum(ops.cast(ids, "int64"), len(self.probabilities) - 1)

    def sample(self, positive_ids: Any, positive_embeddings: Any, item_encoder: ItemEncoder) -> NegativeSamples:
        ids = self.draw()
        return NegativeSamples(ids=ids, embeddings=item_encoder(ids), log_q=self.log_q(ids))

    def log_q(self, ids: Any) -> Any:
        return ops.take(self._log_p, ops.cast(ids, "int64"), axis=0)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "probabilities": self.probabilities,
            "num_samples": self.num_samples,
            "seed": self.seed,
        }
