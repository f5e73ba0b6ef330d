"""A validated retrieval request: one row of raw query-tower inputs, k and the item ids to exclude."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.filters import ItemPredicate

# One raw tower input value: a categorical string, a ""-padded tuple of strings, or a float (NaN: missing).
FeatureInput = str | float | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """What the engine needs to answer one request.

    Attributes:
        features: one value per query-tower input, every input present (defaults filled in).
        k: number of candidates wanted (>= 1).
        exclude: external item ids that must not be returned (unknown ids are ignored).
        display: the display attributes to return with each candidate (none by default).
        request_id: the caller's id, echoed in the response.
        items: catalog rows whose mean item embedding is the query ("more like this"); empty: the query tower
            embeds `features`.
        filter: the items that may be returned (validated against the serving version's attributes); None: all.
    """

    features: Mapping[str, FeatureInput]
    k: int
    exclude: frozenset[str] = frozenset()
    display: tuple[str, ...] = ()
    request_id: str = ""
    items: tuple[int, ...] = ()
    filter: ItemPredicate | None = None
