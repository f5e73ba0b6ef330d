"""Index shards: FAISS IndexShards over CPU sub-indexes answer as the one index; GPU sharding falls back here."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from model.bundle.index import IndexSpec, build_index
from model.bundle.index_shards import place_index_sharded, shard_bounds, shard_on_cpu
from tests.bundle.helpers import clustered

K = 25


@pytest.mark.parametrize(
    "spec",
    [IndexSpec("Flat"), IndexSpec("IVF16,Flat", nprobe=3), IndexSpec("IVF16,PQ4", nprobe=5)],
    ids=lambda spec: spec.factory,
)
def test_cpu_shards_answer_as_the_one_index(spec: IndexSpec) -> None:
    items, queries = clustered(2000, 30, 16)
    index = build_index(items, spec)

    sharded = shard_on_cpu(index, spec, 3)

    assert isinstance(sharded, faiss.IndexShards) and sharded.count() == 3 and sharded.ntotal == index.ntotal
    sizes = [sharded.at(i).ntotal for i in range(3)]
    assert sizes == [b - a for a, b in shard_bounds(2000, 3)] == [667, 666, 667]
    if spec.nprobe is not None:  # every shard searches with the spec's nprobe
        assert [faiss.extract_index_ivf(sharded.at(i)).nprobe for i in range(3)] == [spec.nprobe] * 3
    scores, ids = sharded.search(queries, K)
    expected_scores, expected_ids = index.search(queries, K)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)


def test_shard_bounds_cover_every_id_once_and_bad_requests_are_refused() -> None:
    assert shard_bounds(10, 4) == [(0, 2), (2, 5), (5, 8), (8, 10)]
    assert shard_bounds(5, 1) == [(0, 5)]
    with pytest.raises(ValueError, match=r"num_shards must be in \[1, 3\] \(the items\), got 4"):
        shard_bounds(3, 4)
    items, _ = clustered(100, 1, 8)
    with pytest.raises(ValueError, match="HNSW8: an HNSW graph cannot be split"):
        shard_on_cpu(build_index(items, IndexSpec("HNSW8", ef_search=16)), IndexSpec("HNSW8", ef_search=16), 2)


def test_gpu_sharding_needs_two_gpus_and_otherwise_places_as_usual() -> None:
    items, _ = clustered(500, 1, 8)
    spec = IndexSpec("IVF8,Flat", nprobe=2)
    index = build_index(items, spec)
    if faiss.get_num_gpus() >= 2:
        pytest.skip("several GPUs: tests/bundle/test_gpu_index.py territory")
    placed, device, resources = place_index_sharded(index, spec, gpu_device=-1)
    assert (placed, device, resources) == (index, "cpu", None)
    placed, device, _ = place_index_sharded(index, spec, gpu_device=0)
    assert device == ("gpu:0" if faiss.get_num_gpus() == 1 else "cpu")
