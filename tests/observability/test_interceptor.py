"""MetricsInterceptor on a real grpc.aio server: the final status code of every way a handler can end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from service.interceptors import MetricsInterceptor
from service.metrics import RetrievalMetrics

SERVICE = "test.v1.Echo"


async def _ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def _abort(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad field")
    raise AssertionError("unreachable")


async def _crash(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RuntimeError("boom")


async def _set_code(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    context.set_code(grpc.StatusCode.NOT_FOUND)
    context.set_details("no such thing")
    return b""


async def _slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(5)
    return request


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for _ in range(3):
        yield request
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "enough")


HANDLERS = {
    "Ok": grpc.unary_unary_rpc_method_handler(_ok),
    "Abort": grpc.unary_unary_rpc_method_handler(_abort),
    "Crash": grpc.unary_unary_rpc_method_handler(_crash),
    "SetCode": grpc.unary_unary_rpc_method_handler(_set_code),
    "Slow": grpc.unary_unary_rpc_method_handler(_slow),
    "Stream": grpc.unary_stream_rpc_method_handler(_stream),
}


def _handled(metrics: RetrievalMetrics, method: str, code: str, grpc_type: str = "unary") -> float | None:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_type": grpc_type, "grpc_code": code}
    return metrics.registry.get_sample_value("grpc_server_handled_total", labels)


async def _exercise(metrics: RetrievalMetrics) -> dict[str, Any]:
    server = grpc.aio.server(interceptors=[MetricsInterceptor(metrics)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, HANDLERS)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    codes: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(3):
                assert await channel.unary_unary(f"/{SERVICE}/Ok")(b"x") == b"x"
            for method in ("Abort", "Crash", "SetCode"):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await channel.unary_unary(f"/{SERVICE}/{method}")(b"x")
                codes[method] = error.value.code()
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await channel.unary_unary(f"/{SERVICE}/Slow")(b"x", timeout=0.2)
            codes["Slow"] = error.value.code()
            call = channel.unary_stream(f"/{SERVICE}/Stream")(b"s")
            codes["streamed"] = [m async for m in _until_error(call)]
            codes["Stream"] = await call.code()
        for _ in range(100):  # the server notices the expired deadline on its own schedule
            if _handled(metrics, "Slow", "Canceled") or _handled(metrics, "Slow", "DeadlineExceeded"):
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop(None)
    return codes


async def _until_error(call: Any) -> AsyncIterator[bytes]:
    try:
        async for message in call:
            yield message
    except grpc.aio.AioRpcError:
        return


def test_final_codes_of_ok_abort_crash_set_code_deadline_and_stream() -> None:
    metrics = RetrievalMetrics()
    codes = asyncio.run(_exercise(metrics))
    assert codes["Abort"] == grpc.StatusCode.INVALID_ARGUMENT
    assert codes["Crash"] == grpc.StatusCode.UNKNOWN
    assert codes["SetCode"] == grpc.StatusCode.NOT_FOUND
    assert codes["Stream"] == grpc.StatusCode.RESOURCE_EXHAUSTED and codes["streamed"] == [b"s"] * 3
    assert _handled(metrics, "Ok", "OK") == 3
    assert _handled(metrics, "Abort", "InvalidArgument") == 1
    assert _handled(metrics, "Crash", "Unknown") == 1
    assert _handled(metrics, "SetCode", "NotFound") == 1
    assert _handled(metrics, "Stream", "ResourceExhausted", "server_stream") == 1
    slow = (_handled(metrics, "Slow", "Canceled") or 0) + (_handled(metrics, "Slow", "DeadlineExceeded") or 0)
    assert slow == 1
    started = metrics.registry.get_sample_value
    labels = {"grpc_service": SERVICE, "grpc_method": "Ok", "grpc_type": "unary"}
    assert started("grpc_server_started_total", labels) == 3
    assert started("grpc_server_handling_seconds_count", labels) == 3
    assert started("grpc_server_handling_seconds_bucket", {**labels, "le": "10.0"}) == 3
    assert started("retrieval_requests_rejected_total", {"reason": "invalid_argument"}) == 1
