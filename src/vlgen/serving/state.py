"""`ServerState`: what the routers of one app share - its settings, its models and the queues in front of them."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from vlgen.memory import release_memory
from vlgen.serving.batching import MicroBatcher
from vlgen.serving.generation import GenerationQueue, TextToImage
from vlgen.serving.settings import ServeSettings

log = logging.getLogger("vlgen.serving")

# Hand freed heap back to the OS after this many decoded pixels (600 MB of full-size RGB): a full
# gc.collect() costs ~0.1 s with a model loaded, so it runs in the background and coalesced, not per request.
RELEASE_EVERY_PIXELS = 200_000_000


class MemoryReleaser:
    """Runs `release_memory()` in a thread once `every_pixels` pixels were decoded, one at a time."""

    def __init__(self, every_pixels: int = RELEASE_EVERY_PIXELS) -> None:
        self.every_pixels = every_pixels
        self.pending = 0
        self.running: asyncio.Future | None = None
        self.runs = 0

    def decoded(self, pixels: int) -> None:
        self.pending += pixels
        if self.pending < self.every_pixels or self.running is not None:
            return
        self.pending = 0
        self.runs += 1
        self.running = asyncio.get_running_loop().run_in_executor(None, release_memory)
        self.running.add_done_callback(self._done)

    def _done(self, future: asyncio.Future) -> None:
        self.running = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("release_memory failed: %s", future.exception())


@dataclass
class ServerState:
    settings: ServeSettings
    captioner: Any
    t2i: TextToImage | None  # None: /v1/generate answers 501
    batcher: MicroBatcher  # caption requests' images, batched across requests
    generation: GenerationQueue  # text-to-image requests, one at a time
    releaser: MemoryReleaser = field(default_factory=MemoryReleaser)
    abandoned_captions: int = 0  # caption requests that timed out or whose client left
    started: float = field(default_factory=time.time)

    @property
    def auth_codes(self) -> tuple[int, ...]:
        """401 in the spec of every /v1 route when the server has a key."""
        return (401,) if self.settings.api_key else ()
