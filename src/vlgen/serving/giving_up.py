"""Giving up on a request: a request that times out (504) or whose client disconnects (499) is answered at
once and its work is cancelled where it stands.

`run_while_connected(request, work, timeout)` is the one place that waits for inference on behalf of a
client: the caption route waits for its decodes and `MicroBatcher` futures through it, and the
`GenerationQueue` for its pipeline call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


_abandoned: set[asyncio.Future] = set()  # cancelled work finishing in the background (kept referenced)


async def _until_disconnected(request: Request) -> None:
    """Returns when the client has gone. Called once the body is read, when `receive()` yields nothing but
    `http.disconnect` (uvicorn sends it when the socket closes, or after the response)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_while_connected(request: Request, work: Any, timeout: float) -> Any:
    """Await `work` (a coroutine or future) for at most `timeout` s while the client stays connected.

    Raises `asyncio.TimeoutError` or `ClientGone`, having cancelled `work`: the caller answers at once and
    `work` unwinds in the background (a decode thread in progress finishes its image first).
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_until_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task in done:
        return task.result()
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_abandoned.discard)
    if gone in done:
        if not gone.cancelled():
            gone.exception()  # retrieved, so asyncio does not log it; either way the client is gone
        raise ClientGone
    raise asyncio.TimeoutError
