"""Index specs: parameters scale with the catalog; built indexes reach high recall on clustered data."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from model.bundle.index import (
    BLAS_THRESHOLD,
    IndexKind,
    IndexSpec,
    build_index,
    choose_index_spec,
    measure_recall,
    set_search_params,
)
from model.evaluation import exact_top_k
from tests.bundle.helpers import clustered


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    items, queries = clustered(10_000, 200, 32)
    exact, _ = exact_top_k(queries, items, 10, rng=np.random.default_rng(0))
    return items, queries, exact


def test_nlist_scales_with_catalog_size() -> None:
    small, large = choose_index_spec(10_000, 64, "ivf"), choose_index_spec(1_000_000, 64, "ivf")
    assert (small.nlist, large.nlist) == (256, 4000)  # 10k: 4·sqrt = 400 clamped to 10000 // 39
    assert (small.nprobe, large.nprobe) == (32, 127)  # 2·sqrt(nlist): a shrinking fraction of the lists
    assert choose_index_spec(100, 64, "ivf").nlist == 2  # tiny catalogs keep >= 39 points per list


def test_other_kinds() -> None:
    assert choose_index_spec(5, 8) == IndexSpec("Flat")
    assert choose_index_spec(10_000, 64, "hnsw") == IndexSpec("HNSW32", ef_search=128)
    pq = choose_index_spec(1_000_000, 64, "ivfpq")
    assert (pq.factory, pq.pq_m, pq.pq_nbits) == ("IVF4000,PQ32", 32, 8)
    assert choose_index_spec(2_000, 48, "ivfpq").factory == "IVF51,PQ24x5"  # 2000 // 39 = 51 lists, 5-bit codes
    with pytest.raises(ValueError, match="kind must be one of"):
        choose_index_spec(10, 8, "lsh")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factory": "IVF16,Flat"}, r"nprobe must be in \[1, 16\], got None"),
        ({"factory": "IVF16,Flat", "nprobe": 17}, r"nprobe must be in \[1, 16\], got 17"),
        ({"factory": "Flat", "nprobe": 4}, "nprobe applies only to IVF"),
        ({"factory": "HNSW32"}, "ef_search must be >= 1"),
        ({"factory": "IVF16,Flat", "nprobe": 4, "ef_search": 4}, "ef_search applies only to HNSW"),
        ({"factory": "LSH"}, "unsupported index factory 'LSH'"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IndexSpec(**kwargs)


def test_flat_is_exact(data) -> None:
    items, queries, exact = data
    index = build_index(items, IndexSpec("Flat"))
    assert faiss.cvar.distance_compute_blas_threshold == BLAS_THRESHOLD
    assert measure_recall(index, items, queries, 10, exact).recall == 1.0


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_chosen_params_reach_high_recall(data, kind: IndexKind) -> None:
    items, queries, exact = data
    spec = choose_index_spec(len(items), items.shape[1], kind)
    index = build_index(items, spec)
    record = measure_recall(index, items, queries, 10, exact)
    assert (record.k, record.num_queries) == (10, 200)
    assert record.recall >= 0.9, (spec, record)


def test_too_few_probes_lose_recall(data) -> None:
    """The data are hard enough that the chosen nprobe matters."""
    items, queries, exact = data
    index = build_index(items, IndexSpec("IVF256,Flat", nprobe=1))
    assert measure_recall(index, items, queries, 10, exact).recall < 0.8


def test_ivfpq_builds_and_recalls(data) -> None:
    items, queries, exact = data
    spec = choose_index_spec(len(items), items.shape[1], "ivfpq")
    assert (spec.pq_m, spec.pq_nbits) == (16, 8)
    index = build_index(items, spec)
    assert index.ntotal == len(items) and index.is_trained
    recall = measure_recall(index, items, queries, 10, exact).recall
    assert recall >= 0.5, recall


def test_search_params_survive_serialisation_only_when_reapplied(data) -> None:
    items, _, _ = data
    spec = IndexSpec("IVF32,Flat", nprobe=7)
    index = build_index(items, spec)
    assert faiss.extract_index_ivf(index).nprobe == 7
    restored = faiss.deserialize_index(faiss.serialize_index(index))
    set_search_params(restored, spec)
    assert faiss.extract_index_ivf(restored).nprobe == 7


def test_build_is_deterministic_and_exact_oracle_is_default(data) -> None:
    items, queries, exact = data
    spec = IndexSpec("IVF64,Flat", nprobe=4)
    first, second = build_index(items, spec, seed=3), build_index(items, spec, seed=3)
    np.testing.assert_array_equal(first.search(queries, 10)[1], second.search(queries, 10)[1])
    assert measure_recall(first, items, queries, 10).recall == measure_recall(first, items, queries, 10, exact).recall
