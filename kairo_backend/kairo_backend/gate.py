"""What every request meets first: the key check and the body limit, both before a
byte of the body is read; and the last resort for an unexpected error.

A pure ASGI middleware, so a rejected request costs a header parse: an
unauthenticated or oversized POST is answered at once (and its connection
closed when a large body would follow), instead of being read, buffered and
parsed first.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kairo_backend.deps import WORKSPACE_STATE, Context, authenticate
from kairo_backend.errors import INTERNAL_MESSAGE, KairoError, PayloadTooLarge, error_response, storage_error

log = logging.getLogger("kairo_backend")

JSON_BODY_LIMIT = 1 << 20  # bytes; every JSON route's requests are a few hundred
UPLOAD_PATH = "/v1/datasets"
# An answer sent before a body this large (or a chunked one) was read closes the
# connection: uvicorn would otherwise read and discard the rest of it.
CLOSE_UNREAD_ABOVE = 64 * 1024


def body_limit(upload_mb: float, method: str, path: str) -> tuple[int, str]:
    """The most body bytes the route takes, and how the limit reads in a 413: the
    dataset upload's configured limit, else JSON_BODY_LIMIT."""
    if method == "POST" and path.rstrip("/") == UPLOAD_PATH:
        return int(upload_mb * 1e6), f"{upload_mb:g} MB (kairo-backend serve --max-upload-mb)"
    return JSON_BODY_LIMIT, f"{JSON_BODY_LIMIT} bytes"


def too_large(limit_text: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body over the limit of {limit_text} for this route")


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


class RequestGate:
    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._guarded(scope, receive, tracked_send)
        except Exception as exc:
            where = f"{scope.get('method')} {scope.get('path')}"
            mapped = storage_error(exc)  # a full disk or a busy database (the key lookup)
            if mapped is not None:
                log.warning("%s: %s (%s)", where, mapped.code, exc)
            else:
                # the one log record of an unexpected error; the connection stays usable
                log.exception("%s: unexpected error", where)
            if not started:
                status, code, message, headers = (
                    (mapped.status, mapped.code, mapped.message, mapped.headers) if mapped
                    else (500, "internal", INTERNAL_MESSAGE, None))
                await error_response(status, code, message, headers)(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        declared = _declared_length(headers)
        unread_body = (declared or 0) > CLOSE_UNREAD_ABOVE or \
            "chunked" in headers.get("transfer-encoding", "").lower()
        close = {"Connection": "close"} if unread_body else {}
        path: str = scope["path"]
        limit, limit_text = body_limit(self.ctx.settings.max_upload_mb, scope["method"], path)
        try:
            if path == "/v1" or path.startswith("/v1/"):
                ws = authenticate(self.ctx, headers.get("authorization", ""))
                scope.setdefault("state", {})[WORKSPACE_STATE] = ws
            if declared is not None and declared > limit:
                raise too_large(limit_text)
        except KairoError as exc:
            await error_response(exc.status, exc.code, exc.message,
                                 {**exc.headers, **close})(scope, receive, send)
            return

        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body, or one longer than it declared
                    # an HTTPException: FastAPI passes it through its body parsing
                    raise HTTPException(413, too_large(limit_text).message,
                                        headers={"Connection": "close"})
            return message

        await self.app(scope, counted_receive, send)
