"""The filter planner against the brute-force oracle: random attribute tables and filters (hypothesis), every
strategy on a Flat index equal to the exact filtered top k, the GPU strategy (over-fetch with escalation) on the
CPU, and the IVF recall bound at selectivities 50 / 10 / 1 / 0.1 %."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.bundle.attributes import AttributeColumn, AttributeKind, attribute_array
from model.bundle.refine import RefinedIndex
from service.attributes import AttributeTable
from service.filter_planner import FilterPlanner, PlannerConfig, Strategy
from service.filtered_search import FilteredSearch
from service.filters import compile_filter
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.passing_rows import PassingRows
from tests.service.filter_oracle import assert_same_top, filtered_top_k
from tests.service.helpers import LIMITS

OP = pb.NumericRestrict
DIM = 8
BRANDS = ("acme", "zeta", "omega", "nova")
GENRES = ("Comedy", "Drama", "Horror", "Noir", "Western")
YEARS = tuple(float(y) for y in range(1990, 2000))
OPERATORS = (
    OP.OPERATOR_LESS,
    OP.OPERATOR_LESS_EQUAL,
    OP.OPERATOR_EQUAL,
    OP.OPERATOR_GREATER_EQUAL,
    OP.OPERATOR_GREATER,
    OP.OPERATOR_NOT_EQUAL,
)
# Every strategy forced, and the planner's own choice (None), with thresholds that make it choose each.
STRATEGIES = (Strategy.BRUTE_FORCE, Strategy.SELECTOR, Strategy.OVERFETCH, None)


@st.composite
def catalogs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Items with a categorical `brand` (or none), multi-valued `genres` (maybe empty) and numeric `year`
    (NaN: no value), drawn from small vocabularies so that filters pass anything from none to all."""
    size = draw(st.integers(1, 120))
    item = st.fixed_dictionaries(
        {
            "brand": st.one_of(st.none(), st.sampled_from(BRANDS)),
            "genres": st.lists(st.sampled_from(GENRES), max_size=3, unique=True),
            "year": st.one_of(st.just(math.nan), st.sampled_from(YEARS)),
        }
    )
    return draw(st.lists(item, min_size=size, max_size=size))


@st.composite
def filters(draw: st.DrawFn) -> pb.ItemFilter:
    """1 to 4 restricts on any of the attributes: allow / deny token sets (maybe with tokens no item has) and
    numeric comparisons against values items have, or between them."""
    categorical = []
    for namespace, vocabulary in draw(st.lists(st.sampled_from([("brand", BRANDS), ("genres", GENRES)]), max_size=2)):
        tokens = st.sampled_from((*vocabulary, "unknown"))
        allow = draw(st.lists(tokens, max_size=3, unique=True))
        deny = draw(st.lists(tokens, max_size=2, unique=True))
        categorical.append(pb.CategoricalRestrict(namespace=namespace, allow=allow, deny=deny))
    numeric = [
        pb.NumericRestrict(namespace="year", op=op, value=value)
        for op, value in draw(
            st.lists(st.tuples(st.sampled_from(OPERATORS), st.sampled_from((*YEARS, 1994.5))), max_size=2)
        )
    ]
    if not categorical and not numeric:
        numeric.append(pb.NumericRestrict(namespace="year", op=OP.OPERATOR_GREATER_EQUAL, value=1995.0))
    return pb.ItemFilter(categorical=categorical, numeric=numeric)


def _table(items: list[dict[str, Any]]) -> AttributeTable:
    columns = {
        "brand": AttributeColumn(AttributeKind.CATEGORICAL, [i["brand"] for i in items]),
        "genres": AttributeColumn(AttributeKind.MULTI_CATEGORICAL, [i["genres"] for i in items]),
        "year": AttributeColumn(AttributeKind.NUMERIC, [i["year"] for i in items]),
    }
    return AttributeTable(len(items), {name: (c.kind, attribute_array(c)) for name, c in columns.items()})


