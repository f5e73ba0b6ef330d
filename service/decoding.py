"""A grpc.aio server interceptor that answers INVALID_ARGUMENT to request bytes that do not parse.

Left alone, grpc.aio answers a request whose deserializer raises (corrupt wire format, a string field that is
not UTF-8) with UNKNOWN, which reads as a server fault, and before any interceptor sees the call. This
interceptor wraps the deserializer of unary-request methods so that a parse failure reaches the handler as a
marker, which is then refused with INVALID_ARGUMENT (and is counted and timed like any other call).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.interceptors import HandlerCache

logger = logging.getLogger(__name__)


class MalformedRequest:
    """Stands in for a request whose bytes could not be parsed; `reason` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    """Refuses unparseable unary requests with INVALID_ARGUMENT instead of grpc's UNKNOWN."""

    def __init__(self) -> None:
        self._wrapped = HandlerCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        return self._wrapped.get(handler, handler_call_details.method, _guarded)


def _guarded(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    deserialize = lenient(handler.request_deserializer)
    if handler.unary_unary is not None and inspect.iscoroutinefunction(handler.unary_unary):
        return grpc.unary_unary_rpc_method_handler(
            _guard_unary(handler.unary_unary, method), deserialize, handler.response_serializer
        )
    if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
        return grpc.unary_stream_rpc_method_handler(
            _guard_stream(handler.unary_stream, method), deserialize, handler.response_serializer
        )
    if handler.unary_stream is not None and inspect.iscoroutinefunction(handler.unary_stream):
        # A streaming handler that sends with `context.write` (e.g. the stock health Watch).
        return grpc.unary_stream_rpc_method_handler(
            _guard_unary(handler.unary_stream, method), deserialize, handler.response_serializer
        )
    return handler


def lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`deserialize`, returning a `MalformedRequest` instead of raising."""

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:
            return MalformedRequest(f"{type(error).__name__}: {error}")

    return parse


async def _refuse(request: MalformedRequest, context: grpc.aio.ServicerContext, method: str) -> None:
    logger.debug("malformed request refused method=%s reason=%s", method, request.reason)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: cannot parse the message ({request.reason})")


def _guard_unary(behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, MalformedRequest):
            await _refuse(request, context, method)
        return await behavior(request, context)

    return guarded


def _guard_stream(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if isinstance(request, MalformedRequest):
            await _refuse(request, context, method)
        async for response in behavior(request, context):
            yield response

    return guarded
