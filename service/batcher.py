"""An asyncio adaptive batcher: concurrent requests are queued and processed together, one call per batch.

Adaptive, like Triton's dynamic batcher: when a worker is free, a batch starts at once with whatever is queued
(up to `max_batch_size`). Requests wait only while every worker is busy; up to `max_concurrent_batches` batches
are processed at once and the next one is collected only when one of them finishes, so under load requests
gather in the queue and batches grow with the load, while an idle server answers a lone request without
waiting. `max_delay_us` (default 0) only bounds how long a forming batch may wait for more requests, for
callers that prefer fuller batches to lower latency. Requests whose deadline passed or whose caller went away
are dropped before compute. The processing function runs in an executor (it blocks: TensorFlow and FAISS), so
the event loop keeps accepting requests meanwhile; the executor needs at least `max_concurrent_batches` threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from service import tracing
from service.errors import DeadlineExpired, Overloaded, ShuttingDown
from service.observer import NullObserver, ServingObserver

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BatcherConfig:
    """Batching limits.

    Attributes:
        max_batch_size: most requests per batch.
        max_delay_us: longest wait, from the first request's arrival, for a forming batch to fill; 0 (the default)
            starts each batch with whatever is queued as soon as a worker is free.
        queue_size: most requests waiting; beyond it `submit` raises `Overloaded`.
        max_concurrent_batches: batches processed at the same time (each by its own executor thread). Two
            single-threaded searches keep both CPU cores busy without the OpenMP barrier stalls that one
            multi-threaded search suffers whenever the event loop takes a core; on a GPU they overlap the
            tower, the copies and the search.
        min_extra_batch_size: a batch beyond the first running one starts only once this many requests wait,
            so cheap models keep forming batches on one worker instead of splitting the load into tiny ones.
    """

    max_batch_size: int = 64
    max_delay_us: int = 0
    queue_size: int = 1024
    max_concurrent_batches: int = 2
    min_extra_batch_size: int = 16

    def __post_init__(self) -> None:
        if (
            self.max_batch_size < 1
            or self.queue_size < 1
            or self.max_delay_us < 0
            or self.max_concurrent_batches < 1
            or self.min_extra_batch_size < 1
        ):
            raise ValueError(
                "BatcherConfig needs max_batch_size >= 1, queue_size >= 1, max_delay_us >= 0, "
                f"max_concurrent_batches >= 1 and min_extra_batch_size >= 1; got {self}"
            )


@dataclass
class _Job(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    deadline: float | None  # time.monotonic()
    enqueued: float  # time.monotonic()
    trace: object = None  # the caller's OpenTelemetry context while tracing is on (service/tracing.py)

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


class MicroBatcher(Generic[T, R]):
    """Queues items and hands them to `process` in batches.

    Args:
        process: blocking function mapping a batch of items to one result per item, in order.
        executor: where `process` runs.
        config: batching limits.
        observer: receives queue depth, rejections, drops, batch sizes and queue time.
    """

    def __init__(
        self,
        process: Callable[[list[T]], Sequence[R]],
        executor: Executor,
        config: BatcherConfig,
        observer: ServingObserver | None = None,
    ) -> None:
        self._process = process
        self._executor = executor
        self._config = config
        self._observer = observer or NullObserver()
        self._queue: asyncio.Queue[_Job[T, R]] = asyncio.Queue(maxsize=config.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._active = 0  # batches being processed
        self._wake = asyncio.Event()  # a batch finished, or enough requests wait for an extra batch
        self._closed = False

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def active_batches(self) -> int:
        """Batches being processed now (read by the processing function to share the CPU cores)."""
        return self._active

    def check_room(self, count: int = 1) -> None:
        """Raises `Overloaded` when the queue lacks room for `count` items: lets callers refuse before doing work."""
        if count > self._config.queue_size - self._queue.qsize():
            self._observer.on_rejected()
            raise Overloaded(f"request queue full ({self._queue.qsize()} of {self._config.queue_size} waiting)")

    def start(self) -> None:
        """Starts the batching loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Refuses new items, finishes the queued ones, then stops the loop."""
        self._closed = True
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        await asyncio.gather(self._task, *self._running, return_exceptions=True)
        self._task = None

    async def submit(self, item: T, *, timeout_s: float | None = None) -> R:
        """Queues one item and waits for its result.

        Args:
            item: what to process.
            timeout_s: seconds from now after which the item is dropped unprocessed; None: no deadline.

        Raises:
            Overloaded: the queue is full. ShuttingDown: the batcher is stopping. DeadlineExpired: the deadline
                passed before the item was processed. Whatever `process` raised.
        """
        (job,) = self._enqueue([item], timeout_s)
        try:
            return await job.future
        finally:
            job.future.cancel()  # the caller went away: the batch drops it before compute

    async def submit_many(self, items: Sequence[T], *, timeout_s: float | None = None) -> list[R]:
        """Queues all items, or none when the queue lacks room for all of them, and waits for their results."""
        jobs = self._enqueue(items, timeout_s)
        try:
            return list(await asyncio.gather(*(job.future for job in jobs)))
        finally:
            for job in jobs:
                job.future.cancel()

    def _enqueue(self, items: Sequence[T], timeout_s: float | None) -> list[_Job[T, R]]:
        if self._closed or self._task is None:
            raise ShuttingDown("the server is not accepting requests (batcher stopped)")
        self.check_room(len(items))
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        deadline = None if timeout_s is None else now + timeout_s
        trace = tracing.current_context()
        jobs = [_Job(item, loop.create_future(), deadline, now, trace) for item in items]
        for job in jobs:
            self._queue.put_nowait(job)
        depth = self._queue.qsize()
        self._observer.on_queue_depth(depth)
        if depth >= self._config.min_extra_batch_size:
            self._wake.set()
        return jobs

    async def _run(self) -> None:
        while True:
            # Collect the next batch only when a worker is free (batches grow with the load), and an extra one
            # beside a running batch only once enough requests wait.
            while self._active >= self._config.max_concurrent_batches or (
                self._active and self._queue.qsize() < self._config.min_extra_batch_size
            ):
                self._wake.clear()
                await self._wake.wait()
            batch = await self._collect()
            self._observer.on_queue_depth(self._queue.qsize())
            self._active += 1
            task = asyncio.get_running_loop().create_task(self._process_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            # Waiting for the next batch must not keep this one's jobs alive: their items hold the engine they
            # were validated against, which would pin a replaced model version in memory.
            del batch, task

    async def _process_batch(self, batch: list[_Job[T, R]]) -> None:
        try:
            await self._run_batch(batch)
        except Exception:  # keep serving: the batch's futures already hold the error
            logger.exception("batch failed size=%d", len(batch))
        finally:
            for _ in range(len(batch)):
                self._queue.task_done()
            self._active -= 1
            self._wake.set()

    async def _collect(self) -> list[_Job[T, R]]:
        """A worker is free: the first queued request (waiting for one if none is), everything queued behind it,
        and, only with a positive `max_delay_us`, what arrives before that delay runs out."""
        first = await self._queue.get()
        batch = [first]
        size, queue = self._config.max_batch_size, self._queue
        while len(batch) < size and not queue.empty():
            batch.append(queue.get_nowait())
        if self._config.max_delay_us <= 0:
            return batch
        close_at = first.enqueued + self._config.max_delay_us / 1e6
        while len(batch) < size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = close_at - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run_batch(self, batch: list[_Job[T, R]]) -> None:
        now = time.monotonic()
        live = [job for job in batch if not self._dropped(job, now)]
        for job in live:
            self._observer.on_stage("queue", now - job.enqueued)
            if job.trace is not None:
                tracing.queue_span(job.trace, now - job.enqueued)
        if not live:
            return
        try:
            kept, results = await asyncio.get_running_loop().run_in_executor(self._executor, self._compute, live)
        except Exception as error:
            for job in live:
                if not job.future.done():
                    job.future.set_exception(error)
            raise
        kept_ids = {id(job) for job in kept}
        for job in live:
            if id(job) not in kept_ids:
                self._dropped(job, time.monotonic(), late=True)
        for job, result in zip(kept, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    def _compute(self, jobs: list[_Job[T, R]]) -> tuple[list[_Job[T, R]], Sequence[R]]:
        """In the executor: drops what expired or was cancelled while waiting for it, then processes the rest."""
        now = time.monotonic()
        kept = [job for job in jobs if not job.future.done() and not job.expired(now)]
        if not kept:
            return kept, []
        self._observer.on_batch(len(kept))
        if tracing.active():
            with tracing.batch_span([job.trace for job in kept]):
                results = self._process([job.item for job in kept])
        else:
            results = self._process([job.item for job in kept])
        if len(results) != len(kept):
            raise RuntimeError(f"batch of {len(kept)} items produced {len(results)} results")
        return kept, results

    def _dropped(self, job: _Job[T, R], now: float, *, late: bool = False) -> bool:
        """Fails an expired job and counts an expired or cancelled one; `late`: known to be dropped already."""
        if job.future.done():
            self._observer.on_dropped("cancelled")
            return True
        if late or job.expired(now):
            job.future.set_exception(DeadlineExpired("deadline passed while the request was queued"))
            self._observer.on_dropped("deadline")
            return True
        return False
