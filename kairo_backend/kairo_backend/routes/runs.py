from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kairo_backend.deps import Ctx, Workspace, model_or_404, run_or_404
from kairo_backend.errors import Conflict
from kairo_backend.schemas.common import ERROR_RESPONSES
from kairo_backend.schemas.runs import RunList, RunPublic, run_public

router = APIRouter(prefix="/v1/models/{model_id}/runs", tags=["runs"],
                   responses=ERROR_RESPONSES)


@router.get("", response_model=RunList, response_model_exclude_none=False)
def list_runs(model_id: str, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """List all training runs for a model, newest first."""
    model_or_404(ctx, ws, model_id)
    positions = ctx.store.queue_positions()
    data = [run_public(r, positions.get(r["id"], 0)) for r in ctx.store.list_runs(model_id)]
    for d in data:
        d.pop("logs", None)
    return {"data": data, "total": len(data)}


@router.get("/{run_id}", response_model=RunPublic)
def get_run(model_id: str, run_id: str, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """Get details and logs for a training run."""
    run = run_or_404(ctx, ws, model_id, run_id)
    positions = ctx.store.queue_positions() if run["status"] == "queued" else {}
    return run_public(run, positions.get(run_id, 0), ctx.store.run_logs(run_id))


@router.post("/{run_id}/cancel", response_model=RunPublic)
def cancel_run(model_id: str, run_id: str, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """Cancel a queued or running run (its worker process is killed)."""
    run = run_or_404(ctx, ws, model_id, run_id)
    if not ctx.store.finish_run(run_id, "cancelled", error="cancelled by request"):
        current = ctx.store.get_run(run_id) or run
        raise Conflict(f"run {run_id} is already {current['status']}; nothing to cancel")
    ctx.dispatcher.kill(run_id)
    return run_public(ctx.store.get_run(run_id) or run, 0, ctx.store.run_logs(run_id))
