"""How `vlgen serve` runs uvicorn: `uvicorn_options(settings)`, including a read timeout for request heads.

uvicorn (0.54, h11) has no timeout for a request head in progress: its keep-alive timer only covers an idle
connection and is cancelled by the first byte, so a client that sends half a request line and stalls holds
its connection (and a file descriptor) for as long as it likes. `HeadTimeoutH11Protocol` is uvicorn's own
h11 protocol plus one timer: the head must be complete within `--header-timeout-s` of the connection opening
(or of the last response on a kept-alive connection), else the client gets a 408 (or, if it sent nothing at
all, a plain close, as for an idle keep-alive connection) and the connection is closed. The body's timeout
is in `GuardMiddleware`, where the app's own reads can be timed.

It subclasses uvicorn's `H11Protocol` and relies on four of its members (`conn`, the h11 connection;
`transport`; the `connection_made` / `data_received` / `on_response_complete` / `connection_lost` hooks);
tests/serving/test_stalled_clients.py drives it with raw sockets and fails if uvicorn changes them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from vlgen.serving.settings import ServeSettings


class HeadTimeoutH11Protocol(H11Protocol):
    header_timeout_s: float = 10.0  # set per server by `head_timeout_protocol`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()  # a kept-alive connection now waits for its next head

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    # -- the timer -------------------------------------------------------------------------------------------
    def _watch_head(self) -> None:
        """Run the timer exactly while a head is awaited (h11: the client's side is IDLE)."""
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._head_timer is None:
            self._head_timer = asyncio.get_running_loop().call_later(self.header_timeout_s, self._head_timed_out)
        elif not waiting:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        pending, _ = self.conn.trailing_data  # bytes of an incomplete head that h11 is holding
        if pending:
            message = (
                f"the request head did not arrive within {self.header_timeout_s:g} s (--header-timeout-s); "
                "the connection is closed"
            )
            body = json.dumps({"error": {"message": message, "type": "request_timeout"}}).encode()
            head = (
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            # Written raw: h11 cannot send a response before it has parsed a request, and we close anyway.
            self.transport.write(head.encode("latin-1") + body)
        self.transport.close()


def head_timeout_protocol(header_timeout_s: float) -> type[HeadTimeoutH11Protocol]:
    """uvicorn builds one protocol object per connection from a class: bind this server's timeout into one."""
    return type("VlgenH11Protocol", (HeadTimeoutH11Protocol,), {"header_timeout_s": header_timeout_s})


def uvicorn_options(settings: ServeSettings, log_level: str = "info") -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run(app, **...)` / `uvicorn.Config(app, **...)` (the CLI and tests)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        "timeout_graceful_shutdown": 5,
        "http": head_timeout_protocol(settings.header_timeout_s),
        # an idle kept-alive connection goes after uvicorn's 5 s, or the head timeout if that is shorter
        "timeout_keep_alive": min(5.0, settings.header_timeout_s),
    }
