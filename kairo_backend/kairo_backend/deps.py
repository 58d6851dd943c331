"""Dependencies shared by the routes: the app context and the caller's workspace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kairo_backend.core.config import Settings
from kairo_backend.errors import NotFound, Unauthorized
from kairo_backend.jobs.dispatcher import Dispatcher
from kairo_backend.store import Store
from kairo_backend.store.rows import ModelRow, RunRow


@dataclass
class Context:
    settings: Settings
    store: Store
    dispatcher: Dispatcher
    secret: bytes


async def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


WORKSPACE_STATE = "kairo_workspace"  # set by the request gate before the body is read


def authenticate(ctx: Context, authorization: str) -> str:
    """The workspace of the request's key (a dict hit, or one indexed read on a miss)."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer kai_live_…'",
                           headers={"WWW-Authenticate": "Bearer"})
    ws = ctx.store.workspace_for_key(key.strip())
    if ws is None:
        raise Unauthorized("unknown API key; create one with 'kairo-backend keys create'",
                           headers={"WWW-Authenticate": "Bearer"})
    return ws


# Declares the key in OpenAPI (so /docs offers "Authorize"); the key itself is checked
# by the gate and by authenticate(), with the API's own errors.
API_KEY = HTTPBearer(auto_error=False, scheme_name="apiKey",
                     description="An API key of the workspace: `Authorization: Bearer "
                                 "kai_live_…` (made with `kairo-backend keys create`).")


async def get_workspace(request: Request,
                        _declared: Annotated[HTTPAuthorizationCredentials | None,
                                             Security(API_KEY)] = None) -> str:
    """The caller's workspace: the gate (kairo_backend.gate) checked the key of every
    /v1 request before its body was read."""
    ws = request.scope.get("state", {}).get(WORKSPACE_STATE)
    if isinstance(ws, str):
        return ws
    return authenticate(request.app.state.ctx, request.headers.get("authorization", ""))


Ctx = Annotated[Context, Depends(get_context)]
Workspace = Annotated[str, Depends(get_workspace)]


def model_or_404(ctx: Context, ws: str, model_id: str) -> ModelRow:
    model = ctx.store.get_model(ws, model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found in this workspace")
    return model


def run_or_404(ctx: Context, ws: str, model_id: str, run_id: str) -> RunRow:
    model_or_404(ctx, ws, model_id)
    run = ctx.store.get_run(run_id)
    if run is None or run["model_id"] != model_id:
        raise NotFound(f"run {run_id} not found for model {model_id}")
    return run
