"""grpc.health.v1 for asyncio whose Watch streams end at shutdown.

The stock `grpc_health.v1.health.aio.HealthServicer` keeps every Watch stream open forever: after
`enter_graceful_shutdown` a watcher receives NOT_SERVING and then the stream stays open, so `server.stop(grace)`
always waits out the whole grace period while any load balancer or client watches. This servicer behaves the
same (Check, Watch, set) except that a Watch stream, once it has sent NOT_SERVING during shutdown, ends with OK.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# A grpc.health.v1 ServingStatus enum value (protobuf enums are ints).
ServingStatus = int


class HealthServicer(health_pb2_grpc.HealthServicer):
    """Serving status per service name ("" for the whole server); every service starts SERVING as in grpc's."""

    def __init__(self) -> None:
        self._status: dict[str, ServingStatus] = {"": health_pb2.HealthCheckResponse.SERVING}
        self._changed = asyncio.Condition()  # one for all services: changes are rare, watchers re-check theirs
        self._shutting_down = False

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        last = None
        async with self._changed:
            while True:
                status = self._status.get(request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
                if status != last:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                if self._shutting_down:
                    return  # NOT_SERVING has been sent: end the stream so that it does not hold the shutdown
                await self._changed.wait()

    async def set(self, service: str, status: ServingStatus) -> None:
        """Sets the status of `service`; ignored once shutdown has begun."""
        if not self._shutting_down:
            await self._set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        """Reports NOT_SERVING for every service from now on and ends the Watch streams."""
        if self._shutting_down:
            return
        async with self._changed:
            self._shutting_down = True
            for service in self._status:
                self._status[service] = health_pb2.HealthCheckResponse.NOT_SERVING
            self._changed.notify_all()

    async def _set(self, service: str, status: ServingStatus) -> None:
        async with self._changed:
            self._status[service] = status
            self._changed.notify_all()
