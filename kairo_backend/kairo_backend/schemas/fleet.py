"""Fleet schemas: robots' heartbeats, the fleet as reported, deployments and assignments.

Request models refuse unknown fields and non-finite numbers (a NaN would make the
answers that echo them invalid JSON). `robot_public` and `deployment_public` turn the
rows of kairo_backend.store.fleet into the public objects (the dashboard uses them too).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kairo_backend.core.util import iso
from kairo_backend.schemas.common import ID_PATTERN, VERSION_PATTERN, Task, Text
from kairo_backend.schemas.runs import ROBOT_ID_PATTERN
from kairo_backend.store.rows import DeploymentRow, RobotRow

RobotId = Annotated[str, Field(pattern=ROBOT_ID_PATTERN,
                               description="rob_ and 1 to 64 letters, digits, _ or -.")]
RobotStatus = Literal["online", "stale", "offline"]
DeploymentMode = Literal["active", "shadow"]
DeploymentState = Literal["rolling_out", "observing", "complete", "rolled_back", "cancelled"]
ProgressStatus = Literal["pending", "serving", "shadowing", "failed"]
Count = Annotated[int, Field(ge=0, le=10**15)]
NonNegative = Annotated[float, Field(ge=0, le=1e12)]
Share = Annotated[float, Field(ge=0, le=1)]
ShortText = Annotated[Text, Field(max_length=256)]
ModelRef = Annotated[str, Field(max_length=64, pattern=f"{ID_PATTERN}|^$")]
VersionRef = Annotated[str, Field(pattern=VERSION_PATTERN)]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


# heartbeats ----------------------------------------------------------------
class Serving(BaseModel):
    """What the node serves now."""

    model_config = _STRICT
    model_id: ModelRef
    version: VersionRef
    sha256: ShortText = ""
    lifecycle_state: ShortText = ""
    provider: ShortText = ""
    deployment_id: ModelRef | None = None


class RobotHealth(BaseModel):
    """The node's prediction path over its last window."""

    model_config = _STRICT
    window_s: NonNegative = 0.0
    rate_hz: NonNegative = 0.0
    latency_p50_ms: NonNegative = 0.0
    latency_p99_ms: NonNegative = 0.0
    processed: Count = 0
    dropped: Count = 0
    errors: Count = 0


class Refusal(BaseModel):
    """A version the node refused at load (sha256, I/O signature, ...)."""

    model_config = _STRICT
    model_id: ModelRef
    version: VersionRef
    code: ShortText = ""
    message: Annotated[Text, Field(max_length=2000)] = ""


class OutputDivergence(BaseModel):
    model_config = _STRICT
    mean_abs_diff: NonNegative
    max_abs_diff: NonNegative
    within_tolerance: Share
    tolerance: NonNegative | None = None


class Shadow(BaseModel):
    """The candidate a node runs beside the active model, measured on the same inputs."""

    model_config = _STRICT
    model_id: ModelRef
    version: VersionRef
    sha256: ShortText = ""
    deployment_id: ModelRef | None = None
    samples: Count = 0
    errors: Count = Field(0, description="Candidate failures, non-finite outputs included.")
    dropped: Count = 0
    latency_p50_ms: NonNegative = 0.0
    latency_p99_ms: NonNegative = 0.0
    outputs: dict[ShortText, OutputDivergence] = Field(default_factory=dict, max_length=64)
    divergence: NonNegative = Field(0.0, description="Max over outputs of mean_abs_diff.")


class HeartbeatRequest(BaseModel):
    model_config = _STRICT
    period_s: float = Field(..., gt=0, le=3600, description="The robot's heartbeat period.")
    node: ShortText = Field("", description="Fully qualified name of the reporting node.")
    task: Task | None = None
    model_id: ModelRef = Field("", description="The model the node's source names "
                                               "(empty before the first resolve).")
    serving: Serving | None = None
    health: RobotHealth | None = None
    refused: list[Refusal] = Field(default_factory=list, max_length=100)
    shadow: Shadow | None = None


class RobotPublic(BaseModel):
    id: str
    node: str
    task: str | None
    model_id: str
    serving: Serving | None
    health: RobotHealth | None
    shadow: Shadow | None
    refused: list[Refusal]
    period_s: float
    first_seen: str
    last_seen: str
    status: RobotStatus = Field(..., description="online: last heartbeat within 3 periods; "
                                                 "stale: within 10; offline beyond.")


class RobotList(BaseModel):
    data: list[RobotPublic]
    total: int


# assignments -----------------------------------------------------------------
class ShadowAssignment(BaseModel):
    version: str
    sha256: str | None
    deployment_id: str


