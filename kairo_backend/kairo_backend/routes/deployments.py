"""Deployments of a model's versions to some robots (canary, percent, all; active or
shadow), and what each robot must serve."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query

from kairo_backend.core.util import now
from kairo_backend.deps import Context, Ctx, Workspace, model_or_404
from kairo_backend.errors import Conflict, NoActiveVersion, NotFound, ValidationFailed
from kairo_backend.fleet.guard import LIVE
from kairo_backend.routes.robots import no_version_message
from kairo_backend.schemas.common import ERROR_RESPONSES
from kairo_backend.schemas.fleet import (
    Assignment,
    DeploymentCreate,
    DeploymentList,
    DeploymentPublic,
    deployment_public,
    robot_status,
)
from kairo_backend.schemas.runs import ROBOT_ID_PATTERN
from kairo_backend.services import verified_artifact
from kairo_backend.store.fleet import FleetStore
from kairo_backend.store.rows import DeploymentRow

router = APIRouter(prefix="/v1/models/{model_id}", tags=["deployments"],
                   responses=ERROR_RESPONSES)


def _complete_version(ctx: Context, model_id: str, version: str) -> None:
    """404 for an unknown version, 409 for one not complete or whose artifact is corrupted."""
    run = next((r for r in ctx.store.list_runs(model_id) if r["version"] == version), None)
    if run is None:
        raise NotFound(f"version {version!r} not found for model {model_id}")
    if run["status"] != "complete":
        raise Conflict(f"version {version} is {run['status']}, not complete; only a "
                       "complete version can be deployed")
    verified_artifact(ctx.settings, ctx.store, run)


def _deployment_or_404(fleet: FleetStore, ws: str, model_id: str,
                       deployment_id: str) -> DeploymentRow:
    dep = fleet.get_deployment(ws, model_id, deployment_id)
    if dep is None:
        raise NotFound(f"deployment {deployment_id} not found for model {model_id}")
    return dep


def _current_or_404(fleet: FleetStore, ws: str, model_id: str, deployment_id: str,
                    ) -> DeploymentRow:
    """The deployment as its guard and the model's promotions leave it now (a promotion
    made a moment ago may have ended it), 409 once its version was widened to the fleet."""
    _deployment_or_404(fleet, ws, model_id, deployment_id)
    dep = fleet.evaluate(deployment_id) or _deployment_or_404(fleet, ws, model_id,
                                                                  deployment_id)
    if fleet.widened(dep):
        previous = dep["previous_version"]
        back = (f"promote {previous}: POST /v1/models/{model_id}/promote "
                f"{{\"version\": \"{previous}\"}}" if previous else
                f"promote another version with POST /v1/models/{model_id}/promote")
        raise Conflict(f"deployment {deployment_id} was promoted: {dep['version']} is the "
                       f"model's active version for the whole fleet; to go back, {back}")
    return dep


def _targets(fleet: FleetStore, ws: str, model_id: str, body: DeploymentCreate) -> list[str]:
    if body.robots is not None:
        seen: set[str] = set()
        for r in body.robots:
            if r in seen:
                raise ValidationFailed(f"robots: {r} is listed twice")
            seen.add(r)
            if fleet.get_robot(ws, r) is None:
                raise ValidationFailed(f"robots: {r} has never sent a heartbeat to this "
                                       "workspace; check the id, or start its inference node "
                                       "with that robot_id first")
        return list(body.robots)
    reporting = fleet.robots_reporting(ws, model_id)
    if not reporting:
        raise Conflict(f"no robot has reported model {model_id} yet, so percent or all "
                       "targets none; list robots, or use POST /v1/models/{id}/promote to "
                       "make the version active for every robot")
    # An offline robot would never report the new version and fail the guard at once.
    at = now()
    reachable = [r["id"] for r in reporting
                 if robot_status(r["last_seen"], r["period_s"], at) != "offline"]
    if not reachable:
        raise Conflict(f"every robot that reported model {model_id} is offline (no heartbeat "
                       "for 10 of its periods); start their inference nodes, or name robots "
                       "explicitly with robots: [...]")
    if body.percent is None:
        return reachable
    return reachable[:math.ceil(len(reachable) * body.percent / 100)]


@router.get("/assignment", response_model=Assignment)
def get_assignment(model_id: str, ctx: Ctx, ws: Workspace,
                   robot_id: Annotated[str, Query(pattern=ROBOT_ID_PATTERN,
                                                  description="The robot asking.")]
                   ) -> dict[str, Any]:
    """What a robot must serve of this model: the version its live deployment pins for
    it, else the model's active version (409 no_active_version when neither exists),
    and a candidate to run in shadow beside it when a shadow deployment targets it."""
    model = model_or_404(ctx, ws, model_id)
    assignment = FleetStore(ctx.store).assignment(ws, model, robot_id)
    if assignment is None:
        raise NoActiveVersion(no_version_message(model_id, robot_id))
    return assignment


@router.post("/deployments", status_code=201, response_model=DeploymentPublic)
def create_deployment(model_id: str, body: DeploymentCreate, ctx: Ctx,
                      ws: Workspace) -> dict[str, Any]:
    """Deploy a complete version to some robots: `robots`, or `percent` of the robots
    that reported the model and are not offline (sorted by id, rounded up), or all of them.

    The deployment supersedes the model's live deployments to any of the same robots
    (they end `cancelled`) and rolls back by itself when its guard is crossed.
    """
    model = model_or_404(ctx, ws, model_id)
    _complete_version(ctx, model_id, body.version)
    active = model["active_version"]
    if body.mode == "shadow":
        if active is None:
            raise Conflict(f"model {model_id} has no active version for {body.version} to "
                           "run beside; promote a version first, or deploy in mode active")
        if active == body.version:
            raise Conflict(f"{body.version} is the model's active version; shadow another "
                           "version")
    fleet = FleetStore(ctx.store)
    dep = fleet.create_deployment(ws, model_id, version=body.version, mode=body.mode,
                                  robots=_targets(fleet, ws, model_id, body),
                                  guard=body.guard.model_dump(), previous_version=active)
    return deployment_public(fleet.evaluate(dep["id"]) or dep)


@router.get("/deployments", response_model=DeploymentList)
def list_deployments(model_id: str, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """The model's deployments, newest first, with their state and per-robot progress."""
    model_or_404(ctx, ws, model_id)
    data = [deployment_public(d) for d in FleetStore(ctx.store).list_deployments(ws, model_id)]
    return {"data": data, "total": len(data)}


