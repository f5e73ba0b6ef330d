"""Helpers of the bundle tests that need no TensorFlow (tests/helpers.py imports Keras)."""

from __future__ import annotations

import numpy as np


def clustered(num_items: int, num_queries: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Items [num_items, dim] and queries [num_queries, dim] float32, drawn around 64 shared random centres
    (planted structure, like trained embeddings, so that IVF recall depends on nprobe)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    items = centres[rng.integers(0, 64, num_items)] + 0.3 * rng.standard_normal((num_items, dim))
    queries = centres[rng.integers(0, 64, num_queries)] + 0.3 * rng.standard_normal((num_queries, dim))
    return items.astype(np.float32), queries.astype(np.float32)