def _flat(embeddings: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    return index


def _planner(index: faiss.Index, embeddings: np.ndarray, strategy: Strategy | None, **kwargs: Any) -> FilterPlanner:
    # Auto with thresholds that send small catalogs past brute force too: 4 rows, 10 %, no cache (Flat: over-fetch).
    auto = PlannerConfig(brute_force_rows=4, brute_force_fraction=0.1, cache_bytes=0)
    config = PlannerConfig(force=strategy) if strategy else auto
    return FilterPlanner(index, embeddings, config=config, **kwargs)


@settings(deadline=None, max_examples=40)
@given(
    items=catalogs(),
    message=filters(),
    k=st.integers(1, 30),
    seed=st.integers(0, 2**16),
    excluded=st.lists(st.integers(0, 119), max_size=5),
)
def test_every_strategy_equals_the_exact_filtered_top_k_on_a_flat_index(
    items: list[dict[str, Any]], message: pb.ItemFilter, k: int, seed: int, excluded: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((len(items), DIM)).astype(np.float32)
    vectors = rng.standard_normal((3, DIM)).astype(np.float32)
    exclude = {r for r in excluded if r < len(items)}
    predicate = compile_filter(message, _table(items).kinds, LIMITS)
    assert predicate is not None
    passing = predicate.mask(_table(items))
    passing[list(exclude)] = False
    index = _flat(embeddings)
    for strategy in STRATEGIES:
        answers, used = _planner(index, embeddings, strategy).search_many(vectors, PassingRows(passing), k)
        for vector, (rows, scores) in zip(vectors, answers, strict=True):
            expected, expected_scores, count = filtered_top_k(vector, embeddings, items, message, k, exclude)
            assert count == passing.sum() and (used is strategy or strategy is None or count == 0)
            assert_same_top(rows.tolist(), scores, expected, expected_scores)
            assert (len(rows) < k) == (count < k)  # `truncated` only when fewer than k items pass


@settings(deadline=None, max_examples=30)
@given(
    items=catalogs(),
    messages=st.lists(filters(), min_size=1, max_size=3),
    queries=st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 20), st.lists(st.integers(0, 119), max_size=4)),
        min_size=1,
        max_size=8,
    ),
    seed=st.integers(0, 2**16),
    strategy=st.sampled_from(STRATEGIES),
)
def test_a_batch_grouped_by_filter_equals_the_exact_filtered_top_k_of_each_query(
    items: list[dict[str, Any]],
    messages: list[pb.ItemFilter],
    queries: list[tuple[int, int, list[int]]],
    seed: int,
    strategy: Strategy | None,
) -> None:
    """Queries of one batch share filters (and so one search per filter) but keep their own k and exclusions."""
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((len(items), DIM)).astype(np.float32)
    vectors = rng.standard_normal((len(queries), DIM)).astype(np.float32)
    table = _table(items)
    predicates = [compile_filter(m, table.kinds, LIMITS) for m in messages]
    chosen = [(which % len(messages), k, {r for r in rows if r < len(items)}) for which, k, rows in queries]
    config = PlannerConfig(brute_force_rows=4, brute_force_fraction=0.1, force=strategy)  # the default cache
    search = FilteredSearch(FilterPlanner(_flat(embeddings), embeddings, config=config), table)
    answers = search.search(
        vectors,
        [predicates[m] for m, _, _ in chosen],  # type: ignore[misc]
        [k for _, k, _ in chosen],
        [np.array(sorted(rows), dtype=np.int64) for _, _, rows in chosen],
    )
    for vector, (m, k, exclude), (rows, scores) in zip(vectors, chosen, answers, strict=True):
        expected, expected_scores, count = filtered_top_k(vector, embeddings, items, messages[m], k, exclude)
        assert_same_top(rows.tolist(), scores, expected, expected_scores)
        assert (len(rows) < k) == (count < k)
    assert len(search.cache) == len({predicates[m] for m, _, _ in chosen})  # each filter evaluated once


