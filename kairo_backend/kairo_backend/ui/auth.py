"""Who a dashboard request comes from, and whether a form may change anything.

A browser signs in with an API key once (a form POST) and then holds only a
session cookie: HttpOnly, SameSite=Strict, limited to /ui, Secure over https.
Every state-changing form carries the session's CSRF token, and its Origin
(or, without one, its Referer) must be this server: a cross-site POST is
refused with 403 before anything is read from its form but the token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from starlette.datastructures import FormData

from kairo_backend.store.sessions import SESSION_TTL_S, Sessions

COOKIE = "kairo_ui_session"
COOKIE_PATH = "/ui"


class SignInRequired(Exception):
    """A page asked for without a live session: the sign-in page answers."""


class Refused(Exception):
    """A state-changing request that is not provably from this dashboard: 403."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class UiSession:
    token: str
    workspace_id: str
    workspace: str
    csrf_token: str


def sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.ui_sessions
    return found


def optional_session(request: Request) -> UiSession | None:
    token = request.cookies.get(COOKIE, "")
    row = sessions(request).get(token)
    if row is None:
        return None
    return UiSession(token, row["workspace_id"], row["workspace"], row["csrf_token"])


def require_session(request: Request) -> UiSession:
    """The page's session (a FastAPI dependency); none: SignInRequired."""
    found = optional_session(request)
    if found is None:
        raise SignInRequired()
    return found


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def check_origin(request: Request) -> None:
    """The request's Origin, else its Referer, names this server (SameSite's second line)."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = urlsplit(request.headers.get("referer", ""))
        origin = f"{referer.scheme}://{referer.netloc}" if referer.netloc else None
    if origin is None:
        raise Refused("the request says neither its Origin nor its Referer")
    if origin != own_origin(request):
        raise Refused(f"the request comes from another site ({origin[:100]})")


async def checked_form(request: Request) -> tuple[UiSession, FormData]:
    """A state-changing form's session and fields, once its origin, its session and
    its CSRF token are checked (Refused otherwise)."""
    check_origin(request)
    session = optional_session(request)
    if session is None:
        raise Refused("no signed-in session; sign in again")
    form = await request.form(max_files=0, max_fields=20)
    token = form.get("csrf_token")
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(),
                                                             session.csrf_token.encode()):
        raise Refused("the form's CSRF token is missing or wrong; reload the page")
    return session, form


def field(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else default


def set_session_cookie(response: Any, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, max_age=SESSION_TTL_S, path=COOKIE_PATH,
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_session_cookie(response: Any, request: Request) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
