"""The RetrievalService servicer: validate, queue in the micro-batcher, answer; errors mapped in one place."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import grpc

from service.admission import AdmissionGate
from service.batcher import MicroBatcher
from service.engine import Engine
from service.errors import FieldError, InvalidRequest, NotReady, ServiceError, rich_status
from service.filters import attribute_kind
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from service.observer import NullObserver, ServingObserver
from service.query import Query
from service.responses import batch_response
from service.served_versions import ServedVersions, VersionInfo
from service.similar import validate_similar_request
from service.validation import ServiceLimits, feature_kind, history_length, request_features, validate_request

logger = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Answer = TypeVar("Answer")
VersionedRequest = pb.RetrieveCandidatesRequest | pb.RetrieveSimilarItemsRequest | pb.GetServiceInfoRequest


class EngineSource(Protocol):
    """Where the servicer finds the versions serving now (the model manager)."""

    @property
    def served(self) -> ServedVersions | None: ...


def _mapped_errors(
    method: Callable[[RetrievalServicer, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[RetrievalServicer, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    """Admits the call through the servicer's gate; turns domain errors (and unexpected ones) into a gRPC status
    with machine-readable details via `rich_status`."""

    @functools.wraps(method)
    async def wrapper(self: RetrievalServicer, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            with self._gate.admit():
                return await method(self, request, context)
        except ServiceError as error:
            code, details, trailers = rich_status(error)
        except Exception as error:
            logger.exception("unexpected error in %s", method.__name__)
            code, details, trailers = rich_status(error)
        await context.abort(code, details, trailers)
        raise AssertionError("context.abort returned")  # pragma: no cover

    return wrapper


class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    """Answers RetrieveCandidates, RetrieveCandidatesBatch, RetrieveSimilarItems and GetServiceInfo.

    Args:
        engines: gives the current engine (None before the first model loads → UNAVAILABLE).
        batcher: queues (engine, query) pairs and returns one serialised response per pair.
        limits: request limits, also reported by GetServiceInfo.
        gate: admits calls; once closed (shutdown) new calls get UNAVAILABLE. Default: a gate of its own.
        observer: receives the requests answered by each model version.
    """

    def __init__(
        self,
        engines: EngineSource,
        batcher: MicroBatcher[tuple[Engine, Query], bytes],
        limits: ServiceLimits,
        gate: AdmissionGate | None = None,
        observer: ServingObserver | None = None,
    ) -> None:
        self._engines = engines
        self._batcher = batcher
        self._limits = limits
        self._gate = gate or AdmissionGate()
        self._observer = observer or NullObserver()

    def _served(self) -> ServedVersions:
        served = self._engines.served
        if served is None:
            raise NotReady("no model loaded yet")
        return served

    def _engine(self, request: VersionedRequest, served: ServedVersions | None = None) -> Engine:
        """The engine of the version the request names (`version_choice`), else of the default version.

        Raises:
            NotReady: before any version is loaded.
            UnknownVersion: the version or label named is not loaded.
        """
        if served is None:
            served = self._served()
        choice = request.WhichOneof("version_choice")
        if choice == "model_version":
            return served.resolve(version=request.model_version)
        if choice == "version_label":
            return served.resolve(label=request.version_label)
        return served.default

    async def _answered(self, versions: list[int], answer: Awaitable[Answer]) -> Answer:
        """Awaits `answer` and reports it to the observer under the versions of its requests."""
        start = time.perf_counter()
        ok = False
        try:
            result = await answer
            ok = True
            return result
        finally:
            seconds = time.perf_counter() - start
            for version in sorted(set(versions)):
                self._observer.on_version_requests(version, versions.count(version), ok, seconds)

    @_mapped_errors
    async def RetrieveCandidates(
        self, request: pb.RetrieveCandidatesRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        self._batcher.check_room()  # refuse before validating: under overload refusals must be cheap
        engine = self._engine(request)
        query = validate_request(request, engine.spec, self._limits, engine.display_names, engine.attribute_kinds)
        # The serialised response, built with its whole batch in the compute thread (service/responses.py).
        answer = self._batcher.submit((engine, query), timeout_s=context.time_remaining())
        return await self._answered([engine.manifest.model_version], answer)

    @_mapped_errors
    async def RetrieveCandidatesBatch(
        self, request: pb.RetrieveCandidatesBatchRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        count, limit = len(request.requests), self._limits.max_batch_requests
        if count > limit:
            raise InvalidRequest("requests", f"at most {limit} requests per call, got {count}")
        if not count:
            return b""  # an empty RetrieveCandidatesBatchResponse
        self._batcher.check_room(count)
        served = self._served()
        work = []
        for i, single in enumerate(request.requests):
            try:
                engine = self._engine(single, served)
                query = validate_request(
                    single, engine.spec, self._limits, engine.display_names, engine.attribute_kinds
                )
                work.append((engine, query))
            except FieldError as error:
                raise error.within(f"requests[{i}].") from error
        answers = self._batcher.submit_many(work, timeout_s=context.time_remaining())
        return batch_response(await self._answered([e.manifest.model_version for e, _ in work], answers))

    @_mapped_errors
    async def RetrieveSimilarItems(
        self, request: pb.RetrieveSimilarItemsRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        self._batcher.check_room()
        engine = self._engine(request)
        if not engine.answers_similar_items:
            raise NotReady("the serving model version has no item embeddings loaded")
        query = validate_similar_request(
            request, engine.row_of, self._limits, engine.display_names, engine.attribute_kinds
        )
        # RetrieveSimilarItemsResponse has RetrieveCandidatesResponse's fields and numbers: the same bytes.
        answer = self._batcher.submit((engine, query), timeout_s=context.time_remaining())
        return await self._answered([engine.manifest.model_version], answer)

    @_mapped_errors
    async def GetServiceInfo(
        self, request: pb.GetServiceInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetServiceInfoResponse:
        served = self._served()
        return service_info(self._engine(request, served), self._limits, served.describe())


def service_info(
    engine: Engine, limits: ServiceLimits, versions: list[VersionInfo] | None = None
) -> pb.GetServiceInfoResponse:
    """Describes an engine (the version asked for, else the default one), the request limits and the versions
    serving."""
    manifest = engine.manifest
    return pb.GetServiceInfoResponse(
        model_name=manifest.model_name,
        model_version=str(manifest.model_version),
        embedding_dim=manifest.embedding_dim,
        item_count=engine.item_count,
        index_type=manifest.index.factory,
        index_device=engine.index_device,
        query_device=engine.query_device,
        max_num_candidates=limits.max_k,
        max_exclusions=limits.max_exclusions,
        features=[pb.FeatureSpec(name=f.name, kind=feature_kind(f)) for f in request_features(engine.spec)],
        similarity=manifest.similarity,
        bundle_format_version=str(manifest.format_version),
        max_history_length=history_length(engine.spec),
        display_attributes=engine.display_names,
        max_batch_requests=limits.max_batch_requests,
        versions=[
            pb.ServedVersion(model_version=v.version, labels=v.labels, is_default=v.is_default) for v in versions or ()
        ],
        filterable_attributes=[
            pb.FilterableAttribute(name=name, kind=attribute_kind(kind))
            for name, kind in engine.attribute_kinds.items()
        ],
    )


def add_retrieval_service(servicer: RetrievalServicer, server: grpc.aio.Server) -> None:
    """Registers the servicer like the generated `add_RetrievalServiceServicer_to_server`, except that the two
    retrieval methods return their responses already serialised (bytes pass through; messages are serialised)."""
    service = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
    handlers = {
        "RetrieveCandidates": grpc.unary_unary_rpc_method_handler(
            servicer.RetrieveCandidates, pb.RetrieveCandidatesRequest.FromString, _serialized
        ),
        "RetrieveCandidatesBatch": grpc.unary_unary_rpc_method_handler(
            servicer.RetrieveCandidatesBatch, pb.RetrieveCandidatesBatchRequest.FromString, _serialized
        ),
        "RetrieveSimilarItems": grpc.unary_unary_rpc_method_handler(
            servicer.RetrieveSimilarItems, pb.RetrieveSimilarItemsRequest.FromString, _serialized
        ),
        "GetServiceInfo": grpc.unary_unary_rpc_method_handler(
            servicer.GetServiceInfo,
            pb.GetServiceInfoRequest.FromString,
            pb.GetServiceInfoResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)


def _serialized(response: bytes | pb.RetrieveCandidatesResponse | pb.RetrieveSimilarItemsResponse) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()
