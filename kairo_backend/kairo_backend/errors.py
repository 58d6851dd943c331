"""Domain errors of the backend, and the one place that turns them into HTTP.

KairoError            base; `code` is the stable machine code, `status` the HTTP status
├── InvalidRequest    400 malformed request (bad JSON, bad multipart)
├── Unauthorized      401 missing or unknown API key
├── Forbidden         403 a signed link expired or was tampered with
├── NotFound          404 unknown ID, or another workspace's ID
├── Conflict          409 the state forbids it (promote an unfinished version, ...)
├── PayloadTooLarge   413 an upload over the size limit
├── ValidationFailed  422 a field's value is wrong; the message names the field
├── RateLimited       429 too many queued runs; carries Retry-After
└── Unavailable       503 the backend cannot serve it right now
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("kairo_backend")


class KairoError(Exception):
    code = "internal"
    status = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidRequest(KairoError):
    code, status = "invalid_request", 400


class Unauthorized(KairoError):
    code, status = "unauthorized", 401


class Forbidden(KairoError):
    code, status = "forbidden", 403


class NotFound(KairoError):
    code, status = "not_found", 404


class Conflict(KairoError):
    code, status = "conflict", 409


class PayloadTooLarge(KairoError):
    code, status = "payload_too_large", 413


class ValidationFailed(KairoError):
    code, status = "validation_error", 422


class RateLimited(KairoError):
    code, status = "rate_limited", 429


class Unavailable(KairoError):
    code, status = "unavailable", 503


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "invalid_request",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


INTERNAL_MESSAGE = "internal server error; see the backend's log"


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _loc(loc: tuple[object, ...] | list[object]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts) or "body"


def install_handlers(app: FastAPI) -> None:
    async def kairo_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, KairoError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        for e in errors:
            if e.get("type") == "json_invalid":
                ctx = e.get("ctx") or {}
                return error_response(400, "invalid_request",
                                      f"malformed JSON body: {ctx.get('error', 'invalid JSON')}")
        parts = []
        for e in errors[:5]:
            field = _loc(e.get("loc", ()))
            if e.get("type") == "missing":
                parts.append(f"{field}: field required")
            else:
                parts.append(f"{field}: {e.get('msg', 'invalid value')}")
        return error_response(422, "validation_error", "; ".join(parts) or "invalid request")

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code,
                               "internal" if exc.status_code >= 500 else "invalid_request")
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, code, detail, dict(exc.headers or {}))

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal", INTERNAL_MESSAGE)

    app.add_exception_handler(KairoError, kairo_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
