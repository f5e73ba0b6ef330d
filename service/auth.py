"""Bearer-token authentication: a server interceptor that answers UNAUTHENTICATED without a valid token.

Callers send metadata `authorization: Bearer <token>`. Health checking and reflection stay open, so that
load balancers and tooling work without credentials.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

logger = logging.getLogger(__name__)

# Method-name prefixes that need no token.
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Admits calls whose `authorization` metadata is `Bearer <t>` for one of `tokens`.

    Args:
        tokens: the accepted tokens (non-empty strings).
        exempt_prefixes: method-name prefixes admitted without a token.
    """

    def __init__(self, tokens: Iterable[str], exempt_prefixes: tuple[str, ...] = EXEMPT_PREFIXES) -> None:
        self._tokens = [t.encode() for t in tokens]
        if not self._tokens or not all(self._tokens):
            raise ValueError("BearerTokenInterceptor needs at least one non-empty token")
        self._exempt = exempt_prefixes

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(self._exempt) or self._authorized(handler_call_details):
            return handler
        logger.warning("unauthenticated call rejected method=%s", method)
        return _denying_handler(handler)

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        metadata: Any = details.invocation_metadata or ()
        for key, value in metadata:
            if key.lower() != "authorization":
                continue
            raw = value.encode() if isinstance(value, str) else bytes(value)
            scheme, _, token = raw.partition(b" ")
            if scheme.lower() == b"bearer" and any(hmac.compare_digest(token.strip(), t) for t in self._tokens):
                return True
        return False


def _denying_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as `handler` that aborts with UNAUTHENTICATED."""

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return make(
        deny,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
