"""Bearer-token authentication: a server interceptor that answers UNAUTHENTICATED without a valid token.

Callers send metadata `authorization: Bearer <token>`. Health checking and reflection stay open, so that
load balancers and tooling work without credentials. A token may carry an expiry time, after which it is
refused ("bearer token expired"). Token values never appear in logs, errors or reprs.

Token files (`--auth-token-file`) hold one token per line, optionally followed by `expires=<ISO-8601 time>`
(e.g. `s3cret expires=2030-01-01T00:00:00Z`; a time without a zone is UTC); blank lines are ignored.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc

logger = logging.getLogger(__name__)

# Method-name prefixes that need no token.
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_EXPIRING_LINE = re.compile(r"^(?P<token>.*\S)\s+expires=(?P<when>\S+)$")


@dataclass(frozen=True)
class BearerToken:
    """An accepted token, valid until `expires_at` (aware datetime) when set."""

    value: str = field(repr=False)
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.value:
            raise ValueError("bearer tokens must not be empty")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            object.__setattr__(self, "expires_at", self.expires_at.replace(tzinfo=UTC))


def parse_token_lines(text: str) -> tuple[str | BearerToken, ...]:
    """Tokens of a token file: plain strings, or `BearerToken`s for lines with `expires=<ISO-8601>`.

    Raises:
        ValueError: naming the line (never the token) whose expiry is not an ISO-8601 time.
    """
    tokens: list[str | BearerToken] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _EXPIRING_LINE.match(line)
        if match is None:
            tokens.append(line)
            continue
        try:
            expires = datetime.fromisoformat(match["when"])
        except ValueError:
            raise ValueError(f"token file line {number}: expires={match['when']!r} is not an ISO-8601 time") from None
        tokens.append(BearerToken(match["token"], expires))
    return tuple(tokens)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Admits calls whose `authorization` metadata is `Bearer <t>` for one of `tokens` that has not expired.

    Args:
        tokens: the accepted tokens: non-empty strings (no expiry) or `BearerToken`s.
        exempt_prefixes: method-name prefixes admitted without a token.
        clock: the current time (aware datetime); for tests.
    """

    def __init__(
        self,
        tokens: Iterable[str | BearerToken],
        exempt_prefixes: tuple[str, ...] = EXEMPT_PREFIXES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        accepted = [t if isinstance(t, BearerToken) else BearerToken(t) for t in tokens]
        if not accepted:
            raise ValueError("BearerTokenInterceptor needs at least one non-empty token")
        self._tokens = [(t.value.encode(), t.expires_at) for t in accepted]
        self._exempt = exempt_prefixes
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(self._exempt):
            return handler
        refusal = self._refusal(handler_call_details)
        if refusal is None:
            return handler
        logger.warning("unauthenticated call rejected method=%s reason=%s", method, refusal)
        return _denying_handler(handler, "bearer token expired" if refusal == "expired" else None)

    def _refusal(self, details: grpc.HandlerCallDetails) -> str | None:
        """None when a valid token was presented, else "missing", "invalid" or "expired"."""
        metadata: Any = details.invocation_metadata or ()
        refusal = "missing"
        for key, value in metadata:
            if key.lower() != "authorization":
                continue
            raw = value.encode() if isinstance(value, str) else bytes(value)
            scheme, _, presented = raw.partition(b" ")
            if scheme.lower() != b"bearer":
                refusal = "invalid"
                continue
            # Compare with every token (constant time each), so that timing does not tell which one matched.
            matches = [expires for token, expires in self._tokens if hmac.compare_digest(presented.strip(), token)]
            if not matches:
                refusal = "invalid"
            elif any(expires is None or self._clock() < expires for expires in matches):
                return None
            else:
                refusal = "expired"
        return refusal


def _denying_handler(handler: grpc.RpcMethodHandler, details: str | None = None) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as `handler` that aborts with UNAUTHENTICATED."""

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details or "missing or invalid bearer token")

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
