"""Batched inference helpers shared by the retrieval models (two-tower and sequential)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf


def cached_function(owner: Any, name: str, fn: Callable[..., Any]) -> Any:
    """A tf.function stored on `owner`, traced once per owner (not once per call), tolerant of a short last batch."""
    cache = owner.__dict__.setdefault("_inference_functions", {})
    if name not in cache:
        cache[name] = tf.function(fn, reduce_retracing=True)
    return cache[name]


def catalog_embeddings(encode: Callable[[Any], Any], num_items: int, batch_size: int) -> np.ndarray:
    """[num_items, d] float32 embeddings of item ids 0..num_items-1, encoded `batch_size` ids at a time."""
    parts = [
        encode(tf.range(start, min(start + batch_size, num_items), dtype=tf.int64)).numpy()
        for start in range(0, num_items, batch_size)
    ]
    return np.concatenate(parts, axis=0).astype(np.float32)
