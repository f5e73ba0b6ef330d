"""Domain errors of the retrieval service and their one mapping to a gRPC status with machine-readable details.

Each error maps to a status code and to details in the `google.rpc.Status` of AIP-193 (sent as the
`grpc-status-details-bin` trailer; grpcio-status decodes it on the client):
- `ErrorInfo` with a stable `reason` (below) in the domain `retrieval.v1`, for programs to act on;
- `BadRequest.FieldViolation` naming the field (the same path the message starts with) for INVALID_ARGUMENT and
  for NOT_FOUND of an unknown model version or label;
- `RetryInfo` for RESOURCE_EXHAUSTED and UNAVAILABLE, plus gRPC's own `grpc-retry-pushback-ms` trailer with the
  same delay, which a client's service-config retry policy honours.
"""

from __future__ import annotations

from typing import ClassVar, Self

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "retrieval.v1"
# The trailer gRPC clients read to wait before a retry (gRFC A6 "server pushback").
PUSHBACK_KEY = "grpc-retry-pushback-ms"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class ServiceError(Exception):
    """Base of the errors that the service reports to callers as a gRPC status.

    Attributes:
        code: the gRPC status code.
        reason: the stable `ErrorInfo.reason` (UPPER_SNAKE_CASE) a program can switch on.
        retry_after_s: a suggested wait before retrying (RetryInfo), or None when retrying would not help.
    """

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"
    retry_after_s: float | None = None


class FieldError(ServiceError):
    """An error caused by one request field, reported with a `BadRequest.FieldViolation` naming it.

    Args:
        field: path of the offending field, e.g. `user_features["age"]` or `requests[3].num_candidates`.
        message: what is wrong, with the value received.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def within(self, prefix: str) -> Self:
        """The same error with `prefix` prepended to the field path (e.g. "requests[2].")."""
        return type(self)(f"{prefix}{self.field}", self.message)


class InvalidRequest(FieldError):
    """A request field is malformed or out of range."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_FIELD"


class UnknownVersion(FieldError):
    """The model version or version label a request names is not loaded (`model_version` or `version_label`)."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "UNKNOWN_VERSION"


class Overloaded(ServiceError):
    """The request queue is full; the caller should back off and retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "QUEUE_FULL"
    retry_after_s = 0.05


class NotReady(ServiceError):
    """No model is loaded yet (reason NO_MODEL_LOADED)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "NO_MODEL_LOADED"
    retry_after_s = 1.0


class ShuttingDown(NotReady):
    """The server is shutting down: another replica (or this one's successor) will answer."""

    reason = "SHUTTING_DOWN"
    retry_after_s = 0.1


class DeadlineExpired(ServiceError):
    """The request's deadline passed before it could be served."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXPIRED"


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and details for an error; anything not a `ServiceError` is INTERNAL."""
    if isinstance(error, ServiceError):
        return error.code, str(error) or type(error).__name__
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}"


def rich_status(error: BaseException) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]]:
    """(code, message, trailing metadata) for an error: the metadata carries the `google.rpc.Status` details."""
    code, message = status_for(error)
    reason = error.reason if isinstance(error, ServiceError) else ServiceError.reason
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    if isinstance(error, FieldError):
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    metadata: list[tuple[str, str | bytes]] = []
    retry_after = error.retry_after_s if isinstance(error, ServiceError) else None
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        metadata.append((PUSHBACK_KEY, str(int(retry_after * 1000))))
    metadata.append((STATUS_DETAILS_KEY, status.SerializeToString()))
    return code, message, tuple(metadata)
