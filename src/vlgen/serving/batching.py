"""A micro-batcher: concurrent requests' items are run through the model together, in one worker thread.

    batcher = MicroBatcher(fn, max_batch_size=8, max_wait_ms=10, max_queue=64)
    await batcher.start()                      # inside the running event loop (app lifespan)
    with batcher.admit(len(images)):           # QueueFullError if it would exceed max_queue
        results = await batcher.submit(images, key=(num_beams, max_new_tokens))

`fn(payloads, key) -> results` runs in a dedicated single worker thread, never on the event loop, so
the server keeps accepting (and rejecting) requests while the model works. Only items with the same `key`
(the generation options) share a batch. A batch leaves when it is full or when its oldest item has waited
`max_wait_ms`; items that arrive while the model is busy wait for the next batch, so under load batches
fill up by themselves without any extra wait (the same idea as the "dynamic batching" of model servers).

Backpressure: `admit(n)` counts every item from admission (before its image is decoded) to its answer. The
count never exceeds `max_queue`; beyond it the caller gets `QueueFullError` with a Retry-After estimate,
so memory is bounded by `max_queue` decoded images plus one batch in the model - there is no backlog.
A caller that gives up (timeout, disconnect) cancels its futures; cancelled items are dropped before they
reach the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The batcher already holds `max_queue` items; try again after `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class BatchStats:
    """Counters since start-up; `histogram[size]` = how many batches had `size` items."""

    batches: int = 0
    items: int = 0
    max_size: int = 0
    histogram: Counter = field(default_factory=Counter)
    last_batch_s: float = 0.0
    ema_batch_s: float = 0.0  # smoothed model time per batch, for Retry-After

    def record(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.items += size
        self.max_size = max(self.max_size, size)
        self.histogram[size] += 1
        self.last_batch_s = seconds
        self.ema_batch_s = seconds if self.batches == 1 else 0.8 * self.ema_batch_s + 0.2 * seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "images": self.items,
            "mean_batch_size": round(self.items / self.batches, 3) if self.batches else 0.0,
            "max_batch_size_seen": self.max_size,
            "batch_size_histogram": {str(k): v for k, v in sorted(self.histogram.items())},
            "mean_batch_seconds": round(self.ema_batch_s, 4),
        }


@dataclass
class _Item:
    payload: Any
    key: Hashable
    future: asyncio.Future
    enqueued: float


class MicroBatcher:
    def __init__(
        self,
        fn: Callable[[list[Any], Hashable], Sequence[Any]],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        name: str = "batcher",
    ) -> None:
        if max_batch_size < 1 or max_queue < max_batch_size or max_wait_ms < 0:
            raise ValueError(f"bad batcher limits: {max_batch_size=} {max_queue=} {max_wait_ms=}")
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.name = name
        self.stats = BatchStats()
        self._pending: deque[_Item] = deque()
        self._admitted = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vlgen-{self.name}")
        self._task = asyncio.create_task(self._run(), name=f"vlgen-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- admission and submission --------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Items admitted and not yet answered (includes the batch in the model)."""
        return self._admitted

    def retry_after_s(self) -> int:
        batches_ahead = self._admitted / self.max_batch_size + 1
        return max(1, math.ceil(batches_ahead * (self.stats.ema_batch_s or 1.0)))

    @contextlib.contextmanager
    def admit(self, n: int) -> Iterator[None]:
        """Reserve `n` places for the duration of the block, or raise `QueueFullError` at once."""
        if self._admitted + n > self.max_queue:
            raise QueueFullError(
                f"the {self.name} queue is full ({self._admitted} of {self.max_queue} places taken, "
                f"this request needs {n}); retry later",
                self.retry_after_s(),
            )
        self._admitted += n
        try:
            yield
        finally:
            self._admitted -= n

    async def submit(self, payloads: Sequence[Any], key: Hashable) -> list[tuple[Any, int]]:
        """Results for `payloads` in order, each with the size of the batch it ran in."""
        if self._task is None or self._wakeup is None:
            raise RuntimeError(f"{self.name} is not started")
        loop = asyncio.get_running_loop()
        now = loop.time()
        items = [_Item(p, key, loop.create_future(), now) for p in payloads]
        self._pending.extend(items)
        self._wakeup.set()
        # If our caller is cancelled (timeout), gather cancels every future and _take() drops them.
        return list(await asyncio.gather(*(i.future for i in items)))

    # -- the loop --------------------------------------------------------------------------------------
    def _count(self, key: Hashable) -> int:
        return sum(1 for i in self._pending if i.key == key and not i.future.done())

    def _take(self, key: Hashable) -> list[_Item]:
        """Pop up to max_batch_size live items with `key`, keeping the others in arrival order."""
        batch: list[_Item] = []
        keep: deque[_Item] = deque()
        for item in self._pending:
            if item.future.done():  # cancelled by a caller that gave up
                continue
            if item.key == key and len(batch) < self.max_batch_size:
                batch.append(item)
            else:
                keep.append(item)
        self._pending = keep
        return batch

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            head = self._pending[0]
            if head.future.done():
                self._pending.popleft()
                continue
            # Wait for company until the oldest item has waited max_wait; items that queued up while the
            # model was busy are already past their deadline, so a loaded server never waits here.
            deadline = head.enqueued + self.max_wait_s
            while self._count(head.key) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take(head.key)
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.fn, [i.payload for i in batch], head.key)
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(batch)} inputs gave {len(results)} outputs")
            except asyncio.CancelledError:
                for item in batch:
                    item.future.cancel()
                raise
            except Exception as e:  # the model failed: every caller in the batch gets the error
                log.exception("%s: batch of %d failed", self.name, len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(e)
            else:
                for item, result in zip(batch, results, strict=True):
                    if not item.future.done():
                        item.future.set_result((result, len(batch)))
            self.stats.record(len(batch), time.perf_counter() - t0)