@router.get("/deployments/{deployment_id}", response_model=DeploymentPublic)
def get_deployment(model_id: str, deployment_id: str, ctx: Ctx,
                   ws: Workspace) -> dict[str, Any]:
    """One deployment with its state, reason and per-robot progress."""
    model_or_404(ctx, ws, model_id)
    return deployment_public(_deployment_or_404(FleetStore(ctx.store), ws, model_id,
                                                deployment_id))


@router.post("/deployments/{deployment_id}/promote", response_model=DeploymentPublic)
def promote_deployment(model_id: str, deployment_id: str, ctx: Ctx,
                       ws: Workspace) -> dict[str, Any]:
    """Widen a live deployment to the whole fleet: its version becomes the model's
    active version (a promotion, recorded in the model's `promotions`), and the
    deployment ends `complete`."""
    model = model_or_404(ctx, ws, model_id)
    fleet = FleetStore(ctx.store)
    dep = _current_or_404(fleet, ws, model_id, deployment_id)
    if dep["state"] not in LIVE:
        raise Conflict(f"deployment {deployment_id} is {dep['state']}; only a live one "
                       "(rolling_out, observing, complete) can be promoted: deploy again")
    _complete_version(ctx, model_id, dep["version"])
    if not fleet.end_deployment(deployment_id, "complete",
                                f"promoted: {dep['version']} is the model's active version "
                                "for the whole fleet"):
        current = fleet.get_deployment(ws, model_id, deployment_id) or dep
        raise Conflict(f"deployment {deployment_id} became {current['state']} meanwhile "
                       f"({current['reason']}); nothing promoted")
    if model["active_version"] != dep["version"]:
        ctx.store.promote(model_id, dep["version"])
        fleet.settle(ws, model_id)  # the model's other deployments it supersedes end now
    return deployment_public(_deployment_or_404(fleet, ws, model_id, deployment_id))


@router.post("/deployments/{deployment_id}/rollback", response_model=DeploymentPublic)
def rollback_deployment(model_id: str, deployment_id: str, ctx: Ctx,
                        ws: Workspace) -> dict[str, Any]:
    """End a live deployment: its robots return to the model's active version."""
    model_or_404(ctx, ws, model_id)
    fleet = FleetStore(ctx.store)
    dep = _current_or_404(fleet, ws, model_id, deployment_id)
    if not fleet.end_deployment(deployment_id, "rolled_back", "rolled back by the operator"):
        current = fleet.get_deployment(ws, model_id, deployment_id) or dep
        raise Conflict(f"deployment {deployment_id} is already {current['state']}; "
                       "nothing to roll back")
    return deployment_public(_deployment_or_404(fleet, ws, model_id, deployment_id))
