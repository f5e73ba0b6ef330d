"""A small synchronous Python client for the retrieval service (imports no TensorFlow)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.generated.retrieval.v1 import retrieval_pb2 as pb
from service.generated.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

FeatureLike = str | int | float | Sequence[str] | Sequence[int] | Sequence[float]


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
) -> pb.RetrieveCandidatesRequest:
    """A RetrieveCandidatesRequest from plain Python values; `display` selects display attributes ("*": all)."""
    return pb.RetrieveCandidatesRequest(
        user_id=user_id,
        num_candidates=k,
        user_features={name: feature_value(v) for name, v in (features or {}).items()},
        history_item_ids=list(history),
        exclude_item_ids=list(exclude),
        exclude_history=exclude_history,
        request_id=request_id,
        display_attributes=list(display),
    )


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
    ) -> None:
        if root_certificates is None and client_certificate is None:
            self.channel = grpc.insecure_channel(target)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates, client_key, client_certificate)
            options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
            self.channel = grpc.secure_channel(target, credentials, options=options)
        self.stub = pb_grpc.RetrievalServiceStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout_s = timeout_s

    def retrieve(
        self, user_id: str, k: int, *, timeout_s: float | None = None, **kwargs: Any
    ) -> pb.RetrieveCandidatesResponse:
        """Top-k candidates for one user; keyword arguments as in `build_request`."""
        return self.call(self.stub.RetrieveCandidates, build_request(user_id, k, **kwargs), timeout_s)

    def retrieve_batch(
        self, requests: Sequence[pb.RetrieveCandidatesRequest], *, timeout_s: float | None = None
    ) -> list[pb.RetrieveCandidatesResponse]:
        """One response per request, in order."""
        batch = pb.RetrieveCandidatesBatchRequest(requests=list(requests))
        return list(self.call(self.stub.RetrieveCandidatesBatch, batch, timeout_s).responses)

    def service_info(self, *, timeout_s: float | None = None) -> pb.GetServiceInfoResponse:
        return self.call(self.stub.GetServiceInfo, pb.GetServiceInfoRequest(), timeout_s)

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


def format_response(response: pb.RetrieveCandidatesResponse) -> list[str]:
    """Human-readable lines: the serving model, then rank, item id, score and display attributes (titles)."""
    lines = [f"model {response.model_name} version {response.model_version}" + (" (truncated)" * response.truncated)]
    for candidate in response.candidates:
        shown = "  ".join(candidate.display[name] for name in sorted(candidate.display))
        lines.append(f"{candidate.rank:>4}  {candidate.item_id:>8}  {candidate.score:9.6f}  {shown}".rstrip())
    return lines