class Assignment(BaseModel):
    """What a robot must serve: its live deployment's pin, else the model's active version."""

    model_id: str
    robot_id: str
    version: str
    sha256: str | None
    deployment_id: str | None = Field(..., description="The deployment that pins `version` "
                                                       "for this robot; null: active version.")
    shadow: ShadowAssignment | None = Field(..., description="A candidate to run beside it.")


class NoAssignment(BaseModel):
    """A heartbeat's answer when there is nothing to serve (yet)."""

    robot_id: str
    assignment: None = None
    reason: str | None = Field(None, description="Why (unknown model, no active version); "
                                                 "null when the heartbeat named no model.")


# deployments -----------------------------------------------------------------
class Guard(BaseModel):
    """Thresholds that roll a deployment back by itself."""

    model_config = _STRICT
    max_error_rate: Share = Field(0.01, description="errors / (processed + errors) in a "
                                                    "robot's health window (and the shadow "
                                                    "candidate's errors / samples).")
    max_drop_rate: Share = Field(0.05, description="dropped / (processed + dropped).")
    max_divergence: NonNegative | None = Field(None, description="Shadow divergence (max over "
                                                                 "outputs of mean_abs_diff); "
                                                                 "null: not checked.")
    min_observation_s: float = Field(30.0, ge=0, le=7 * 86400,
                                     description="How long every target must stay within "
                                                 "the guard before the deployment completes.")
    report_within_s: float = Field(60.0, gt=0, le=7 * 86400,
                                   description="A target that does not report the version "
                                               "this long counts as failed.")


class DeploymentCreate(BaseModel):
    model_config = _STRICT
    version: VersionRef = Field(..., description="A complete version of the model, e.g. v2.")
    mode: DeploymentMode = Field("active", description="active: the robots serve `version`; "
                                                       "shadow: they run it beside the "
                                                       "active version and publish only the "
                                                       "active one's outputs.")
    robots: list[RobotId] | None = Field(None, min_length=1, max_length=1000,
                                         description="The robots targeted (each must have "
                                                     "reported to this workspace).")
    percent: int | None = Field(None, ge=1, le=100,
                                description="Target this share of the robots that reported "
                                            "the model and are not offline (sorted by id, "
                                            "rounded up).")
    guard: Guard = Field(default_factory=lambda: Guard.model_validate({}))

    @model_validator(mode="after")
    def _one_target(self) -> DeploymentCreate:
        if self.robots is not None and self.percent is not None:
            raise ValueError("give robots or percent, not both (neither: every robot that "
                             "reported the model)")
        return self


class RobotProgress(BaseModel):
    robot_id: str
    status: ProgressStatus
    version: str | None = Field(..., description="The version it last reported serving.")
    reported_at: str | None
    health: RobotHealth | None
    shadow: Shadow | None
    reason: str | None


class DeploymentPublic(BaseModel):
    id: str
    model_id: str
    version: str
    previous_version: str | None
    mode: DeploymentMode
    robots: list[str]
    guard: Guard
    state: DeploymentState
    reason: str | None
    created_at: str
    updated_at: str
    progress: list[RobotProgress]


class DeploymentList(BaseModel):
    data: list[DeploymentPublic]
    total: int


# rows -> public objects ------------------------------------------------------
def robot_status(last_seen: float, period_s: float, at: float) -> str:
    age = at - last_seen
    if age <= 3 * period_s:
        return "online"
    return "stale" if age <= 10 * period_s else "offline"


def robot_public(row: RobotRow, at: float) -> dict[str, Any]:
    """A row of FleetStore.list_robots as the API shows it, its status as of `at`."""
    return {"id": row["id"], "node": row["node"], "task": row["task"],
            "model_id": row["model_id"], "serving": row["serving"], "health": row["health"],
            "shadow": row["shadow"], "refused": row["refused"], "period_s": row["period_s"],
            "first_seen": iso(row["first_seen"]), "last_seen": iso(row["last_seen"]),
            "status": robot_status(row["last_seen"], row["period_s"], at)}


def deployment_public(row: DeploymentRow) -> dict[str, Any]:
    """A row of FleetStore.list_deployments as the API shows it."""
    return {"id": row["id"], "model_id": row["model_id"], "version": row["version"],
            "previous_version": row["previous_version"], "mode": row["mode"],
            "robots": row["robots"], "guard": row["guard"], "state": row["state"],
            "reason": row["reason"], "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]),
            "progress": [_progress_public(r, row["progress"].get(r) or {})
                         for r in row["robots"]]}


def _progress_public(robot_id: str, p: dict[str, Any]) -> dict[str, Any]:
    return {"robot_id": robot_id, "status": p.get("status", "pending"),
            "version": p.get("version"), "reported_at": iso(p.get("reported_at")),
            "health": p.get("health"), "shadow": p.get("shadow"), "reason": p.get("reason")}
