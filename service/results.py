"""The answer to one query: catalog rows and scores, best first, with the model version that computed them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RetrievalResult:
    """The answer to one query.

    Attributes:
        rows: [n] int64 catalog rows (FAISS ids) of the returned items, best first.
        scores: [n] float32 similarity scores of those items.
        truncated: fewer than k items could be returned.
        model_name: the model that served the query.
        model_version: its version.
        display: per returned item, the display attributes its query selected (e.g. title); empty when it
            selected none.
        catalog: [N] external item ids of the serving version, row i = FAISS id i (shared, not copied): an array
            or the engine's `ItemIndex`, indexed by an array of rows.
    """

    rows: np.ndarray
    scores: np.ndarray
    truncated: bool
    model_name: str
    model_version: int
    display: tuple[dict[str, str], ...] = ()
    catalog: Any = field(default_factory=lambda: np.empty(0, dtype=object), repr=False, compare=False)

    @property
    def item_ids(self) -> tuple[str, ...]:
        """External item ids of the returned items, best first."""
        return tuple(self.catalog[self.rows].tolist())
