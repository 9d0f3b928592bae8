"""Checks that must happen before a byte of the body is read: API key, Content-Type, body size; and the
body's read timeout.

A plain ASGI middleware rather than FastAPI dependencies, because FastAPI reads and parses the body
(a whole multipart upload, or JSON) before any dependency runs: an unauthenticated client could make us
spool 20 MB, and a bad-JSON request would get a 422 instead of its 401.

Body timeout: each read of the body may wait at most `body_timeout_s` for the client (a client that stalls
mid-body gets a 408 and its connection is closed). It times the app's own reads, so a server busy elsewhere
never blames the client. Once the body is complete, reads are not timed: the handlers then wait on
`receive()` for `http.disconnect`, to drop the work of a client that left.
"""

from __future__ import annotations

import asyncio
import hmac

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlgen.serving.responses import error_response

PUBLIC_PATHS = frozenset({"/", "/health", "/openapi.json"})
# POST path -> (accepted media type, how to send it)
BODY_TYPES = {
    "/v1/caption": ("multipart/form-data", "a multipart/form-data upload (fields `file` or `files`)"),
    "/v1/generate": ("application/json", "a JSON body (Content-Type: application/json)"),
}


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without (or lying about) Content-Length grows past the limit.

    An HTTPException so FastAPI's body reader re-raises it as it is (it turns other errors into 400).
    """


class BodyTimeout(HTTPException):
    """Raised from `receive` when the client sent no body bytes for `body_timeout_s` (answered 408 + close)."""


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def key_matches(presented: str | None, api_key: str) -> bool:
    if presented is None:
        return False
    # Constant-time on bytes (compare_digest refuses non-ASCII str, and a header may hold anything).
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), api_key.encode("utf-8"))


class GuardMiddleware:
    def __init__(
        self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int, body_timeout_s: float | None = None
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.api_key is not None and path not in PUBLIC_PATHS and not self._authorised(scope):
            response = error_response(
                401,
                "missing or wrong API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        if scope["method"] == "POST" and path in BODY_TYPES:
            expected, how = BODY_TYPES[path]
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if content_type != expected:
                got = content_type or "no Content-Type"
                response = error_response(415, f"POST {path} takes {how}, got {got}", param="Content-Type")
                await response(scope, receive, send)
                return
        limit = self.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = error_response(413, _too_large(limit, f"Content-Length is {int(declared):,} bytes"))
            await response(scope, receive, send)
            return

        seen = 0
        body_done = False

        async def counting_receive() -> Message:
            nonlocal seen, body_done
            if body_done or self.body_timeout_s is None:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except asyncio.TimeoutError:
                raise BodyTimeout(
                    408,
                    f"the request body stalled: nothing arrived for {self.body_timeout_s:g} s (--body-timeout-s)",
                    headers={"Connection": "close"},  # the rest of the body will not be read
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(413, _too_large(limit, f"the body passed {limit:,} bytes"))
                body_done = not message.get("more_body", False)
            else:
                body_done = True  # http.disconnect
            return message

        await self.app(scope, counting_receive, send)

    def _authorised(self, scope: Scope) -> bool:
        assert self.api_key is not None
        auth = _header(scope, b"authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and key_matches(token.strip(), self.api_key):
                return True
        return key_matches(_header(scope, b"x-api-key"), self.api_key)


def _too_large(limit: int, what: str) -> str:
    return f"request body too large: {what}; this server accepts at most {limit:,} bytes (--max-body-mb)"
