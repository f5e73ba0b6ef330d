"""The item catalog: row i is item id i (the FAISS id), with its external id and raw tower features."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ItemCatalog:
    """Every item the model can retrieve.

    Attributes:
        external_ids: [num_items] external item ids (strings); position = internal id.
        features: raw item-tower inputs, each [num_items] or [num_items, n], aligned with `external_ids`.
        popularity: [num_items] training interaction counts.
        display: optional display columns (e.g. titles), aligned with `external_ids`; not model inputs.
    """

    external_ids: np.ndarray
    features: Mapping[str, np.ndarray]
    popularity: np.ndarray
    display: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.external_ids)
        if n == 0:
            raise ValueError("the item catalog is empty")
        if len(set(self.external_ids.tolist())) != n:
            raise ValueError("item catalog external ids are not unique")
        for name, values in {**self.features, **self.display, "popularity": self.popularity}.items():
            if len(values) != n:
                raise ValueError(f"catalog column {name!r} has {len(values)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.external_ids)

    def index(self) -> dict[str, int]:
        """External id -> internal id."""
        return {item: i for i, item in enumerate(self.external_ids.tolist())}
