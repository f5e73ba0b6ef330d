"""Engine: one tower call and one index search per batch, per-query exclusions and k, exact answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.bundle.gpu import place_index
from model.bundle.index import IndexSpec
from model.bundle.reader import open_bundle
from service.engine import Engine, query_device, respond_grouped
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.observer import RecordingObserver
from service.query import Query
from service.validation import default_features
from tests.service.helpers import NUM_ITEMS, SPEC, export_test_bundle, item_id, oracle_top_k


class Counting:
    """Wraps a callable or a FAISS index and counts calls (index: searches, with their k)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, []  # type: list[Any]
        self.ntotal = getattr(inner, "ntotal", None)

    def __call__(self, features: Any) -> Any:
        self.calls.append(len(next(iter(features.values()))))
        return self.inner(features)

    def search(self, queries: np.ndarray, k: int) -> Any:
        self.calls.append((len(queries), k))
        return self.inner.search(queries, k)


@pytest.fixture(scope="module")
def engine(bundle_path: Path) -> Engine:
    return Engine.from_bundle(open_bundle(bundle_path), gpu_device=0)


def _query(user: str, k: int, exclude: set[str] | None = None) -> Query:
    return Query(features=default_features(SPEC, user), k=k, exclude=frozenset(exclude or ()))


def _features(users: list[str]) -> dict[str, np.ndarray]:
    return {
        "user_id": np.array(users, dtype=object),
        "genres": np.array([["", "", ""]] * len(users), dtype=object),
        "country": np.array([""] * len(users), dtype=object),
        "age": np.full(len(users), np.nan, dtype=np.float32),
    }


def test_one_tower_call_and_one_search_per_batch_with_exact_answers(engine: Engine, bundle_path: Path) -> None:
    users = ["u1", "u2", "someone-new"]
    top = oracle_top_k(bundle_path, _features(users), 30)[0]
    exclusions = [{top[0][0], top[0][2], "unknown-item"}, set(), set(top[2][:6])]
    expected, scores = oracle_top_k(bundle_path, _features(users), 8, exclude=exclusions)
    encoder, index = Counting(engine._encoder), Counting(engine._index)
    observer = RecordingObserver()
    counted = Engine(
        manifest=engine.manifest, encoder=encoder, index=index, item_ids=engine._item_ids, observer=observer
    )
    ks = [4, 8, 3]

    results = counted.retrieve([_query(u, k, e) for u, k, e in zip(users, ks, exclusions, strict=True)])

    assert encoder.calls == [3] and index.calls == [(3, 3 + 6)]  # max(k_i + |known exclusions_i|)
    for i, result in enumerate(results):
        assert list(result.item_ids) == expected[i][: ks[i]]
        np.testing.assert_allclose(result.scores, scores[i][: ks[i]].astype(np.float32), atol=1e-5)
        assert not result.truncated and (result.model_name, result.model_version) == ("movies", 1)
    assert set(observer.stage_seconds) == {"query_tower", "index_search", "postprocess"}


def test_search_depth_is_bounded_by_the_catalog(engine: Engine) -> None:
    everything = {item_id(i) for i in range(NUM_ITEMS - 3)}
    (result,) = engine.retrieve([_query("u1", 10, everything)])
    assert len(result.item_ids) == 3 and result.truncated
    assert set(result.item_ids) == {item_id(i) for i in range(NUM_ITEMS - 3, NUM_ITEMS)}


def test_cosine_bundle_scores_are_cosines(tmp_path: Path) -> None:
    path = export_test_bundle(tmp_path, version=1, similarity="cosine", num_items=50)
    engine = Engine.from_bundle(open_bundle(path))
    (result,) = engine.retrieve([_query("u3", 50)])
    expected, scores = oracle_top_k(path, _features(["u3"]), 50)
    assert list(result.item_ids) == expected[0]
    np.testing.assert_allclose(result.scores, scores[0], atol=1e-5)
    assert np.all(np.abs(result.scores) <= 1 + 1e-5)


def test_grouped_retrieval_serves_each_query_on_its_own_engine(engine: Engine) -> None:
    newer = Engine(
        manifest=dataclasses.replace(engine.manifest, model_version=2),
        encoder=engine._encoder,
        index=engine._index,
        item_ids=engine._item_ids,
    )
    work = [(engine, _query("u1", 3)), (newer, _query("u1", 3)), (engine, _query("u2", 1))]
    results = [pb.RetrieveCandidatesResponse.FromString(answer) for answer in respond_grouped(work)]
    assert [r.model_version for r in results] == ["1", "2", "1"]
    ids = [[c.item_id for c in r.candidates] for r in results]
    assert ids[0] == ids[1] == list(engine.retrieve([_query("u1", 3)])[0].item_ids) and len(ids[2]) == 1


def test_devices_and_warm_up_on_a_cpu_machine(engine: Engine) -> None:
    assert engine.index_device == "cpu" and query_device() in ("cpu", "gpu:0")
    index, device, resources = place_index(engine._index, engine.manifest.index, gpu_device=-1)
    assert (index, device, resources) == (engine._index, "cpu", None)
    engine.warm_up((1, 4))
    assert engine.retrieve([]) == []


def test_memory_mapped_index_serves_the_same_answers(engine: Engine, bundle_path: Path) -> None:
    mapped = Engine.from_bundle(open_bundle(bundle_path), gpu_device=0, index_mmap="on", shard_gpus=True)
    queries = [_query("u1", 10, {item_id(3)}), _query("someone-new", 25)]
    for got, expected in zip(mapped.retrieve(queries), engine.retrieve(queries), strict=True):
        assert list(got.item_ids) == list(expected.item_ids)
        np.testing.assert_array_equal(got.scores, expected.scores)
    assert mapped.index_device == engine.index_device


def test_an_ivfpq_bundle_with_k_factor_serves_exactly_re_ranked_answers(tmp_path: Path) -> None:
    """All 8 lists probed and k x k_factor >= N: the re-rank sees every item, so answers are the exact top k,
    which the PQ codes alone do not give."""
    spec = IndexSpec("IVF8,PQ4x4", nprobe=8, k_factor=40)
    path = export_test_bundle(tmp_path, version=1, index_spec=spec)
    bundle = open_bundle(path)
    assert bundle.manifest.index == spec and bundle.manifest.index_recall.recall == 1.0
    engine = Engine.from_bundle(bundle)
    plain = Engine.from_bundle(
        open_bundle(export_test_bundle(tmp_path / "plain", version=1, index_spec=IndexSpec("IVF8,PQ4x4", nprobe=8)))
    )
    users = ["u1", "u2", "someone-new"]
    expected, scores = oracle_top_k(path, _features(users), 10)
    exclusions = [{expected[0][1]}, set(), set()]
    results = engine.retrieve([_query(u, 10, e) for u, e in zip(users, exclusions, strict=True)])
    kept, kept_scores = oracle_top_k(path, _features(users), 10, exclude=exclusions)
    for i, result in enumerate(results):
        assert list(result.item_ids) == kept[i]
        np.testing.assert_allclose(result.scores, kept_scores[i].astype(np.float32), atol=1e-5)
    unranked = plain.retrieve([_query(u, 10) for u in users])
    assert any(list(r.item_ids) != expected[i] for i, r in enumerate(unranked))  # PQ order alone is not exact
    np.testing.assert_allclose(results[1].scores, scores[1], atol=1e-5)
