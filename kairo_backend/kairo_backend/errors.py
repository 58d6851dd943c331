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
├── Unavailable       503 the backend cannot serve it right now (a busy database:
│                         Retry-After)
├── NoActiveVersion   409 a robot has no version to serve: no deployment pins one and the
│                         model has none active (code no_active_version)
├── ArtifactCorrupted 409 a version's stored model file is empty or does not match its
│                         recorded sha256 (code artifact_corrupted)
└── InsufficientStorage 507 the data dir's disk is full (code insufficient_storage)

OSError ENOSPC/EDQUOT and SQLite's "disk is full" become InsufficientStorage,
SQLite's "database is locked" becomes Unavailable, wherever they arise in a request.
Any other exception is unexpected: kairo_backend.gate logs it once (with its
traceback) and answers 500 `internal`, keeping the connection.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kairo_backend.store import engine

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


class NoActiveVersion(KairoError):
    code, status = "no_active_version", 409


class ArtifactCorrupted(KairoError):
    code, status = "artifact_corrupted", 409


class InsufficientStorage(KairoError):
    code, status = "insufficient_storage", 507


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# SQLite result codes (sqlite3 names them only from Python 3.11 on)
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL = 5, 6, 13
# How long a client should wait before retrying when the database is busy.
BUSY_RETRY_AFTER_S = 1


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL
    return (isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
        or "disk is full" in str(exc))) or engine.disk_full_error(exc)


def is_database_busy(exc: BaseException) -> bool:
    return (isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) in (_SQLITE_BUSY, _SQLITE_LOCKED)
        or "database is locked" in str(exc))) or engine.busy_error(exc)


def storage_error(exc: BaseException) -> KairoError | None:
    """The error to answer for a disk-full or busy-database failure, else None."""
    if is_disk_full(exc):
        return InsufficientStorage("the disk of the backend's data dir is full; free space "
                                   "(delete models or datasets) and retry")
    if is_database_busy(exc):
        return Unavailable("the database is busy (another writer holds its lock); retry "
                           "shortly", headers={"Retry-After": str(BUSY_RETRY_AFTER_S)})
    return None


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
    507: "insufficient_storage",
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


def _validation_message(e: Any) -> str:
    """Pydantic's message for one error, in the API's words where pydantic's mislead."""
    kind, value, ctx = e.get("type"), e.get("input"), e.get("ctx") or {}
    if kind == "missing":
        return "field required"
    if kind == "too_long" and isinstance(value, str):  # pydantic counts "items" past a validator
        return f"at most {ctx.get('max_length')} characters, not {len(value)}"
    if kind in ("model_attributes_type", "dict_type") and tuple(e.get("loc", ())) == ("body",):
        return "send a JSON object, with the header 'Content-Type: application/json'"
    message = str(e.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


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
        parts = [f"{_loc(e.get('loc', ()))}: {_validation_message(e)}" for e in errors[:5]]
        return error_response(422, "validation_error", "; ".join(parts) or "invalid request")

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code,
                               "internal" if exc.status_code >= 500 else "invalid_request")
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, code, detail, dict(exc.headers or {}))

    async def storage(request: Request, exc: Exception) -> JSONResponse:
        mapped = storage_error(exc)
        if mapped is None:
            raise exc  # unexpected: kairo_backend.gate logs it once and answers 500
        log.warning("%s %s: %s (%s)", request.method, request.url.path, mapped.code, exc)
        return await kairo_error(request, mapped)

    app.add_exception_handler(KairoError, kairo_error)
    app.add_exception_handler(OSError, storage)
    app.add_exception_handler(sqlite3.Error, storage)
    for error_type in engine.database_error_types():  # PostgreSQL's, when installed
        app.add_exception_handler(error_type, storage)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    # any other exception: kairo_backend.gate (inside Starlette's ServerErrorMiddleware,
    # which would log it a second time and drop the connection)
