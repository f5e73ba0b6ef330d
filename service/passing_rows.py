"""The catalog rows that pass one item filter, with what each search strategy needs of them, and an LRU of them.

A filter is evaluated once per (serving version, filter): `PassingRowsCache` keeps the most recently used
`PassingRows` of one version (the engine owns one cache per version), bounded by the bytes they hold. Each
strategy builds only what it reads, once: brute force an exact FAISS index of the passing rows' embeddings (so
that a batch of queries scores them with one BLAS product, on the FAISS threads the server sizes per batch), the
selector a bitmap, over-fetch the mask.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import faiss
import numpy as np


class PassingRows:
    """The rows of a catalog of `size` items that pass one filter.

    Args:
        mask: [N] bool, True where the row passes.
    """

    def __init__(self, mask: np.ndarray) -> None:
        self.size = len(mask)
        self.rows = np.flatnonzero(mask).astype(np.int64)
        self._mask: np.ndarray | None = mask
        self._bitmap: np.ndarray | None = None
        self._flat: faiss.Index | None = None
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def fraction(self) -> float:
        """The filter's selectivity: passing rows / catalog size."""
        return len(self.rows) / max(self.size, 1)

    @property
    def mask(self) -> np.ndarray:
        """[N] bool."""
        return self._once("_mask", lambda: _mask_of(self.rows, self.size))

    def bitmap(self) -> np.ndarray:
        """[ceil(N / 8)] uint8, bit i (little-endian within a byte) set when row i passes: FAISS's IDSelectorBitmap."""
        return self._once("_bitmap", lambda: np.packbits(self.mask, bitorder="little"))

    def flat_index(self, embeddings: np.ndarray) -> faiss.Index:
        """An exact inner-product index of the passing rows' embeddings: its id j is catalog row `rows[j]`."""
        if self._flat is None:
            with self._lock:
                if self._flat is None:
                    flat = faiss.IndexFlatIP(embeddings.shape[1])
                    flat.add(np.ascontiguousarray(embeddings[self.rows], dtype=np.float32))
                    self._flat = flat
        return self._flat

    @property
    def nbytes(self) -> int:
        """Bytes held now (what the cache counts)."""
        held = sum(a.nbytes for a in (self.rows, self._mask, self._bitmap) if a is not None)
        return held + (self._flat.ntotal * self._flat.d * 4 if self._flat is not None else 0)

    def _once(self, name: str, build: Callable[[], np.ndarray]) -> np.ndarray:
        value: np.ndarray | None = getattr(self, name)
        if value is None:
            with self._lock:
                value = getattr(self, name)
                if value is None:
                    value = build()
                    setattr(self, name, value)
        return value


def _mask_of(rows: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[rows] = True
    return mask


class PassingRowsCache:
    """The most recently used `PassingRows` of one serving version, by filter, within `max_bytes`.

    Thread-safe. Entries grow after they are cached (the brute-force index is built on first use), so the budget is
    checked again on every `get`; the least recently used entries leave first. An entry bigger than the whole
    budget is still returned, just not kept.

    Args:
        max_bytes: the budget; 0 caches nothing.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, PassingRows] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, build: Callable[[], np.ndarray]) -> PassingRows:
        """The passing rows of filter `key`; `build()` gives its [N] bool mask on a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                self._evict()
                return entry
            self.misses += 1
        entry = PassingRows(build())  # outside the lock: two threads may both build the same filter, harmlessly
        with self._lock:
            self._entries[key] = entry
            self._evict()
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _evict(self) -> None:
        total = sum(e.nbytes for e in self._entries.values())
        while self._entries and total > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes
