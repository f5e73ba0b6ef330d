"""A test oracle for item filters: the filter semantics of retrieval.proto evaluated item by item in plain Python,
and the exact filtered top k by scoring every item (no FAISS, no `service.filters`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.generated.retrieval.v1 import retrieval_pb2 as pb

_COMPARE = {
    pb.NumericRestrict.OPERATOR_LESS: lambda a, b: a < b,
    pb.NumericRestrict.OPERATOR_LESS_EQUAL: lambda a, b: a <= b,
    pb.NumericRestrict.OPERATOR_EQUAL: lambda a, b: a == b,
    pb.NumericRestrict.OPERATOR_GREATER_EQUAL: lambda a, b: a >= b,
    pb.NumericRestrict.OPERATOR_GREATER: lambda a, b: a > b,
    pb.NumericRestrict.OPERATOR_NOT_EQUAL: lambda a, b: a != b,
}


def _tokens(value: Any) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        return {value} if value else set()
    return {t for t in value if t}


def passes(item: Mapping[str, Any], message: pb.ItemFilter) -> bool:
    """Whether one item (attribute name -> value) passes the filter, as the proto's comments define it."""
    for restrict in message.categorical:
        tokens = _tokens(item.get(restrict.namespace))
        if restrict.allow and not tokens & set(restrict.allow):
            return False
        if tokens & set(restrict.deny):
            return False
    for number in message.numeric:
        value = item.get(number.namespace)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if not _COMPARE[number.op](value, number.value):
            return False
    return True


def filtered_top_k(
    vector: np.ndarray,
    embeddings: np.ndarray,
    items: Sequence[Mapping[str, Any]],
    message: pb.ItemFilter,
    k: int,
    exclude: set[int] = frozenset(),  # type: ignore[assignment]
) -> tuple[list[int], np.ndarray, int]:
    """(rows, scores, number passing) of the exact top k passing items, scoring every item in float64."""
    scores = embeddings.astype(np.float64) @ vector.astype(np.float64)
    passing = [r for r in range(len(items)) if r not in exclude and passes(items[r], message)]
    ranked = sorted(passing, key=lambda r: -scores[r])[:k]
    return ranked, scores[ranked], len(passing)


def assert_same_top(
    rows: Sequence[int], scores: Sequence[float], expected: Sequence[int], expected_scores: Any
) -> None:
    """Same scores in order, and the same items up to ties at the cut (scores within 1e-4 of each other)."""
    assert len(rows) == len(expected), (list(rows), list(expected))
    np.testing.assert_allclose(np.asarray(scores, dtype=np.float64), np.asarray(expected_scores), atol=1e-4)
    if len(rows):
        cut = float(np.asarray(expected_scores)[-1])
        differ = set(rows) ^ set(expected)
        assert all(abs(float(s) - cut) < 1e-4 for r, s in zip(rows, scores, strict=True) if r in differ), differ
