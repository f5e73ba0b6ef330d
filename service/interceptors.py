"""A grpc.aio server interceptor that reports each call's start, final status code and latency to a collector.

The final code is read the way grpc.aio settles it: a handler that returns normally ends with the code it set on
the context (OK when none); `context.abort(...)` raises after setting the code, which the context still holds;
an unexpected exception ends as UNKNOWN; a cancelled call as CANCELLED. Streaming handlers are timed until
their last message (async generators) or until they return (coroutines that send with `context.write`).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc

# gRPC status codes as the standard server metrics spell them (grpc-ecosystem/go-grpc-middleware).
CODE_LABELS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}


class CallCollector(Protocol):
    """Receives call events; `grpc_type` is unary, client_stream, server_stream or bidi_stream."""

    def on_call_started(self, service: str, method: str, grpc_type: str) -> None: ...

    def on_call_handled(self, service: str, method: str, grpc_type: str, code: str, seconds: float) -> None: ...


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler to report start, final code and handling time to `collector`.

    Args:
        collector: receives the events (e.g. `RetrievalMetrics`).
    """

    def __init__(self, collector: CallCollector) -> None:
        self._collector = collector
        self._wrapped = HandlerCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self._wrapped.get(handler, handler_call_details.method, self._wrap)

    def _wrap(self, handler: grpc.RpcMethodHandler, full_method: str) -> grpc.RpcMethodHandler:
        service, _, method = full_method.lstrip("/").rpartition("/")
        call = _Call(self._collector, service or "unknown", method, _grpc_type(handler))
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                call.wrap_unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                call.wrap_unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                call.wrap_stream(handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            call.wrap_stream(handler.stream_stream), handler.request_deserializer, handler.response_serializer
        )


class HandlerCache:
    """Wrapped handlers by (method, inner handler): an interceptor wraps each method's handler once, not per call.

    The inner handler is compared by identity (the servicer's registered handlers are long-lived objects); a
    handler built per call (e.g. an authentication refusal) simply misses. Bounded: cleared when full.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self._entries: dict[tuple[str, int], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._max_entries = max_entries

    def get(
        self,
        handler: grpc.RpcMethodHandler,
        method: str,
        wrap: Callable[[grpc.RpcMethodHandler, str], grpc.RpcMethodHandler],
    ) -> grpc.RpcMethodHandler:
        key = (method, id(handler))
        entry = self._entries.get(key)
        if entry is not None and entry[0] is handler:
            return entry[1]
        wrapped = wrap(handler, method)
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key] = (handler, wrapped)  # holding `handler` keeps its id from being reused
        return wrapped


class _Call:
    """The labels of one method and the wrappers that time its handler."""

    def __init__(self, collector: CallCollector, service: str, method: str, grpc_type: str) -> None:
        self._collector = collector
        self._labels = (service, method, grpc_type)

    def wrap_unary(self, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = self._started()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                self._handled(context, error, start)

        return observed

    def wrap_stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            # A streaming handler written as a coroutine that sends with `context.write` (e.g. the stock
            # grpc.health.v1 Watch): iterating over it would raise TypeError, so time it like a unary one.
            return self.wrap_unary(behavior)

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            start = self._started()
            error: BaseException | None = None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as raised:
                error = raised
                raise
            finally:
                self._handled(context, error, start)

        return observed

    def _started(self) -> float:
        self._collector.on_call_started(*self._labels)
        return time.perf_counter()

    def _handled(self, context: grpc.aio.ServicerContext, error: BaseException | None, start: float) -> None:
        seconds = time.perf_counter() - start
        self._collector.on_call_handled(*self._labels, final_code(context, error), seconds)


def final_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """The status label a call ends with, from the code set on its context and the exception it raised."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return CODE_LABELS[code]
    if isinstance(error, asyncio.CancelledError):
        return CODE_LABELS[grpc.StatusCode.CANCELLED]
    if error is not None:
        return CODE_LABELS[grpc.StatusCode.UNKNOWN]
    return CODE_LABELS[grpc.StatusCode.OK]


def _grpc_type(handler: grpc.RpcMethodHandler) -> str:
    kinds = {(False, False): "unary", (True, False): "client_stream", (False, True): "server_stream"}
    return kinds.get((bool(handler.request_streaming), bool(handler.response_streaming)), "bidi_stream")
