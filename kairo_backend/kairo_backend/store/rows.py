"""The rows the store gives its callers: one TypedDict per table or query shape.

Columns as the schema declares them (kairo_backend/store/migrations): times are unix
seconds, a NULL column is Optional, a JSON column is what it decodes to. They are
plain dicts at run time; the schemas turn them into the API's objects.
"""

from __future__ import annotations

from typing import Any, TypedDict, TypeVar, cast

from kairo_backend.store.engine import Row

_Row = TypeVar("_Row")


def as_row(kind: type[_Row], row: Row) -> _Row:
    """A driver's row (by column name) as the plain dict `kind` declares. The one place
    where the engines' untyped rows take their types: `kind` must match the SELECT."""
    return cast(_Row, dict(row))


class KeyRow(TypedDict):
    """An API key as listed (never its secret)."""
    id: str
    prefix: str | None  # NULL for keys made before prefixes were stored
    workspace: str  # the workspace's name
    created_at: float
    revoked_at: float | None


class DatasetRow(TypedDict):
    id: str
    workspace_id: str
    name: str
    task: str
    samples: int
    features: dict[str, Any]  # the features description (kairo_features)
    path: str
    size_bytes: int
    created_at: float
    source: dict[str, Any] | None  # the recording it was imported from
    dropped: dict[str, int]  # samples the import dropped, by reason


class ModelRow(TypedDict):
    id: str
    workspace_id: str
    name: str
    task: str
    robot_id: str
    active_version: str | None
    created_at: float
    updated_at: float
    next_version: int


class RunOutcome(TypedDict, total=False):
    """A run's columns shown from memory until its outcome is written (a full disk)."""
    status: str
    error: str | None
    completed_at: float | None


class RunSummary(TypedDict):
    """The columns of a run that a model's summary shows (schemas.models.model_public)."""
    id: str
    model_id: str
    version: str
    status: str
    created_at: float
    metrics: dict[str, Any] | None
    artifact_size_mb: float | None
    sha256: str | None
    artifact_error: str | None  # why a complete run's artifact is refused


class RunRow(RunSummary):
    seq: int
    workspace_id: str
    dataset_id: str
    task: str
    architecture: str
    config: dict[str, Any]
    started_at: float | None
    completed_at: float | None
    duration_s: float | None
    error: str | None
    progress: dict[str, Any] | None
    estimated_duration_s: float | None
    samples: int
    pid: int | None
    interruptions: int
    owner: str | None  # the replica whose executor trains it


class RunLogRow(TypedDict):
    at: float
    line: str


class PromotionRow(TypedDict):
    at: float
    from_version: str | None
    to_version: str


class RobotRow(TypedDict):
    """A robot as it last reported (its heartbeat)."""
    workspace_id: str
    id: str
    node: str
    task: str | None
    model_id: str
    serving: dict[str, Any] | None
    health: dict[str, Any] | None
    shadow: dict[str, Any] | None
    refused: list[dict[str, Any]]
    period_s: float
    first_seen: float
    last_seen: float


class DeploymentRow(TypedDict):
    seq: int
    id: str
    workspace_id: str
    model_id: str
    version: str
    previous_version: str | None
    mode: str
    robots: list[str]
    guard: dict[str, Any]
    state: str
    reason: str | None
    progress: dict[str, dict[str, Any]]  # robot id -> its rollout status
    observing_since: float | None
    created_at: float
    updated_at: float


class NewSession(TypedDict):
    """A dashboard sign-in session as made."""
    workspace_id: str
    csrf_token: str
    created_at: float
    expires_at: float


class SessionRow(NewSession):
    """A live session as looked up, with its workspace's name."""
    workspace: str
