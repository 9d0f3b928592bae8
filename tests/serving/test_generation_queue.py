"""GenerationQueue on its own: one call at a time, bounded admission with Retry-After, and a request that gives up
(timeout or client gone) stops its work - queued work never starts, running work sees should_stop()."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from vlgen.serving.batching import QueueFullError
from vlgen.serving.generation import GenerationQueue
from vlgen.serving.giving_up import ClientGone


class Connected:
    """A request whose client never leaves (`receive()` waits forever)."""

    async def receive(self) -> dict:
        await asyncio.Event().wait()
        return {}


class LeavesAfter(Connected):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def receive(self) -> dict:
        await asyncio.sleep(self.seconds)
        return {"type": "http.disconnect"}


def busy(seconds: float, started: list, stopped: list):
    """Work that polls should_stop() like the pipeline's block hooks, for at most `seconds`."""

    def work(should_stop) -> str:
        started.append(threading.current_thread().name)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if should_stop():
                stopped.append(True)
                return "stopped"
            time.sleep(0.005)
        return "done"

    return work


def test_one_at_a_time_and_counted() -> None:
    async def main():
        q = GenerationQueue(max_queue=4)
        started: list = []
        try:
            results = await asyncio.gather(*(q.run(busy(0.05, started, []), Connected(), 10) for _ in range(3)))
        finally:
            q.shutdown()
        return q, results, started

    q, results, started = asyncio.run(main())
    assert results == ["done"] * 3
    assert len(set(started)) == 1 and started[0].startswith("vlgen-generate")  # one worker thread
    assert q.stats() == {"admitted": 0, "completed": 3, "cancelled": 0}
    assert q.ema_s > 0


def test_full_queue_refuses_at_once_with_retry_after() -> None:
    async def main():
        q = GenerationQueue(max_queue=2)
        try:
            running = [asyncio.create_task(q.run(busy(0.3, [], []), Connected(), 10)) for _ in range(2)]
            await asyncio.sleep(0.05)
            with pytest.raises(QueueFullError, match="2 generation requests are already admitted") as e:
                await q.run(busy(0.01, [], []), Connected(), 10)
            await asyncio.gather(*running)
        finally:
            q.shutdown()
        return e.value.retry_after_s

    assert asyncio.run(main()) == 20  # no timing yet: 10 s per admitted request


def test_timeout_stops_running_work_and_queued_work_never_starts() -> None:
    async def main():
        q = GenerationQueue(max_queue=4)
        started: list = []
        stopped: list = []
        try:
            first = asyncio.create_task(q.run(busy(5, started, stopped), Connected(), 0.1))
            await asyncio.sleep(0.02)
            with pytest.raises(asyncio.TimeoutError):
                await q.run(busy(5, started, stopped), Connected(), 0.05)  # queued behind `first`
            with pytest.raises(asyncio.TimeoutError):
                await first
            await asyncio.sleep(0.1)  # the worker notices should_stop() within a poll
        finally:
            q.shutdown()
        return q, started, stopped

    q, started, stopped = asyncio.run(main())
    assert len(started) == 1 and stopped == [True]
    assert q.stats() == {"admitted": 0, "completed": 0, "cancelled": 2}


def test_client_gone_stops_the_work() -> None:
    async def main():
        q = GenerationQueue(max_queue=1)
        stopped: list = []
        try:
            with pytest.raises(ClientGone):
                await q.run(busy(5, [], stopped), LeavesAfter(0.05), 10)
            await asyncio.sleep(0.1)
        finally:
            q.shutdown()
        return q, stopped

    q, stopped = asyncio.run(main())
    assert stopped == [True] and q.cancelled == 1 and q.admitted == 0
