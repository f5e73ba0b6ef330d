"""Exact re-rank of an approximate index: exact scores, FAISS's answer shape, recall restored, specs carry it."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from model.bundle.index import IndexSpec, build_index, choose_index_spec, measure_recall
from model.bundle.manifest import _index_from_dict
from model.bundle.refine import PAD_SCORE, RefinedIndex, refined
from model.evaluation import exact_top_k
from tests.bundle.helpers import clustered


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, faiss.Index]:
    items, queries = clustered(10_000, 200, 32)
    exact, _ = exact_top_k(queries, items, 10, rng=np.random.default_rng(0))
    index = build_index(items, IndexSpec("IVF64,PQ8", nprobe=16))
    return items, queries, exact, index


def test_re_rank_restores_the_recall_that_pq_codes_lose(data) -> None:
    items, queries, exact, index = data
    plain = measure_recall(index, items, queries, 10, exact).recall
    reranked = measure_recall(RefinedIndex(index, items, 8), items, queries, 10, exact).recall
    assert plain < 0.8 and reranked >= 0.95, (plain, reranked)
    # Deeper candidate lists never do worse on these queries.
    recalls = [measure_recall(RefinedIndex(index, items, f), items, queries, 10, exact).recall for f in (1, 2, 8)]
    assert recalls == sorted(recalls)


def test_scores_are_exact_inner_products_best_first(data) -> None:
    items, queries, _, index = data
    scores, ids = RefinedIndex(index, items, 4).search(queries[:20], 10)
    assert scores.shape == ids.shape == (20, 10) and ids.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries[:20], items[ids]), rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # The re-ranked top 10 are the best 10 of the index's top 40.
    _, candidates = index.search(queries[:20], 40)
    for q in range(20):
        exact = queries[q] @ items[candidates[q]].T
        np.testing.assert_allclose(np.sort(exact)[::-1][:10], scores[q], rtol=1e-5, atol=1e-5)


def test_fewer_items_than_k_pad_like_faiss() -> None:
    items, queries = clustered(100, 3, 8, seed=1)
    base = build_index(items[:5], IndexSpec("HNSW8", ef_search=16))
    scores, ids = RefinedIndex(base, items[:5], 3).search(queries, 8)
    assert ids.shape == (3, 8) and np.all(ids[:, 5:] == -1) and np.all(scores[:, 5:] == PAD_SCORE)
    assert all(sorted(row[:5]) == [0, 1, 2, 3, 4] for row in ids.tolist())


def test_search_parameters_reach_the_base_index(data) -> None:
    items, queries, _, index = data
    allowed = np.arange(0, len(items), 7)
    params = faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(allowed), nprobe=64)
    _, ids = RefinedIndex(index, items, 4).search(queries[:10], 10, params=params)
    assert np.isin(ids[ids >= 0], allowed).all() and (ids >= 0).sum() == 100


def test_refine_needs_a_factor_and_matching_embeddings(data) -> None:
    items, _, _, index = data
    assert refined(index, items, None) is index and refined(index, None, 4) is index
    assert isinstance(refined(index, items, 4), RefinedIndex)
    with pytest.raises(ValueError, match="k_factor must be >= 1"):
        RefinedIndex(index, items, 0)
    with pytest.raises(ValueError, match="10000 vectors but there are 10 embeddings"):
        RefinedIndex(index, items[:10], 2)


def test_spec_and_manifest_carry_k_factor() -> None:
    spec = choose_index_spec(1_000_000, 64, "ivfpq")
    assert spec.k_factor == 4 and spec.parameters()["k_factor"] == 4
    assert choose_index_spec(1_000_000, 64, "ivf").k_factor is None
    with pytest.raises(ValueError, match="k_factor applies only to approximate indexes"):
        IndexSpec("Flat", k_factor=2)
    recall = {"k": 10, "num_queries": 5, "recall": 1.0}
    stored = {"factory": spec.factory, "metric": "inner_product", "parameters": spec.parameters(), "recall": recall}
    assert _index_from_dict(stored)[0] == spec
    older = {**stored, "parameters": {k: v for k, v in spec.parameters().items() if k != "k_factor"}}
    assert _index_from_dict(older)[0].k_factor is None  # bundles exported before re-rank load as they were
