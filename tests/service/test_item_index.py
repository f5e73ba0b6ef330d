"""The item id index: rows <-> ids like a dict would, colliding hashes told apart, FNV-1a as specified."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from service import item_index
from service.item_index import ItemIndex, fnv1a, fnv1a_one, utf8_buffers


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.text(max_size=40), max_size=80, unique=True),
    probes=st.lists(st.text(max_size=40)),
    hashed=st.booleans(),
)
def test_lookups_agree_with_a_dict(ids: list[str], probes: list[str], hashed: bool) -> None:
    """Both lookups: the dict of small catalogs and the hash search of large ones."""
    index = ItemIndex(ids, dict_max_items=-1 if hashed else None)
    reference = {item_id: row for row, item_id in enumerate(ids)}
    assert len(index) == len(ids)
    for item_id in [*ids, *probes]:
        assert index.row_of(item_id) == reference.get(item_id)
    wanted = [*probes, *ids[::-1]]
    assert index.rows_of(wanted).tolist() == [reference[i] for i in wanted if i in reference]
    rows = np.arange(len(ids))[::-1]
    assert index[rows].tolist() == [ids[r] for r in rows]


def test_hashes_are_fnv1a_of_the_utf8_bytes() -> None:
    ids = ["", "a", "foobar", "é-ünïcode", "x" * 300]
    offsets, data = utf8_buffers(pa.array(ids, type=pa.large_string()))
    assert fnv1a(offsets, data).tolist() == [fnv1a_one(i.encode()) for i in ids]
    assert fnv1a_one(b"") == 0xCBF29CE484222325 and fnv1a_one(b"a") == 0xAF63DC4C8601EC8C  # published test vectors
    assert fnv1a_one(b"foobar") == 0x85944171F73967E8


def test_colliding_hashes_are_told_apart_by_the_stored_id(monkeypatch) -> None:
    monkeypatch.setattr(item_index, "fnv1a", lambda offsets, data: np.zeros(len(offsets) - 1, np.uint64))
    monkeypatch.setattr(item_index, "fnv1a_one", lambda value: 0)
    monkeypatch.setattr(item_index, "DICT_MAX_ITEMS", 0)
    index = ItemIndex(["b", "a", "c"])  # every id hashes to 0
    assert index.rows_of(["c", "d", "a", "b"]).tolist() == [2, 1, 0]
    assert [index.row_of(i) for i in ("a", "b", "c", "d")] == [1, 0, 2, None]


def test_arrow_and_chunked_inputs_are_taken_as_they_are() -> None:
    chunked = pa.chunked_array([pa.array(["i0", "i1"]), pa.array(["i2"])])
    index = ItemIndex(chunked)
    assert index.row_of("i2") == 2 and index.arrow.type == pa.large_string()
    assert ItemIndex(np.array([], dtype=object)).rows_of(["x"]).tolist() == []
