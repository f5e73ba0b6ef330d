"""Scenario 5: hypothesis-generated bad input against a real `retrieval-serve` process.

Random and huge strings, unicode, huge and negative k, NaN and infinite numbers, every FeatureValue kind for
known and unknown feature names, oversize exclusion lists and histories, empty and oversize messages, batch
calls, and raw malformed bytes on the wire. Every answer is OK (and then well-formed) or INVALID_ARGUMENT
(RESOURCE_EXHAUSTED only for a message above the size limit); the process never dies and never reports
INTERNAL or UNKNOWN.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from tests.observability.helpers import settled_scrape
from tests.reliability.helpers import SOAK, Results, ServeProcess

SCENARIO = "fuzzing"
SCALE = 10 if SOAK else 1
SINGLE_CASES, BATCH_CASES, RAW_CASES = 1600 * SCALE, 400 * SCALE, 400 * SCALE
MAX_MESSAGE = 4 * 1024 * 1024  # the server's default max_receive_message_bytes
SERVICE = "/retrieval.v1.RetrievalService/"
FUZZ_SETTINGS = dict(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

texts = st.one_of(
    st.text(max_size=20),
    st.text(max_size=300),
    st.sampled_from(["", " ", "u1", "u29", "\x00", "é", "🙂" * 70, "a" * 257, "x" * 100_000, "\u202e\ufeff"]),
)
numbers = st.floats(allow_nan=True, allow_infinity=True)
int64s = st.integers(-(2**63), 2**63 - 1)
feature_values = st.one_of(
    st.builds(lambda s: pb.FeatureValue(string_value=s), texts),
    st.builds(lambda i: pb.FeatureValue(int64_value=i), int64s),
    st.builds(lambda f: pb.FeatureValue(float_value=f), numbers),
    st.builds(lambda v: pb.FeatureValue(string_list=pb.StringList(values=v)), st.lists(texts, max_size=6)),
    st.builds(lambda v: pb.FeatureValue(int64_list=pb.Int64List(values=v)), st.lists(int64s, max_size=4)),
    st.builds(lambda v: pb.FeatureValue(float_list=pb.FloatList(values=v)), st.lists(numbers, max_size=4)),
    st.just(pb.FeatureValue()),
)
feature_names = st.one_of(st.sampled_from(["genres", "country", "age", "user_id"]), st.text(max_size=30))
id_lists = st.one_of(
    st.lists(texts, max_size=25),
    st.integers(0, 3000).map(lambda n: [f"item{i:04d}" for i in range(n)]),
)
requests = st.builds(
    pb.RetrieveCandidatesRequest,
    user_id=texts,
    user_features=st.dictionaries(feature_names, feature_values, max_size=5),
    history_item_ids=id_lists,
    num_candidates=st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-2, 60)),
    exclude_item_ids=id_lists,
    exclude_history=st.booleans(),
    request_id=texts,
)


@pytest.fixture(scope="module")
def server(reliability_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    log = tmp_path_factory.mktemp("fuzz") / "serve.log"
    with ServeProcess(reliability_bundle.parent.parent, log, "--reload-interval-s", "3600") as running:
        yield running


@pytest.fixture(scope="module")
def stub(server: ServeProcess) -> Iterator[pb_grpc.RetrievalServiceStub]:
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", -1)]) as channel:
        yield pb_grpc.RetrievalServiceStub(channel)


def _excluded(request: pb.RetrieveCandidatesRequest) -> set[str]:
    return set(request.exclude_item_ids) | (set(request.history_item_ids) if request.exclude_history else set())


def _check_answer(request: pb.RetrieveCandidatesRequest, response: pb.RetrieveCandidatesResponse) -> None:
    ids = [c.item_id for c in response.candidates]
    scores = [c.score for c in response.candidates]
    assert 0 < len(ids) <= request.num_candidates
    assert [c.rank for c in response.candidates] == list(range(len(ids)))
    assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
    assert not set(ids) & _excluded(request)
    assert response.model_version == "1" and response.request_id == request.request_id


def _call(method: grpc.UnaryUnaryMultiCallable, request: object) -> tuple[str, object]:
    try:
        return "OK", method(request, timeout=30)
    except grpc.RpcError as error:
        code = error.code()
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), (
            code,
            error.details(),
        )
        assert error.details()
        return code.name, None


class Campaigns:
    """The fuzz campaigns against one server, each run once per module by whichever test needs it first.

    Each campaign's test runs it; the summary test runs any that have not run yet (so it passes or fails the
    same when selected alone) and reads the status codes they counted.
    """

    def __init__(self, server: ServeProcess, stub: pb_grpc.RetrievalServiceStub) -> None:
        self.server, self.stub = server, stub
        self.codes: Counter[str] = Counter()
        self.oversize = 0
        self._failures: dict[str, BaseException | None] = {}

    def run(self, name: str, raise_failure: bool = True) -> BaseException | None:
        """Runs campaign `name` unless it has run; returns (or raises) its failure, as it was the first time."""
        if name not in self._failures:
            try:
                CAMPAIGNS[name](self)
            except Exception as error:
                self._failures[name] = error
            else:
                self._failures[name] = None
        failure = self._failures[name]
        if failure is not None and raise_failure:
            raise failure
        return failure


@pytest.fixture(scope="module")
def campaigns(server: ServeProcess, stub: pb_grpc.RetrievalServiceStub) -> Campaigns:
    return Campaigns(server, stub)


@settings(max_examples=SINGLE_CASES, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(request=requests)
def _fuzz_single_requests(campaigns: Campaigns, request: pb.RetrieveCandidatesRequest) -> None:
    code, response = _call(campaigns.stub.RetrieveCandidates, request)
    campaigns.codes[f"single:{code}"] += 1
    if code == "RESOURCE_EXHAUSTED":
        assert request.ByteSize() > MAX_MESSAGE
    elif code == "OK":
        assert isinstance(response, pb.RetrieveCandidatesResponse)
        _check_answer(request, response)


@settings(max_examples=BATCH_CASES, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(batch=st.lists(requests, max_size=20))
def _fuzz_batches(campaigns: Campaigns, batch: list[pb.RetrieveCandidatesRequest]) -> None:
    message = pb.RetrieveCandidatesBatchRequest(requests=batch)
    code, response = _call(campaigns.stub.RetrieveCandidatesBatch, message)
    campaigns.codes[f"batch:{code}"] += 1
    if code == "RESOURCE_EXHAUSTED":
        assert message.ByteSize() > MAX_MESSAGE
    elif code == "OK":
        assert isinstance(response, pb.RetrieveCandidatesBatchResponse)
        assert len(response.responses) == len(batch)
        for request, answer in zip(batch, response.responses, strict=True):
            _check_answer(request, answer)


@settings(max_examples=RAW_CASES, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(
    method=st.sampled_from(["RetrieveCandidates", "RetrieveCandidatesBatch", "GetServiceInfo"]),
    data=st.one_of(
        st.binary(max_size=200),
        requests.map(lambda r: r.SerializeToString()).flatmap(
            lambda raw: st.integers(0, max(len(raw) - 1, 0)).map(lambda cut: raw[:cut] + b"\xff\x80")
        ),
        st.just(b"\x0a\x03\xff\xfe\xfd\x20\x05"),  # user_id that is not UTF-8, then k = 5
    ),
)
def _fuzz_raw_bytes(campaigns: Campaigns, method: str, data: bytes) -> None:
    with grpc.insecure_channel(campaigns.server.target) as channel:
        call = channel.unary_unary(SERVICE + method)  # no serializers: the bytes go out as they are
        code, _ = _call(call, data)
    assert code != "RESOURCE_EXHAUSTED"
    campaigns.codes[f"raw:{code}"] += 1


def _send_oversize_messages(campaigns: Campaigns) -> None:
    huge = pb.RetrieveCandidatesRequest(user_id="u1", num_candidates=5, request_id="x" * (MAX_MESSAGE + 1))
    ids = pb.RetrieveCandidatesRequest(
        user_id="u1", num_candidates=5, exclude_item_ids=[f"item{i:07d}" for i in range(400_000)]
    )
    for request in (huge, ids):
        code, _ = _call(campaigns.stub.RetrieveCandidates, request)
        assert code == "RESOURCE_EXHAUSTED"
        campaigns.oversize += 1


CAMPAIGNS: dict[str, Callable[[Campaigns], None]] = {
    "single": _fuzz_single_requests,
    "batch": _fuzz_batches,
    "raw_bytes": _fuzz_raw_bytes,
    "oversize": _send_oversize_messages,
}


def test_fuzzed_requests_are_answered_or_refused_as_invalid(campaigns: Campaigns) -> None:
    campaigns.run("single")


def test_fuzzed_batches_are_answered_or_refused_as_invalid(campaigns: Campaigns) -> None:
    campaigns.run("batch")


def test_raw_malformed_bytes_are_invalid_argument(campaigns: Campaigns) -> None:
    campaigns.run("raw_bytes")


def test_oversize_messages_are_resource_exhausted(campaigns: Campaigns) -> None:
    campaigns.run("oversize")


def test_server_survived_and_never_reported_internal(
    server: ServeProcess, campaigns: Campaigns, results: Results
) -> None:
    failed = [name for name in CAMPAIGNS if campaigns.run(name, raise_failure=False)]  # their tests report why
    assert server.proc is not None and server.proc.poll() is None
    assert server.health() == "SERVING"
    handled: Counter[str] = Counter()
    for (name, labels), count in settled_scrape(server.metrics_port).items():
        if name == "grpc_server_handled_total":
            handled[dict(labels)["grpc_code"]] += int(count)
    results.record(
        SCENARIO,
        cases={"single": SINGLE_CASES, "batch": BATCH_CASES, "raw_bytes": RAW_CASES, "oversize": campaigns.oversize},
        client_codes=dict(sorted(campaigns.codes.items())),
        server_codes=dict(handled),
        server_alive=True,
    )
    assert not {"Internal", "Unknown"} & set(handled), handled
    assert sum(campaigns.codes.values()) >= SINGLE_CASES + BATCH_CASES  # hypothesis ran every case
    assert not failed, f"fuzz campaigns failed: {failed}"
