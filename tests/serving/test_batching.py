"""MicroBatcher on its own: batches form, keys never mix, the queue is bounded, quitters are dropped."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from vlgen.serving.batching import MicroBatcher, QueueFullError


class FakeModel:
    """Records every batch; `delay` seconds per call; fails on a payload equal to `poison`."""

    def __init__(self, delay: float = 0.05, poison=None) -> None:
        self.delay = delay
        self.poison = poison
        self.batches: list[tuple[list, object]] = []
        self.threads: set[str] = set()

    def __call__(self, payloads: list, key) -> list:
        self.batches.append((list(payloads), key))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.poison in payloads:
            raise RuntimeError("model exploded")
        return [f"{key}:{p}" for p in payloads]


def run(coro):
    return asyncio.run(coro)


async def _with_batcher(model, fn, **kw):
    b = MicroBatcher(model, **{"max_batch_size": 4, "max_wait_ms": 20, "max_queue": 16, **kw})
    await b.start()
    try:
        return await fn(b)
    finally:
        await b.stop()


def test_concurrent_items_share_batches_and_keep_order() -> None:
    model = FakeModel()

    async def go(b):
        async def one(i):
            with b.admit(1):
                return await b.submit([i], key="k")

        return await asyncio.gather(*(one(i) for i in range(10)))

    results = run(_with_batcher(model, go))
    assert [r[0][0] for r in results] == [f"k:{i}" for i in range(10)]
    sizes = [len(p) for p, _ in model.batches]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) <= 4
    assert all(r[0][1] == len(next(p for p, _ in model.batches if i in p)) for i, r in enumerate(results))
    assert model.threads and not any(t == threading.main_thread().name for t in model.threads)


def test_batching_off_with_max_batch_size_1() -> None:
    model = FakeModel(delay=0.0)

    async def go(b):
        return await asyncio.gather(*(b.submit([i], key="k") for i in range(5)))

    run(_with_batcher(model, go, max_batch_size=1))
    assert [len(p) for p, _ in model.batches] == [1] * 5


def test_different_keys_never_share_a_batch() -> None:
    model = FakeModel()

    async def go(b):
        return await asyncio.gather(*(b.submit([i], key=i % 2) for i in range(8)))

    results = run(_with_batcher(model, go))
    assert [r[0][0] for r in results] == [f"{i % 2}:{i}" for i in range(8)]
    for payloads, key in model.batches:
        assert {p % 2 for p in payloads} == {key}


def test_full_queue_raises_with_retry_after_and_frees_places() -> None:
    async def go(b):
        with b.admit(10):
            with pytest.raises(QueueFullError) as e, b.admit(7):
                pass
            assert e.value.retry_after_s >= 1 and "queue is full" in str(e.value)
            with b.admit(6):  # exactly up to max_queue is fine
                assert b.queued == 16
        assert b.queued == 0

    run(_with_batcher(FakeModel(), go))


def test_a_caller_that_times_out_is_dropped_before_the_model() -> None:
    model = FakeModel(delay=0.3)

    async def go(b):
        first = asyncio.create_task(b.submit(["busy"], key="k"))  # occupies the model for 0.3 s
        await asyncio.sleep(0.05)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.submit(["quitter"], key="k"), 0.05)
        await first
        return await b.submit(["after"], key="k")

    assert run(_with_batcher(model, go))[0][0] == "k:after"
    assert all("quitter" not in p for p, _ in model.batches)


def test_a_failing_batch_fails_its_callers_and_the_batcher_goes_on() -> None:
    model = FakeModel(delay=0.0, poison="bad")

    async def go(b):
        with pytest.raises(RuntimeError, match="exploded"):
            await b.submit(["bad"], key="k")
        return await b.submit(["good"], key="k")

    assert run(_with_batcher(model, go))[0][0] == "k:good"


def test_stats_count_batches() -> None:
    model = FakeModel()

    async def go(b):
        await asyncio.gather(*(b.submit([i], key="k") for i in range(8)))
        return b.stats.as_dict()

    stats = run(_with_batcher(model, go))
    assert stats["images"] == 8 and stats["max_batch_size_seen"] == 4
    assert sum(int(k) * v for k, v in stats["batch_size_histogram"].items()) == 8
