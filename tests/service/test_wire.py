"""The hand-written candidate encoding against protobuf's own parser and encoder."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.responses import batch_response, encode_responses, response_message
from service.results import RetrievalResult
from service.wire import CandidateEncoder, varint

ITEM_IDS = st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=60, unique=True)


@settings(max_examples=60, deadline=None)
@given(ids=ITEM_IDS, data=st.data())
def test_encoded_candidates_parse_to_the_same_ids_scores_and_ranks(ids: list[str], data: st.DataObject) -> None:
    encoder = CandidateEncoder(ids)
    sizes = data.draw(st.lists(st.integers(0, 3 * len(ids)), min_size=1, max_size=5))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    rows = [rng.integers(0, len(ids), size=n) for n in sizes]
    scores = [(rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4)).astype(np.float32) for n in sizes]
    for row, score, encoded in zip(rows, scores, encoder.encode(rows, scores), strict=True):
        parsed = pb.RetrieveCandidatesResponse.FromString(encoded)
        assert [c.item_id for c in parsed.candidates] == [ids[r] for r in row]
        assert np.array_equal(np.array([c.score for c in parsed.candidates], dtype=np.float32), score)
        assert [c.rank for c in parsed.candidates] == list(range(len(row)))  # ranks past 127 take two bytes


def test_responses_equal_protobufs_own_and_display_takes_the_message_path() -> None:
    catalog = np.array([f"item{i}" for i in range(300)], dtype=object)
    rng = np.random.default_rng(0)
    results = [
        RetrievalResult(rng.permutation(300)[:k], rng.random(k).astype(np.float32), k < 5, "movies", 7, (), catalog)
        for k in (200, 0, 3)
    ]
    titled = RetrievalResult(np.array([4, 2]), np.array([0.5, 0.25], np.float32), False, "movies", 7,
                             ({"title": "Four"}, {"title": "Two"}), catalog)  # fmt: skip
    results.append(titled)
    request_ids = ["a", "", "req-3", "t"]
    encoded = encode_responses(results, request_ids, CandidateEncoder(catalog.tolist()))
    for result, request_id, answer in zip(results, request_ids, encoded, strict=True):
        assert pb.RetrieveCandidatesResponse.FromString(answer) == response_message(result, request_id)
    assert pb.RetrieveCandidatesResponse.FromString(encoded[3]).candidates[0].display["title"] == "Four"
    batch = pb.RetrieveCandidatesBatchResponse.FromString(batch_response(encoded))
    assert list(batch.responses) == [response_message(r, i) for r, i in zip(results, request_ids, strict=True)]


def test_varint_matches_the_protobuf_encoding() -> None:
    for value in (1, 127, 128, 300, 16383, 16384, 2**21 + 5):
        assert pb.Candidate(rank=value).SerializeToString() == b"\x18" + varint(value)
    assert varint(0) == b"\x00"  # protobuf omits a zero rank; written explicitly it parses the same
    assert pb.Candidate.FromString(b"\x18" + varint(0)) == pb.Candidate()


def test_the_id_table_is_built_in_chunks_and_an_empty_catalog_encodes_nothing(monkeypatch) -> None:
    ids = [f"item-{i}" * (1 + i % 20) for i in range(50)]  # ids from 6 to 160 bytes: 1- and 2-byte lengths
    monkeypatch.setattr("service.wire._BUILD_CHUNK", 7)
    rows = [np.arange(50)[::-1], np.array([3, 3])]
    scores = [np.linspace(1, 0, 50, dtype=np.float32), np.ones(2, np.float32)]
    for row, encoded in zip(rows, CandidateEncoder(np.array(ids, dtype=object)).encode(rows, scores), strict=True):
        parsed = pb.RetrieveCandidatesResponse.FromString(encoded)
        assert [c.item_id for c in parsed.candidates] == [ids[r] for r in row]
    assert CandidateEncoder([]).encode([np.zeros(0, np.int64)], [np.zeros(0, np.float32)]) == [b""]
