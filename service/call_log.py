"""A grpc.aio server interceptor that makes each call's request_id known to the logs and logs every error.

For the duration of a call, `service.logs.REQUEST_ID` holds the request's `request_id` (a batch call's ids,
comma-separated), so every line logged while handling it carries the id. A call that ends with a status other
than OK logs one line with its method, status code, details and request_id: WARNING for what callers cause
(INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...), ERROR for UNKNOWN, INTERNAL and DATA_LOSS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from service.interceptors import HandlerCache
from service.logs import REQUEST_ID

logger = logging.getLogger(__name__)
SERVER_FAULTS = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS)


class CallLogInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request_id of unary-request calls for the logs and logs each call that fails."""

    def __init__(self) -> None:
        self._wrapped = HandlerCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.unary_unary:
            return handler
        return self._wrapped.get(handler, handler_call_details.method, _logged)


def request_id_of(request: Any) -> str:
    """The request's request_id, or its sub-requests' ids joined by commas (a batch call); "" if none."""
    own = getattr(request, "request_id", None)
    if isinstance(own, str):
        return own
    inner = getattr(request, "requests", None)
    if inner is not None:
        return ",".join(r.request_id for r in inner if getattr(r, "request_id", ""))
    return ""


def _logged(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    behavior = handler.unary_unary

    async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = REQUEST_ID.set(request_id_of(request))
        error: BaseException | None = None
        try:
            return await behavior(request, context)
        except BaseException as raised:
            error = raised
            raise
        finally:
            _log_outcome(method, context, error)
            REQUEST_ID.reset(token)

    return grpc.unary_unary_rpc_method_handler(logged, handler.request_deserializer, handler.response_serializer)


def _log_outcome(method: str, context: grpc.aio.ServicerContext, error: BaseException | None) -> None:
    code = context.code()
    if not isinstance(code, grpc.StatusCode):
        if isinstance(error, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        elif error is not None:
            code = grpc.StatusCode.UNKNOWN
        else:
            return
    if code == grpc.StatusCode.OK:
        return
    details = context.details() or (str(error) if error is not None else "")
    level = logging.ERROR if code in SERVER_FAULTS else logging.WARNING
    logger.log(
        level,
        "call failed method=%s code=%s request_id=%s: %s",
        method,
        code.name,
        REQUEST_ID.get(),
        details,
        extra={"grpc_method": method, "grpc_code": code.name},
    )
