"""Admission of retrieval calls: refuses new ones once shutdown has begun and counts the ones admitted.

Graceful shutdown must not hand calls to grpc-core's own shutdown: calls that reached the server but were not
yet dispatched to a handler are cancelled by grpc-core (CANCELLED) when `server.stop()` begins. So the server
first keeps running while this gate answers every new call with UNAVAILABLE ("server is shutting down") and
the admitted ones finish through the batcher; `drained()` says when they have, and only then the port closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import ShuttingDown


class AdmissionGate:
    """Counts calls in progress; after `close()` refuses new ones with `ShuttingDown` (UNAVAILABLE)."""

    def __init__(self) -> None:
        self._active = 0
        self._closed = False
        self._idle: asyncio.Event | None = None  # created on the serving loop by `drained`

    @property
    def active(self) -> int:
        """Admitted calls not finished yet."""
        return self._active

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Holds one admitted call for the duration of the block.

        Raises:
            ShuttingDown: the gate is closed (the server is shutting down).
        """
        if self._closed:
            raise ShuttingDown("server is shutting down")
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0 and self._idle is not None:
                self._idle.set()

    def close(self) -> None:
        """Refuses every call from now on; those already admitted go on."""
        self._closed = True

    async def drained(self, timeout_s: float) -> bool:
        """Waits until no admitted call is in progress; False when `timeout_s` passed first."""
        if self._active == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), max(timeout_s, 0.0))
        except TimeoutError:
            return self._active == 0
        return True
