"""The fleet as its robots report it: heartbeats in, robots out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from kairo_backend.core.util import now
from kairo_backend.deps import Ctx, Workspace
from kairo_backend.errors import NotFound
from kairo_backend.schemas.common import ERROR_RESPONSES
from kairo_backend.schemas.fleet import (
    Assignment,
    HeartbeatRequest,
    NoAssignment,
    RobotList,
    RobotPublic,
    robot_public,
)
from kairo_backend.schemas.runs import ROBOT_ID_PATTERN
from kairo_backend.store.fleet import FleetStore

router = APIRouter(prefix="/v1/robots", tags=["robots"], responses=ERROR_RESPONSES)

RobotPath = Annotated[str, Path(pattern=ROBOT_ID_PATTERN,
                                description="rob_ and 1 to 64 letters, digits, _ or -.")]


@router.post("/{robot_id}/heartbeat", response_model=Assignment | NoAssignment)
def heartbeat(robot_id: RobotPath, body: HeartbeatRequest, ctx: Ctx,
              ws: Workspace) -> Assignment | NoAssignment:
    """Record what a robot serves and how it does; answer what it must serve.

    The guards of the live deployments that target the robot are evaluated at
    once. The answer is the robot's assignment for the model it names (`model_id`,
    else `serving.model_id`); without one, or when the model is unknown or has no
    version to serve yet, `assignment` is null and `reason` says why.
    """
    fleet = FleetStore(ctx.store)
    fleet.record_heartbeat(ws, robot_id, body.model_dump())
    for dep_id in fleet.live_deployment_ids(ws, robot_id):
        fleet.evaluate(dep_id)
    model_id = body.model_id or (body.serving.model_id if body.serving else "")
    if not model_id:
        return NoAssignment(robot_id=robot_id, reason=None)
    model = ctx.store.get_model(ws, model_id)
    if model is None:
        return NoAssignment(robot_id=robot_id,
                            reason=f"model {model_id} not found in this workspace")
    assignment = fleet.assignment(ws, model, robot_id)
    if assignment is None:
        return NoAssignment(robot_id=robot_id, reason=no_version_message(model_id, robot_id))
    return Assignment.model_validate(assignment)


def no_version_message(model_id: str, robot_id: str) -> str:
    return (f"model {model_id} has no active version and no deployment pins one for "
            f"{robot_id}: promote a complete version or deploy one to this robot")


@router.get("", response_model=RobotList)
def list_robots(ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """The workspace's robots as they last reported, sorted by id."""
    at = now()
    data = [robot_public(r, at) for r in FleetStore(ctx.store).list_robots(ws)]
    return {"data": data, "total": len(data)}


@router.get("/{robot_id}", response_model=RobotPublic)
def get_robot(robot_id: RobotPath, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """One robot as it last reported, with `status` online / stale / offline."""
    robot = FleetStore(ctx.store).get_robot(ws, robot_id)
    if robot is None:
        raise NotFound(f"robot {robot_id} has never sent a heartbeat to this workspace")
    return robot_public(robot, now())