def test_the_planner_chooses_brute_force_for_selective_filters_and_an_index_search_otherwise() -> None:
    embeddings = np.random.default_rng(0).standard_normal((1000, DIM)).astype(np.float32)
    config = PlannerConfig(brute_force_rows=50, brute_force_fraction=0.1, cache_bytes=400 * DIM * 4)
    gpu = FilterPlanner(_flat(embeddings), embeddings, config=config, on_gpu=True)
    flat = FilterPlanner(_flat(embeddings), embeddings, config=config)
    assert gpu.choose(100, k=10) is Strategy.BRUTE_FORCE  # <= 10 % of the catalog
    assert gpu.choose(101, k=200) is Strategy.BRUTE_FORCE  # fewer than k pass
    assert gpu.choose(101, k=10) is Strategy.OVERFETCH
    # A CPU Flat index visits every row anyway: brute force while the passing rows fit in half the cache.
    assert (flat.choose(200, k=10), flat.choose(201, k=10)) == (Strategy.BRUTE_FORCE, Strategy.OVERFETCH)


def test_on_a_cpu_ivf_index_brute_force_wins_while_it_scores_fewer_rows_than_the_selector_visits() -> None:
    embeddings = np.random.default_rng(0).standard_normal((2000, DIM)).astype(np.float32)
    ivf = faiss.index_factory(DIM, "IVF20,Flat", faiss.METRIC_INNER_PRODUCT)
    ivf.train(embeddings)
    ivf.add(embeddings)
    ivf.nprobe = 1
    config = PlannerConfig(brute_force_rows=10, brute_force_fraction=0.0, ivf_row_cost=1.0)
    planner = FilterPlanner(ivf, embeddings, config=config)
    # m passing rows: the selector visits ceil(1 / (m / 2000)) lists of 100 rows; brute force scores m rows.
    assert planner.choose(400, k=10) is Strategy.BRUTE_FORCE  # 400 <= 5 lists x 100
    assert planner.choose(500, k=10) is Strategy.SELECTOR  # 500 > 4 lists x 100
    small_cache = FilterPlanner(ivf, embeddings, config=dataclasses.replace(config, cache_bytes=2 * 399 * DIM * 4))
    assert small_cache.choose(400, k=10) is Strategy.SELECTOR  # the gathered rows would not fit in half the cache


class _CountingIndex:
    """A Flat index that records the depth of every search, limited like a FAISS GPU index (k <= max_k)."""

    def __init__(self, embeddings: np.ndarray, max_k: int) -> None:
        self._index = _flat(embeddings)
        self.ntotal = self._index.ntotal
        self.max_k = max_k
        self.fetches: list[int] = []

    def search(self, vectors: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        assert params is None, "a Flat GPU index takes no search parameters (and no IDSelector)"
        assert k <= self.max_k, k
        self.fetches.append(k)
        return self._index.search(vectors, k)


@pytest.mark.parametrize(
    ("passing_rows", "k", "fetches"),
    [
        (range(0, 2000, 10), 10, [200]),  # 10 % pass, spread out: the first fetch (k / 0.1 x margin 2) finds them
        (range(1000, 1200), 10, [200, 800, 1500]),  # they rank 1000th and below: 4x deeper, up to the GPU's limit
        (range(1900, 2000), 10, [400, 1500]),  # below the deepest search the index allows: brute force
    ],
)
def test_over_fetch_escalates_and_falls_back_to_brute_force_as_on_a_gpu(
    passing_rows: range, k: int, fetches: list[int]
) -> None:
    rng = np.random.default_rng(1)
    embeddings = rng.standard_normal((2000, DIM)).astype(np.float32)
    vector = rng.standard_normal(DIM).astype(np.float32)
    order = np.argsort(-(embeddings @ vector), kind="stable")
    embeddings = embeddings[order]  # row r is the r-th best item: the last rows score lowest
    index = _CountingIndex(embeddings, max_k=1500)
    planner = FilterPlanner(
        index,  # type: ignore[arg-type]  # duck-typed like a FAISS GPU index
        embeddings,
        on_gpu=True,
        max_fetch=1500,
        config=PlannerConfig(brute_force_rows=0, brute_force_fraction=0.0),
    )
    passing = np.zeros(2000, dtype=bool)
    passing[list(passing_rows)] = True
    rows, scores, used = planner.search(vector, passing, k)
    assert used is Strategy.OVERFETCH and index.fetches == fetches
    assert rows.tolist() == list(passing_rows)[:k]
    np.testing.assert_allclose(scores, (embeddings @ vector)[list(passing_rows)[:k]], atol=1e-5)


SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)


