"""The one error shape of the API, used for every non-2xx answer (validation errors and 404s included):

    {"error": {"message": "num_beams: Input should be less than or equal to 8 (got 9)",
               "type": "invalid_request_error", "param": "num_beams"}}

`message` is a complete sentence for a person; `type` is stable, for programs; `param` names the field
when one is to blame. Never a traceback: unexpected failures are logged server-side and answered with a
generic 500.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.responses import JSONResponse

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
