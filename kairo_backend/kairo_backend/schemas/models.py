from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kairo_backend.core.util import iso
from kairo_backend.schemas.common import VERSION_PATTERN, ExportFormat, ModelStatus, RunStatus, Task
from kairo_backend.schemas.runs import Metrics
from kairo_backend.store.rows import ModelRow, PromotionRow, RunSummary


class Version(BaseModel):
    version: str
    run_id: str
    status: RunStatus
    created_at: str
    metrics: Metrics | None
    artifact_size_mb: float | None
    sha256: str | None
    artifact_error: str | None = Field(
        None, description="Set when the stored model file is empty or no longer matches "
                          "sha256: exports, downloads and promotion answer 409 "
                          "artifact_corrupted; train the version again.")


class Promotion(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    at: str
    from_: str | None = Field(None, alias="from")
    to: str


class ModelPublic(BaseModel):
    id: str
    name: str
    task: Task
    status: ModelStatus
    active_version: str | None
    accuracy: float | None
    robot_id: str
    created_at: str
    updated_at: str
    metrics: Metrics | None
    versions: list[Version]
    promotions: list[Promotion]


class ModelList(BaseModel):
    data: list[ModelPublic]
    total: int


class PromoteRequest(BaseModel):
    version: str = Field(..., pattern=VERSION_PATTERN,
                         description="The version to make active, e.g. v2; it must be complete.")


class ExportRequest(BaseModel):
    format: ExportFormat = Field(
        ..., description="onnx (the model file) or ros2-pkg (a .tar.gz holding one ROS 2 "
                         "package).")
    version: str | None = Field(None, pattern=f"{VERSION_PATTERN}|^$",
                                description="vN; empty or absent: the active version.")


class ExportPublic(BaseModel):
    download_url: str
    expires_at: str
    format: ExportFormat
    size_mb: float
    sha256: str
    version: str


def model_status(model: ModelRow, runs: Sequence[RunSummary]) -> str:
    if model.get("active_version"):
        return "active"
    if any(r["status"] == "complete" for r in runs):
        return "ready"
    if any(r["status"] in ("queued", "running") for r in runs) or not runs:
        return "training"
    return "failed"


def model_public(model: ModelRow, runs: Sequence[RunSummary],
                 promotions: list[PromotionRow]) -> dict[str, Any]:
    """`runs` oldest first."""
    complete = [r for r in runs if r["status"] == "complete"]
    latest = complete[-1] if complete else None
    active = next((r for r in complete if r["version"] == model.get("active_version")), None)
    shown = active or latest
    return {
        "id": model["id"],
        "name": model["name"],
        "task": model["task"],
        "status": model_status(model, runs),
        "active_version": model.get("active_version"),
        "accuracy": shown["metrics"]["accuracy"] if shown and shown["metrics"] else None,
        "robot_id": model["robot_id"],
        "created_at": iso(model["created_at"]),
        "updated_at": iso(model["updated_at"]),
        "metrics": latest["metrics"] if latest else None,
        "versions": [{"version": r["version"], "run_id": r["id"], "status": r["status"],
                      "created_at": iso(r["created_at"]),
                      "metrics": r["metrics"] if r["status"] == "complete" else None,
                      "artifact_size_mb": r.get("artifact_size_mb"), "sha256": r.get("sha256"),
                      "artifact_error": r.get("artifact_error")}
                     for r in runs],
        "promotions": [{"at": iso(p["at"]), "from": p["from_version"], "to": p["to_version"]}
                       for p in promotions],
    }
