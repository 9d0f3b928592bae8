"""The one error shape of the API, used for every non-2xx answer (validation errors and 404s included):

    {"error": {"message": "num_beams: Input should be less than or equal to 8 (got 9)",
               "type": "invalid_request_error", "param": "num_beams"}}

`message` is a complete sentence for a person; `type` is stable, for programs; `param` names the field
when one is to blame. Never a traceback: unexpected failures are logged server-side and answered with a
generic 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("vlgen.serving")

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request_error",
    499: "client_closed_request",
    500: "internal_error",
    501: "not_enabled",
    503: "overloaded",
    504: "timeout",
}


class APIError(Exception):
    """Raise from a handler (or middleware) to answer with the error shape."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type or ERROR_TYPES.get(status_code, "error")
        self.param = param
        self.headers = headers


def error_response(
    status_code: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "type": type or ERROR_TYPES.get(status_code, "error")}
    if param is not None:
        body["param"] = param
    return JSONResponse({"error": body}, status_code=status_code, headers=headers)


def api_error_response(e: APIError) -> JSONResponse:
    return error_response(e.status_code, e.message, type=e.type, param=e.param, headers=e.headers)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """'field: problem (got value)' for each error, and the first field's name."""
    parts, first = [], None
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "header", "path")]
        field = ".".join(loc) or None
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            parts.append(f"the body is not valid JSON ({ctx.get('error', 'decode error')} at position {loc[0]})")
            first = first or "body"
            continue
        msg = err.get("msg", "invalid")
        got = err.get("input")
        shown = f" (got {got!r})" if isinstance(got, (int, float, str)) and len(repr(got)) <= 60 else ""
        parts.append(f"{field}: {msg}{shown}" if field else f"{msg}{shown}")
        first = first or field
    return "; ".join(parts) or "invalid request", first


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the one shape: ours (`APIError`), FastAPI's and Starlette's, and the unexpected."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return api_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.url.path} does not accept {request.method}"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc)
        return error_response(422, message, param=param)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error (logged on the server)")


# -- OpenAPI documentation of the shape ----------------------------------------------------------------------
class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Body that cannot be parsed (broken multipart data).",
    401: "Missing or wrong API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`).",
    408: "The request body stalled for --body-timeout-s (the connection is then closed).",
    413: "Request body over --max-body-mb, or images over --max-request-pixels in all.",
    415: "Wrong Content-Type for this endpoint.",
    422: "Invalid field, option, JSON or image.",
    500: "Unexpected server failure (details in the server log).",
    501: "Text-to-image is not enabled on this server (start it with --t2i-base).",
    503: "Queue full; retry after `Retry-After` seconds.",
    504: "The request took longer than the server's timeout.",
}


def error_docs(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for FastAPI routes, so the spec lists every error a route can answer."""
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}
