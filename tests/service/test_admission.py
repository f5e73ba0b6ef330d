"""AdmissionGate: counts admitted calls, refuses new ones once closed, reports when drained."""

from __future__ import annotations

import asyncio

import pytest

from service.admission import AdmissionGate
from service.errors import NotReady


def test_admitted_calls_are_counted_and_new_ones_refused_after_close() -> None:
    gate = AdmissionGate()
    with gate.admit():
        assert gate.active == 1
        gate.close()
        with pytest.raises(NotReady, match="shutting down"), gate.admit():
            pass
        assert gate.active == 1  # the call admitted before the close goes on
    assert gate.active == 0 and gate.closed


def test_drained_waits_for_admitted_calls_and_times_out() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        gate = AdmissionGate()
        release = asyncio.Event()

        async def call() -> None:
            with gate.admit():
                await release.wait()

        task = asyncio.create_task(call())
        await asyncio.sleep(0)
        gate.close()
        timed_out = await gate.drained(0.01)
        asyncio.get_running_loop().call_later(0.01, release.set)
        drained = await gate.drained(5.0)
        await task
        return timed_out, drained, await AdmissionGate().drained(0.0)

    assert asyncio.run(scenario()) == (False, True, True)
