"""MicroBatcher with a fake processing function: batching, overload, deadlines, cancellation, errors, drain."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from service.batcher import BatcherConfig, MicroBatcher
from service.errors import DeadlineExpired, NotReady, Overloaded
from service.observer import RecordingObserver


class Doubler:
    """Doubles every item; can be held at a gate to simulate a slow engine."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))  # in the order batches started (threads leave the gate in any order)
        self.gate.wait(10)
        if self.fail:
            raise RuntimeError("engine exploded")
        return [2 * i for i in items]


Scenario = Callable[[MicroBatcher[int, int], "Doubler", RecordingObserver], Awaitable[Any]]


def _run(scenario: Scenario, **config: Any) -> Any:
    async def main() -> Any:
        process, observer = Doubler(), RecordingObserver()
        settings = BatcherConfig(**{"max_concurrent_batches": 1, **config})
        with ThreadPoolExecutor(settings.max_concurrent_batches) as executor:
            batcher: MicroBatcher[int, int] = MicroBatcher(process, executor, settings, observer)
            batcher.start()
            try:
                return await scenario(batcher, process, observer)
            finally:
                process.gate.set()
                await batcher.stop()

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_concurrent_items_are_processed_in_batches_with_their_own_results() -> None:
    async def scenario(batcher: MicroBatcher[int, int], process: Doubler, observer: RecordingObserver) -> None:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(50)))
        assert results == [2 * i for i in range(50)]
        assert max(len(b) for b in process.batches) == 16  # closed at max_batch_size
        assert sorted(i for b in process.batches for i in b) == list(range(50))
        assert observer.batch_sizes == [len(b) for b in process.batches]

    _run(scenario, max_batch_size=16, max_delay_us=50_000)


def test_an_extra_concurrent_batch_starts_once_enough_requests_wait() -> None:
    async def scenario(batcher: MicroBatcher[int, int], process: Doubler, observer: RecordingObserver) -> None:
        process.gate.clear()
        calls = [asyncio.create_task(batcher.submit(0))]
        await asyncio.sleep(0.02)
        assert batcher.queue_depth == 0 and batcher.active_batches == 1  # the first worker took item 0
        calls.append(asyncio.create_task(batcher.submit(1)))
        await asyncio.sleep(0.02)
        assert batcher.queue_depth == 1  # one waiting request does not start a second batch
        calls.append(asyncio.create_task(batcher.submit(2)))
        await asyncio.sleep(0.02)
        assert batcher.queue_depth == 0 and batcher.active_batches == 2  # two do: the second worker took both
        calls += [asyncio.create_task(batcher.submit(i)) for i in range(3, 8)]
        await asyncio.sleep(0.02)
        assert batcher.queue_depth == 5  # no worker free: the queue grows into the next batch
        process.gate.set()
        assert await asyncio.gather(*calls) == [2 * i for i in range(8)]
        assert sorted(process.batches[:2]) == [[0], [1, 2]]
        assert process.batches[2:] == [[3, 4, 5, 6, 7]]
        assert batcher.active_batches == 0

    _run(scenario, max_batch_size=8, max_delay_us=0, max_concurrent_batches=2, min_extra_batch_size=2)


def test_an_idle_worker_starts_a_batch_at_once_with_whatever_is_queued() -> None:
    async def scenario(batcher: MicroBatcher[int, int], process: Doubler, observer: RecordingObserver) -> None:
        process.gate.clear()
        first = asyncio.create_task(batcher.submit(1))
        for _ in range(3):  # a few turns of the event loop, no timer: the idle worker took the lone request
            await asyncio.sleep(0)
        assert batcher.queue_depth == 0 and batcher.active_batches == 1
        queued = [asyncio.create_task(batcher.submit(i)) for i in range(2, 6)]
        await asyncio.sleep(0.01)
        assert batcher.queue_depth == 4  # the only worker is busy: requests wait and the next batch grows
        process.gate.set()
        assert [await first, *[await q for q in queued]] == [2, 4, 6, 8, 10]
        assert process.batches == [[1], [2, 3, 4, 5]]

    assert BatcherConfig().max_delay_us == 0  # adaptive batching is the default
    _run(scenario, max_batch_size=8, max_delay_us=BatcherConfig().max_delay_us)


def test_a_lone_item_waits_at_most_the_delay() -> None:
    async def scenario(batcher: MicroBatcher[int, int], process: Doubler, observer: RecordingObserver) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await batcher.submit(21) == 42
        assert 0.02 <= loop.time() - start < 1.0

    _run(scenario, max_batch_size=8, max_delay_us=20_000)


def test_full_queue_is_overloaded_and_batch_submission_is_all_or_nothing() -> None:
    async def scenario(batcher: MicroBatcher[int, int], process: Doubler, observer: RecordingObserver) -> None:
        process.gate.clear()
        first = asyncio.create_task(batcher.submit(0))
        while batcher.queue_depth:  # the loop took item 0 and is stuck at the gate
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        queued = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await batcher.submit(3)
        with pytest.raises(Overloaded):
            await batcher.submit_many([4])
        process.gate.set()
        assert await first == 0 and [await q for q in queued] == [2, 4]
        with pytest.raises(Overloaded):
            await batcher.submit_many([5, 6, 7])  # more than the queue holds: none queued
        assert observer.counters["rejected"] == 3

    _run(scenario, max_batch_size=1, max_delay_us=0, queue_size=2)


def test_expired_and_cancelled_items_are_dropped_before_compute() -> None:
    async def scenario(batcher: MicroBatcher[int, int], process: Doubler, observer: RecordingObserver) -> None:
        process.gate.clear()
        blocker = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.02)
        expired = asyncio.create_task(batcher.submit(1, timeout_s=0.01))
        cancelled = asyncio.create_task(batcher.submit(2))
        alive = asyncio.create_task(batcher.submit(3, timeout_s=30))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        process.gate.set()
        assert await blocker == 0 and await alive == 6
        with pytest.raises(DeadlineExpired):
            await expired
        assert sorted(i for b in process.batches for i in b) == [0, 3]
        assert observer.counters["dropped:deadline"] == 1 and observer.counters["dropped:cancelled"] == 1

    _run(scenario, max_batch_size=8, max_delay_us=0)


def test_a_failing_batch_fails_its_items_and_the_batcher_keeps_serving() -> None:
    async def scenario(batcher: MicroBatcher[int, int], process: Doubler, observer: RecordingObserver) -> None:
        process.fail = True
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit(1)
        process.fail = False
        assert await batcher.submit(2) == 4

    _run(scenario)


def test_stop_drains_the_queue_then_refuses() -> None:
    async def scenario(batcher: MicroBatcher[int, int], process: Doubler, observer: RecordingObserver) -> None:
        pending = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
        await asyncio.sleep(0)
        await batcher.stop()
        assert [p.result() for p in pending] == [0, 2, 4, 6, 8]
        with pytest.raises(NotReady):
            await batcher.submit(9)

    _run(scenario, max_delay_us=1000)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        BatcherConfig(max_batch_size=0)
