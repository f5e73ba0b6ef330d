"""Token ids of item sequences: padding, out-of-vocabulary, the items, and the mask token.

Item internal id i (catalog row i) is token i + ITEM_OFFSET. Token 0 is padding and token 1 the
out-of-vocabulary item, the order in which `keras.layers.StringLookup(vocabulary=catalog ids,
mask_token="", num_oov_indices=1)` numbers its outputs, so a served history of external ids is looked up
straight into these tokens. The mask token comes after the items: num_items + ITEM_OFFSET.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PAD_TOKEN = 0
OOV_TOKEN = 1
ITEM_OFFSET = 2


@dataclass(frozen=True)
class SequenceVocabulary:
    """The token space of a catalog of `num_items` items.

    Attributes:
        num_items: catalog size N; items are tokens [ITEM_OFFSET, ITEM_OFFSET + N).
    """

    num_items: int

    def __post_init__(self) -> None:
        if self.num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {self.num_items}")

    @property
    def mask_token(self) -> int:
        """The token that marks a position whose item the model must predict."""
        return self.num_items + ITEM_OFFSET

    @property
    def size(self) -> int:
        """Rows of a token embedding table: padding, OOV, the items and the mask token."""
        return self.num_items + ITEM_OFFSET + 1

    def tokens(self, item_ids: Any) -> np.ndarray:
        """int64 tokens of internal item ids (any shape)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_items):
            raise ValueError(f"item ids must be in [0, {self.num_items}), got [{ids.min()}, {ids.max()}]")
        return ids + ITEM_OFFSET
