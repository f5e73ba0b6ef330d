"""The filtered queries of one micro-batch: grouped by filter, each group answered by one planned search.

Queries that carry the same filter (equal `ItemPredicate`s) share one evaluation of it, cached per serving
version (`PassingRowsCache`), and one search of the planner: one product over the passing rows (brute force),
or one FAISS call. Exclusions stay per query: a group searches for max(k + |exclusions|) of its queries, and
each query drops its excluded rows and keeps its k.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from service.attributes import AttributeTable
from service.filter_planner import Answer, FilterPlanner
from service.filters import ItemPredicate
from service.passing_rows import PassingRowsCache

logger = logging.getLogger(__name__)


class FilteredSearch:
    """Answers filtered queries over one serving version.

    Args:
        planner: the version's planner (index and item embeddings).
        attributes: the version's filterable attributes.
    """

    def __init__(self, planner: FilterPlanner, attributes: AttributeTable) -> None:
        self.planner = planner
        self.attributes = attributes
        self.cache = PassingRowsCache(planner.cache_bytes)

    def search(
        self,
        vectors: np.ndarray,
        filters: Sequence[ItemPredicate],
        ks: Sequence[int],
        excluded: Sequence[np.ndarray],
    ) -> list[Answer]:
        """Per query i: the top ks[i] rows that pass filters[i] and are not in excluded[i].

        Args:
            vectors: [B, d] float32 queries.
            filters: B predicates.
            ks: B cutoffs.
            excluded: B int64 arrays of catalog rows.

        Returns:
            B answers, best first; fewer than ks[i] rows only when fewer pass (or, on an approximate index, were
            found).
        """
        groups: dict[ItemPredicate, list[int]] = {}
        for i, predicate in enumerate(filters):
            groups.setdefault(predicate, []).append(i)
        answers: list[Answer] = [None] * len(filters)  # type: ignore[list-item]
        for predicate, members in groups.items():
            passing = self.cache.get(predicate, lambda p=predicate: p.mask(self.attributes))  # type: ignore[misc]
            fetch = max(ks[i] + len(excluded[i]) for i in members)
            found, strategy = self.planner.search_many(vectors[members], passing, fetch)
            logger.debug("filter group queries=%d passing=%d strategy=%s", len(members), len(passing), strategy.value)
            for i, (rows, scores) in zip(members, found, strict=True):
                if len(excluded[i]):
                    keep = ~np.isin(rows, excluded[i])
                    rows, scores = rows[keep], scores[keep]
                answers[i] = (rows[: ks[i]], scores[: ks[i]])
        return answers
