"""The operator's dashboard, served by the backend under /ui (kairo_backend.ui.pages)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from kairo_backend.store.sessions import Sessions
from kairo_backend.ui.pages import router
from kairo_backend.ui.render import STATIC_DIR


def install(app: FastAPI) -> None:
    """Add the dashboard to the app (after app.state.ctx is set)."""
    app.state.ui_sessions = Sessions(app.state.ctx.store)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
