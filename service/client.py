"""A small synchronous Python client for the retrieval service (imports no TensorFlow)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from service.filter_syntax import parse_filter
from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

FeatureLike = str | int | float | Sequence[str] | Sequence[int] | Sequence[float]
# An item filter: an ItemFilter message, or restrict strings such as ["genres=Comedy", "release_year>=1990"]
# (service/filter_syntax.py).
FilterLike = pb.ItemFilter | Sequence[str]

# gRPC's own retry policy (service config, gRFC A6) for the retrieval methods: UNAVAILABLE (no model loaded yet,
# a replica shutting down or unreachable) is retried with exponential backoff, and the server's pushback
# (`grpc-retry-pushback-ms`, sent with the same delay as its RetryInfo) sets the wait; nothing else is retried.
RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


@dataclass(frozen=True)
class ErrorDetails:
    """The machine-readable part of a failed call (google.rpc.Status details, AIP-193).

    Attributes:
        code: the status code name, e.g. "INVALID_ARGUMENT".
        message: the human-readable message.
        reason: ErrorInfo.reason, e.g. "QUEUE_FULL", "NO_MODEL_LOADED"; "" when the server sent none.
        field_violations: (field path, description) of each BadRequest.FieldViolation.
        retry_delay_s: RetryInfo.retry_delay in seconds, or None.
    """

    code: str
    message: str
    reason: str = ""
    field_violations: tuple[tuple[str, str], ...] = ()
    retry_delay_s: float | None = None


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """Decodes the details of a failed call (grpcio-status); a status without details gives just code and message."""
    code = error.code()
    details = ErrorDetails(code=code.name, message=error.details() or "")
    status = rpc_status.from_call(error)
    if status is None:
        return details
    reason, violations, delay = "", [], None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.ToNanoseconds() / 1e9
    return ErrorDetails(details.code, details.message, reason, tuple(violations), delay)


def feature_value(value: FeatureLike) -> pb.FeatureValue:
    """Wraps a Python value in a FeatureValue: str, int, float, or a list of one of them.

    Raises:
        TypeError: for bools, mixed lists and other types.
    """
    if isinstance(value, bool):
        raise TypeError(f"booleans are not feature values, got {value!r}")
    if isinstance(value, str):
        return pb.FeatureValue(string_value=value)
    if isinstance(value, int):
        return pb.FeatureValue(int64_value=value)
    if isinstance(value, float):
        return pb.FeatureValue(float_value=value)
    items: list[Any] = list(value)
    if any(isinstance(v, bool) for v in items):
        raise TypeError(f"booleans are not feature values, got {value!r}")
    if all(isinstance(v, str) for v in items):
        return pb.FeatureValue(string_list=pb.StringList(values=items))
    if all(isinstance(v, int) for v in items):
        return pb.FeatureValue(int64_list=pb.Int64List(values=items))
    if all(isinstance(v, int | float) for v in items):
        return pb.FeatureValue(float_list=pb.FloatList(values=[float(v) for v in items]))
    raise TypeError(f"unsupported feature value {value!r}")


def _as_kind(value: FeatureLike, kind: int | None) -> FeatureLike:
    """An int (or list of ints) for a FLOAT (FLOAT_LIST) feature becomes a float (list of floats)."""
    if isinstance(value, bool) or kind not in (pb.FEATURE_KIND_FLOAT, pb.FEATURE_KIND_FLOAT_LIST):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str | float):
        return value
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    return value


def build_request(
    user_id: str,
    k: int,
    *,
    features: Mapping[str, FeatureLike] | None = None,
    history: Sequence[str] = (),
    exclude: Sequence[str] = (),
    exclude_history: bool = False,
    request_id: str = "",
    display: Sequence[str] = (),
    version: int | None = None,
    version_label: str | None = None,
    filter: FilterLike | None = None,
) -> pb.RetrieveCandidatesRequest:
    """A RetrieveCandidatesRequest from plain Python values; `display` selects display attributes ("*": all);
    `version` or `version_label` chooses the model version (neither: the server's default version); `filter`
    the items that may be returned (`FilterLike`)."""
    request = pb.RetrieveCandidatesRequest(
        user_id=user_id,
        num_candidates=k,
        user_features={name: feature_value(v) for name, v in (features or {}).items()},
        history_item_ids=list(history),
        exclude_item_ids=list(exclude),
        exclude_history=exclude_history,
        request_id=request_id,
        display_attributes=list(display),
        filter=item_filter(filter),
    )
    return choose_version(request, version, version_label)


VersionedRequest = TypeVar(
    "VersionedRequest", pb.RetrieveCandidatesRequest, pb.RetrieveSimilarItemsRequest, pb.GetServiceInfoRequest
)


def choose_version(
    request: VersionedRequest, version: int | None = None, version_label: str | None = None
) -> VersionedRequest:
    """Sets the request's `version_choice`: `model_version` or `version_label`, or neither (the default version).

    Raises:
        ValueError: when both are given.
    """
    if version is not None and version_label is not None:
        raise ValueError(f"give a version or a version label, not both (got {version} and {version_label!r})")
    if version is not None:
        request.model_version = version
    elif version_label is not None:
        request.version_label = version_label
    return request


def item_filter(value: FilterLike | None, kinds: Mapping[str, int] | None = None) -> pb.ItemFilter | None:
    """An ItemFilter from a `FilterLike` (restrict strings are parsed with the attribute `kinds`, if known)."""
    if value is None or isinstance(value, pb.ItemFilter):
        return value
    if isinstance(value, str):
        value = [value]
    return parse_filter(value, kinds)


class RetrievalClient:
    """Blocking client.

    Args:
        target: "host:port".
        root_certificates: PEM CA bundle to verify the server (enables TLS); None: plaintext.
        client_certificate: PEM client certificate chain for mTLS (with `client_key`).
        client_key: PEM private key of `client_certificate`.
        token: bearer token sent as `authorization` metadata.
        timeout_s: default deadline of each call.
        server_name: override of the TLS host name to verify (e.g. "localhost" when dialling an IP).
        retries: retry UNAVAILABLE with gRPC's own retry policy (`RETRY_SERVICE_CONFIG`); False: never retry.
    """

    def __init__(
        self,
        target: str,
        *,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
        server_name: str | None = None,
        retries: bool = True,
    ) -> None:
        options: list[tuple[str, Any]] = [("grpc.enable_retries", int(retries))]
        if retries:
            options.append(("grpc.service_config", RETRY_SERVICE_CONFIG))
        if root_certificates is None and client_certificate is None:
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates, client_key, client_certificate)
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self.channel = grpc.secure_channel(target, credentials, options=options)
        self.stub = pb_grpc.RetrievalServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout_s = timeout_s
        self._kinds: dict[str, int] | None = None

    def retrieve(
        self, user_id: str, k: int, *, timeout_s: float | None = None, **kwargs: Any
    ) -> pb.RetrieveCandidatesResponse:
        """Top-k candidates for one user; keyword arguments as in `build_request`. Feature values are converted to
        the kinds the server reports (e.g. an int for a numeric feature is sent as a float)."""
        if kwargs.get("features"):
            kwargs["features"] = self.typed_features(kwargs["features"], timeout_s=timeout_s)
        if kwargs.get("filter") is not None and not isinstance(kwargs["filter"], pb.ItemFilter):
            kwargs["filter"] = item_filter(kwargs["filter"], self.attribute_kinds(timeout_s=timeout_s))
        return self.call(self.stub.RetrieveCandidates, build_request(user_id, k, **kwargs), timeout_s)

    def typed_features(
        self, features: Mapping[str, FeatureLike], *, timeout_s: float | None = None
    ) -> dict[str, FeatureLike]:
        """`features` with numbers converted to the kind GetServiceInfo reports for each (asked once, then kept;
        the default version's kinds: versions of one model share their feature kinds)."""
        if self._kinds is None:
            self._kinds = {f.name: f.kind for f in self.service_info(timeout_s=timeout_s).features}
        return {name: _as_kind(value, self._kinds.get(name)) for name, value in features.items()}

    def attribute_kinds(self, *, timeout_s: float | None = None) -> dict[str, int]:
        """Filterable attribute name -> `pb.AttributeKind`, as GetServiceInfo reports them (asked each call)."""
        return {a.name: a.kind for a in self.service_info(timeout_s=timeout_s).filterable_attributes}

    def similar_items(
        self,
        item_ids: Sequence[str],
        k: int,
        *,
        exclude: Sequence[str] = (),
        display: Sequence[str] = (),
        request_id: str = "",
        filter: FilterLike | None = None,
        timeout_s: float | None = None,
        version: int | None = None,
        version_label: str | None = None,
    ) -> pb.RetrieveSimilarItemsResponse:
        """The k items most similar to `item_ids` ("more like this"), which are never returned themselves; only
        items that pass `filter` (`FilterLike`); `version` or `version_label` chooses the model version."""
        if filter is not None and not isinstance(filter, pb.ItemFilter):
            filter = item_filter(filter, self.attribute_kinds(timeout_s=timeout_s))
        request = pb.RetrieveSimilarItemsRequest(
            item_ids=list(item_ids),
            num_candidates=k,
            exclude_item_ids=list(exclude),
            display_attributes=list(display),
            request_id=request_id,
            filter=filter,
        )
        choose_version(request, version, version_label)
        return self.call(self.stub.RetrieveSimilarItems, request, timeout_s)

    def retrieve_batch(
        self, requests: Sequence[pb.RetrieveCandidatesRequest], *, timeout_s: float | None = None
    ) -> list[pb.RetrieveCandidatesResponse]:
        """One response per request, in order."""
        batch = pb.RetrieveCandidatesBatchRequest(requests=list(requests))
        return list(self.call(self.stub.RetrieveCandidatesBatch, batch, timeout_s).responses)

    def service_info(
        self, *, timeout_s: float | None = None, version: int | None = None, version_label: str | None = None
    ) -> pb.GetServiceInfoResponse:
        """The model version asked for (default: the server's default version), the limits and every version
        loaded (`versions`)."""
        request = choose_version(pb.GetServiceInfoRequest(), version, version_label)
        return self.call(self.stub.GetServiceInfo, request, timeout_s)

    def health(self, service: str = "", *, timeout_s: float | None = None) -> str:
        """The serving status name, e.g. "SERVING" or "NOT_SERVING"."""
        request = health_pb2.HealthCheckRequest(service=service)
        response = self._health.Check(request, timeout=timeout_s or self._timeout_s)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def call(self, method: Any, request: Any, timeout_s: float | None = None) -> Any:
        """Calls a stub method with this client's deadline and credentials metadata."""
        timeout = self._timeout_s if timeout_s is None else timeout_s
        return method(request, timeout=None if math.isinf(timeout) else timeout, metadata=self._metadata)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RetrievalClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def format_response(response: pb.RetrieveCandidatesResponse | pb.RetrieveSimilarItemsResponse) -> list[str]:
    """Human-readable lines: the serving model, then rank, item id, score and display attributes (titles)."""
    lines = [f"model {response.model_name} version {response.model_version}" + (" (truncated)" * response.truncated)]
    for candidate in response.candidates:
        shown = "  ".join(candidate.display[name] for name in sorted(candidate.display))
        lines.append(f"{candidate.rank:>4}  {candidate.item_id:>8}  {candidate.score:9.6f}  {shown}".rstrip())
    return lines
