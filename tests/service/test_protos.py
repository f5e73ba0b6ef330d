"""Tests of the gRPC contract: committed stubs match the .proto, messages round-trip, wiring works."""

from __future__ import annotations

import asyncio
import filecmp
import importlib.metadata
from pathlib import Path

import grpc
import pytest

from service import protogen
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc


def test_grpcio_tools_version_equals_grpcio_version() -> None:
    tools = importlib.metadata.version("grpcio-tools")
    runtime = importlib.metadata.version("grpcio")
    assert tools == runtime, f"grpcio-tools {tools} must be pinned to grpcio {runtime}"


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    fresh = tmp_path / "generated"
    written = protogen.generate(fresh)

    relative = sorted(p.relative_to(fresh) for p in written)
    committed_dir = protogen.DEFAULT_OUT_DIR
    committed = sorted(p.relative_to(committed_dir) for p in _stub_files(committed_dir))
    assert relative == committed
    stale = [str(r) for r in relative if not filecmp.cmp(fresh / r, committed_dir / r, shallow=False)]
    assert not stale, f"stubs out of date, run `python -m service.protogen`: {stale}"
    assert protogen.main(["--check"]) == 0


def test_generated_imports_are_package_relative(tmp_path: Path) -> None:
    written = protogen.generate(tmp_path / "out", package="pkg.sub")
    grpc_module = next(p for p in written if p.name == "retrieval_pb2_grpc.py").read_text()
    assert "from pkg.sub.retrieval.v1 import retrieval_pb2 as" in grpc_module
    assert "from retrieval." not in grpc_module
    assert pb.RetrieveCandidatesRequest.__module__ == "service.generated.retrieval.v1.retrieval_pb2"


def test_rewrite_imports_leaves_other_imports_alone() -> None:
    source = "from google.protobuf import descriptor\nfrom retrieval.v1 import a_pb2 as x\n"
    rewritten = protogen.rewrite_imports(source, ["retrieval"], "service.generated")
    assert rewritten == (
        "from google.protobuf import descriptor\nfrom service.generated.retrieval.v1 import a_pb2 as x\n"
    )


def test_request_with_every_field_round_trips() -> None:
    request = _full_request()
    for field in pb.RetrieveCandidatesRequest.DESCRIPTOR.fields:
        if field.containing_oneof is not None:
            assert request.WhichOneof(field.containing_oneof.name) is not None, field.containing_oneof.name
        elif field.is_repeated:
            assert len(getattr(request, field.name)) > 0, field.name
        else:
            assert request.HasField(field.name) if field.has_presence else getattr(request, field.name)
    oneof_cases = {value.WhichOneof("value") for value in request.user_features.values()}
    assert oneof_cases == {f.name for f in pb.FeatureValue.DESCRIPTOR.oneofs_by_name["value"].fields}

    decoded = pb.RetrieveCandidatesRequest.FromString(request.SerializeToString())

    assert decoded == request
    assert decoded.user_features["genres"].string_list.values == ["drama", "comedy"]
    assert decoded.user_features["age"].WhichOneof("value") == "int64_value"
    assert list(decoded.history_item_ids) == ["i1", "i2", "i3"]
    assert decoded.WhichOneof("version_choice") == "version_label"
    assert decoded.filter.numeric[0].op == pb.NumericRestrict.OPERATOR_GREATER_EQUAL


def test_service_info_and_batch_round_trip() -> None:
    info = pb.GetServiceInfoResponse(
        model_name="m",
        model_version="7",
        embedding_dim=64,
        item_count=1_682,
        index_type="IVF64,Flat",
        index_device="gpu:0",
        query_device="cpu",
        max_num_candidates=1000,
        max_exclusions=500,
        features=[pb.FeatureSpec(name="age", kind=pb.FEATURE_KIND_INT64, required=True)],
        similarity="cosine",
        bundle_format_version="1",
        max_history_length=50,
    )
    batch = pb.RetrieveCandidatesBatchRequest(requests=[_full_request(), pb.RetrieveCandidatesRequest()])

    assert pb.GetServiceInfoResponse.FromString(info.SerializeToString()) == info
    assert pb.RetrieveCandidatesBatchRequest.FromString(batch.SerializeToString()) == batch


class _TrivialServicer(pb_grpc.RetrievalServiceServicer):
    """Returns items "item-0".."item-{k-1}" with decreasing scores."""

    async def RetrieveCandidates(
        self, request: pb.RetrieveCandidatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetrieveCandidatesResponse:
        k = request.num_candidates
        candidates = [pb.Candidate(item_id=f"item-{i}", score=1.0 - i / 10, rank=i) for i in range(k)]
        return pb.RetrieveCandidatesResponse(
            candidates=candidates, model_name="trivial", model_version="1", request_id=request.request_id
        )


async def _call_trivial_server() -> pb.RetrieveCandidatesResponse:
    server = grpc.aio.server()
    pb_grpc.add_RetrievalServiceServicer_to_server(_TrivialServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RetrievalServiceStub(channel)
            response = await stub.RetrieveCandidates(
                pb.RetrieveCandidatesRequest(user_id="u1", num_candidates=3, request_id="req-42"), timeout=10
            )
            with pytest.raises(grpc.aio.AioRpcError) as unimplemented:
                await stub.GetServiceInfo(pb.GetServiceInfoRequest(), timeout=10)
            assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
            return response
    finally:
        await server.stop(grace=None)


def test_real_aio_server_answers_retrieve_candidates() -> None:
    response = asyncio.run(_call_trivial_server())

    assert [c.item_id for c in response.candidates] == ["item-0", "item-1", "item-2"]
    assert [c.rank for c in response.candidates] == [0, 1, 2]
    assert response.candidates[1].score == pytest.approx(0.9)
    assert response.request_id == "req-42"
    assert response.model_version == "1"


def _full_request() -> pb.RetrieveCandidatesRequest:
    return pb.RetrieveCandidatesRequest(
        user_id="u1",
        user_features={
            "country": pb.FeatureValue(string_value="DE"),
            "age": pb.FeatureValue(int64_value=34),
            "activity": pb.FeatureValue(float_value=0.25),
            "genres": pb.FeatureValue(string_list=pb.StringList(values=["drama", "comedy"])),
            "clusters": pb.FeatureValue(int64_list=pb.Int64List(values=[3, -1])),
            "taste": pb.FeatureValue(float_list=pb.FloatList(values=[0.5, -1.5])),
        },
        history_item_ids=["i1", "i2", "i3"],
        num_candidates=100,
        exclude_item_ids=["i9"],
        exclude_history=True,
        request_id="req-1",
        display_attributes=["title"],
        filter=pb.ItemFilter(
            categorical=[pb.CategoricalRestrict(namespace="genres", allow=["Comedy"], deny=["Horror"])],
            numeric=[
                pb.NumericRestrict(namespace="release_year", op=pb.NumericRestrict.OPERATOR_GREATER_EQUAL, value=1990)
            ],
        ),
        version_label="canary",
    )


def _stub_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