@pytest.fixture(scope="module")
def ivf() -> tuple[faiss.Index, np.ndarray, np.ndarray, np.ndarray]:
    """An IVF64,Flat index (nprobe 8: recall@10 about 0.95 unfiltered) over 20,000 clustered items, a uniform
    numeric attribute that sets the selectivity, and 40 queries."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((64, 16)).astype(np.float32)
    embeddings = (centres[rng.integers(0, 64, 20_000)] + 0.6 * rng.standard_normal((20_000, 16))).astype(np.float32)
    quantizer = faiss.IndexFlatIP(16)
    index = faiss.IndexIVFFlat(quantizer, 16, 64, faiss.METRIC_INNER_PRODUCT)
    index.train(embeddings)
    index.add(embeddings)
    index.nprobe = 8
    queries = (centres[rng.integers(0, 64, 40)] + 0.6 * rng.standard_normal((40, 16))).astype(np.float32)
    return index, embeddings, rng.random(20_000), queries


@pytest.mark.parametrize("selectivity", SELECTIVITIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ivf_recall_at_k_of_the_filtered_top_k_is_at_least_95_percent(
    ivf: tuple[faiss.Index, np.ndarray, np.ndarray, np.ndarray], selectivity: float, strategy: Strategy | None
) -> None:
    index, embeddings, uniform, queries = ivf
    k = 10
    passing = uniform < selectivity
    planner = FilterPlanner(index, embeddings, config=PlannerConfig(force=strategy))
    recalls = []
    for vector in queries:
        rows, _, _ = planner.search(vector, passing, k)
        exact = np.flatnonzero(passing)[np.argsort(-(embeddings[passing] @ vector), kind="stable")[:k]]
        recalls.append(len(set(rows.tolist()) & set(exact.tolist())) / k)
    assert np.mean(recalls) >= 0.95, (selectivity, strategy, np.mean(recalls))


def test_a_re_ranked_ivfpq_index_is_planned_as_ivf_and_answers_with_exact_scores() -> None:
    rng = np.random.default_rng(3)
    embeddings = rng.standard_normal((4000, DIM)).astype(np.float32)
    base = faiss.index_factory(DIM, "IVF16,PQ4", faiss.METRIC_INNER_PRODUCT)
    base.train(embeddings)
    base.add(embeddings)
    base.nprobe = 2
    config = PlannerConfig(brute_force_rows=10, brute_force_fraction=0.0, ivf_row_cost=1.0)
    planner = FilterPlanner(RefinedIndex(base, embeddings, 8), embeddings, config=config)
    passing = np.zeros(4000, dtype=bool)
    passing[::2] = True
    # The IVF rule: 2000 passing rows > 4 probed lists (nprobe / 0.5) x 250 rows.
    assert planner.choose(int(passing.sum()), k=10) is Strategy.SELECTOR
    vector = rng.standard_normal(DIM).astype(np.float32)
    rows, scores, used = planner.search(vector, passing, 10)
    assert used is Strategy.SELECTOR and passing[rows].all() and len(rows) == 10
    np.testing.assert_allclose(scores, embeddings[rows] @ vector, rtol=1e-5, atol=1e-5)  # re-ranked: exact
    assert np.all(np.diff(scores) <= 0)
