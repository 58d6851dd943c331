from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from kairo_backend.deps import Context, Ctx, Workspace, model_or_404
from kairo_backend.errors import Conflict, NotFound, RateLimited, ValidationFailed
from kairo_backend.jobs.estimate import estimate_duration_s
from kairo_backend.schemas.common import ERROR_RESPONSES
from kairo_backend.schemas.models import ModelList, ModelPublic, PromoteRequest, model_public
from kairo_backend.schemas.runs import TrainAccepted, TrainRequest
from kairo_backend.services import model_files, verified_artifact
from kairo_backend.store.fleet import FleetStore
from kairo_backend.store.rows import ModelRow
from kairo_backend.training.config import TrainConfig

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)

def _public(ctx: Context, model: ModelRow) -> dict[str, Any]:
    runs = list(reversed(ctx.store.list_runs(model["id"])))
    return model_public(model, runs, ctx.store.promotions(model["id"]))


@router.get("", response_model=ModelList)
async def list_models(ctx: Ctx, ws: Workspace) -> Response:
    """List all models in your workspace.

    The answer is rendered once and reused until the database changes.
    """
    def build() -> bytes:
        runs = ctx.store.runs_for_models(ws)
        data = [model_public(m, runs.get(m["id"], []), ctx.store.promotions(m["id"]))
                for m in ctx.store.list_models(ws)]
        body = ModelList.model_validate({"data": data, "total": len(data)})
        return body.model_dump_json(by_alias=True).encode()

    return Response(ctx.store.cached(f"models:{ws}", build), media_type="application/json")


@router.post("/train", status_code=202, response_model=TrainAccepted)
def train(body: TrainRequest, ctx: Ctx, ws: Workspace, response: Response) -> dict[str, Any]:
    """Start a new training run: a new version of the model for (robot_id, task)."""
    # task, robot_id and architecture are checked by TrainRequest (and shown in the schema)
    arch = body.architecture or "auto"
    if arch == "auto":
        arch = "cnn" if body.task == "object_detection" else "mlp"
    if arch == "cnn" and body.task != "object_detection":
        raise ValidationFailed(f"architecture: cnn needs image input; task {body.task} "
                               "has vector features (use mlp or auto)")
    if arch == "mlp" and body.task == "object_detection":
        raise ValidationFailed("architecture: object_detection trains a cnn detector "
                               "(use cnn or auto)")
    config = TrainConfig.from_request(body.config.model_dump() if body.config else None,
                                      task=body.task)
    ds = ctx.store.get_dataset(ws, body.dataset_id)
    if ds is None:
        raise NotFound(f"dataset {body.dataset_id} not found in this workspace")
    if ds["task"] != body.task:
        raise ValidationFailed(f"dataset_id: dataset {ds['id']} is for task {ds['task']!r}, "
                               f"not {body.task!r}")
    est = estimate_duration_s(ctx.store, body.task, arch, ds["samples"], config.epochs)
    queued = ctx.store.submit_run(
        ws, robot_id=body.robot_id, task=body.task, name=(body.name or "").strip() or None,
        dataset_id=ds["id"], architecture=arch, config=config.as_dict(), samples=ds["samples"],
        estimated_duration_s=est, max_queued=ctx.settings.max_queued_runs)
    if queued is None:
        raise RateLimited(f"this workspace already has {ctx.settings.max_queued_runs} runs "
                          "queued; wait for some to finish", headers={"Retry-After": "30"})
    run, position = queued
    ctx.dispatcher.wake()
    return {"model_id": run["model_id"], "run_id": run["id"], "status": "queued",
            "position_in_queue": position, "estimated_duration_s": max(1, round(est))}


@router.get("/{model_id}", response_model=ModelPublic)
def get_model(model_id: str, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """Get a model and its latest metrics."""
    return _public(ctx, model_or_404(ctx, ws, model_id))


@router.post("/{model_id}/promote", response_model=ModelPublic)
def promote(model_id: str, body: PromoteRequest, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """Make a complete version active; the history is kept in `promotions`."""
    model = model_or_404(ctx, ws, model_id)
    runs = ctx.store.list_runs(model_id)
    run = next((r for r in runs if r["version"] == body.version), None)
    if run is None:
        raise NotFound(f"version {body.version!r} not found for model {model_id}")
    if run["status"] != "complete":
        raise Conflict(f"version {body.version} is {run['status']}, not complete; "
                       "only a complete version can be promoted")
    verified_artifact(ctx.settings, ctx.store, run)  # 409 artifact_corrupted
    if model["active_version"] != body.version:
        ctx.store.promote(model_id, body.version)
        FleetStore(ctx.store).settle(ws, model_id)  # the deployments it supersedes end now
    return _public(ctx, model_or_404(ctx, ws, model_id))


@router.delete("/{model_id}")
def delete_model(model_id: str, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """Delete a model, all its versions, runs, logs and artifacts (cancelling its runs).

    Exports of the model in progress finish first; later ones answer 404.
    """
    model_or_404(ctx, ws, model_id)
    with model_files.deleting(model_id):
        model_or_404(ctx, ws, model_id)  # a concurrent delete may have won
        active = [r for r in ctx.store.list_runs(model_id)
                  if r["status"] in ("queued", "running")]
        for r in active:
            ctx.store.finish_run(r["id"], "cancelled", error="model deleted")
            ctx.dispatcher.kill(r["id"])
        run_ids = ctx.store.delete_model(model_id)
        ctx.dispatcher.remove_files(model_id, run_ids)
    return {"id": model_id, "deleted": True}
