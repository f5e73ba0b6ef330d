"""The filterable attributes of one serving version, indexed for filters: per token, the rows that carry it.

Built once per loaded version from the bundle's attribute columns (`model.bundle.attributes`): a categorical or
multi-valued attribute becomes an inverted list (token -> sorted catalog rows, CSR layout), a numeric one a
float64 array with NaN for "no value". `service.filters` turns a request's restricts into a row mask with them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.bundle.contract import AttributeKind

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TokenIndex:
    """Inverted lists of one categorical attribute.

    Attributes:
        codes: token -> its code c; the rows carrying it are rows[offsets[c]:offsets[c + 1]].
        offsets: [V + 1] int64.
        rows: [total tokens] int64 catalog rows, grouped by code.
    """

    codes: Mapping[str, int]
    offsets: np.ndarray
    rows: np.ndarray

    def rows_of(self, token: str) -> np.ndarray:
        """The rows carrying `token` (empty for a token no item has)."""
        code = self.codes.get(token)
        if code is None:
            return self.rows[:0]
        return self.rows[self.offsets[code] : self.offsets[code + 1]]


class AttributeTable:
    """Every filterable attribute of a catalog of `size` items.

    Args:
        size: N, the catalog size (row i = FAISS id i).
        columns: attribute name -> (kind, Arrow array [N] of the kind's type).
    """

    def __init__(self, size: int, columns: Mapping[str, tuple[AttributeKind, pa.Array]]) -> None:
        self.size = size
        self.kinds: dict[str, AttributeKind] = {}
        self._tokens: dict[str, TokenIndex] = {}
        self._numbers: dict[str, np.ndarray] = {}
        for name, (kind, array) in columns.items():
            if len(array) != size:
                raise ValueError(f"attribute {name!r}: {len(array)} values for {size} items")
            if not kind.fits(array.type):
                raise ValueError(
                    f"attribute {name!r}: a {kind.value} attribute needs {kind.arrow_type}, got {array.type}"
                )
            self.kinds[name] = kind
            if kind is AttributeKind.NUMERIC:
                self._numbers[name] = array.to_numpy(zero_copy_only=False).astype(np.float64)
            else:
                self._tokens[name] = _token_index(array, kind)
        logger.info("attribute table built items=%d attributes=%s", size, {n: k.value for n, k in self.kinds.items()})

    @classmethod
    def empty(cls, size: int) -> AttributeTable:
        """A table without attributes (bundles exported without any)."""
        return cls(size, {})

    def rows_with_any(self, name: str, tokens: Iterable[str]) -> np.ndarray:
        """[N] bool: which items carry at least one of `tokens` in categorical attribute `name`."""
        mask = np.zeros(self.size, dtype=bool)
        index = self._tokens[name]
        for token in tokens:
            mask[index.rows_of(token)] = True
        return mask

    def values(self, name: str) -> np.ndarray:
        """[N] float64 values of numeric attribute `name` (NaN: no value)."""
        return self._numbers[name]


def _token_index(array: pa.Array, kind: AttributeKind) -> TokenIndex:
    if kind is AttributeKind.MULTI_CATEGORICAL:
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False).astype(np.int64)
        tokens = pc.list_flatten(array)
    else:
        parents, tokens = np.arange(len(array), dtype=np.int64), array
    valid = tokens.is_valid().to_numpy(zero_copy_only=False)
    encoded = pc.dictionary_encode(tokens)
    codes = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)[valid]
    vocabulary = encoded.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    offsets = np.zeros(len(vocabulary) + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=len(vocabulary)), out=offsets[1:])
    return TokenIndex({token: code for code, token in enumerate(vocabulary)}, offsets, parents[valid][order])
