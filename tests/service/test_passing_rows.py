"""The passing rows of a filter (rows, mask, bitmap, an exact index of their embeddings) and their LRU cache,
bounded in bytes."""

from __future__ import annotations

import numpy as np

from service.passing_rows import PassingRows, PassingRowsCache


def test_passing_rows_build_each_view_once() -> None:
    mask = np.array([True, False, False, True, True, False, False, False, False, True])
    embeddings = np.arange(20, dtype=np.float32).reshape(10, 2)
    passing = PassingRows(mask)
    assert (len(passing), passing.fraction, passing.rows.tolist()) == (4, 0.4, [0, 3, 4, 9])
    assert passing.bitmap().tolist() == [0b00011001, 0b00000010]  # FAISS's IDSelectorBitmap: bit i of byte i // 8
    flat = passing.flat_index(embeddings)
    np.testing.assert_array_equal(flat.reconstruct_n(0, 4), embeddings[[0, 3, 4, 9]])  # id j: row rows[j]
    assert passing.flat_index(embeddings) is flat
    assert passing.nbytes == 4 * 8 + 10 + 2 + 4 * 2 * 4  # rows, mask, bitmap, the flat index's vectors


def _mask(size: int, rows: list[int]) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[rows] = True
    return mask


def test_the_cache_evaluates_a_filter_once_and_evicts_the_least_recently_used_by_bytes() -> None:
    built: list[str] = []

    def build(name: str, rows: list[int]) -> np.ndarray:
        built.append(name)
        return _mask(100, rows)

    # Each entry: 100 mask bytes + 8 bytes per row; the budget holds two entries of one row, not three.
    cache = PassingRowsCache(max_bytes=250)
    a = cache.get("a", lambda: build("a", [1]))
    assert cache.get("a", lambda: build("a", [1])) is a
    cache.get("b", lambda: build("b", [2]))
    cache.get("a", lambda: build("a", [1]))  # "a" is now the most recently used
    cache.get("c", lambda: build("c", [3]))  # evicts "b"
    cache.get("a", lambda: build("a", [1]))
    cache.get("b", lambda: build("b", [2]))
    assert built == ["a", "b", "c", "b"] and (cache.hits, cache.misses) == (3, 4) and len(cache) == 2


def test_an_entry_that_grows_past_the_budget_is_dropped_on_the_next_get() -> None:
    cache = PassingRowsCache(max_bytes=300)
    big = cache.get("big", lambda: _mask(100, list(range(10))))  # 100 + 80 bytes
    big.flat_index(np.zeros((100, 4), dtype=np.float32))  # + 160 bytes: over the budget
    cache.get("small", lambda: _mask(100, [0]))
    assert len(cache) == 1 and cache.get("small", lambda: _mask(100, [5])).rows.tolist() == [0]
