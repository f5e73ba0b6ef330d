"""Domain errors of the retrieval service and their one mapping to gRPC status codes."""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base of the errors that the service reports to callers as a gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidRequest(ServiceError):
    """A request field is malformed or out of range.

    Args:
        field: path of the offending field, e.g. `user_features["age"]` or `requests[3].num_candidates`.
        message: what is wrong, with the value received.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def within(self, prefix: str) -> InvalidRequest:
        """The same error with `prefix` prepended to the field path (e.g. "requests[2].")."""
        return InvalidRequest(f"{prefix}{self.field}", self.message)


class Overloaded(ServiceError):
    """The request queue is full; the caller should back off and retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotReady(ServiceError):
    """No model is loaded yet, or the server is shutting down."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExpired(ServiceError):
    """The request's deadline passed before it could be served."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and details for an error; anything not a `ServiceError` is INTERNAL."""
    if isinstance(error, ServiceError):
        return error.code, str(error) or type(error).__name__
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}"
