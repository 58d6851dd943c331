from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kairo_backend.core.util import iso
from kairo_backend.schemas.common import ID_PATTERN, RunStatus, Task, Text
from kairo_backend.store.rows import RunLogRow, RunRow

ROBOT_ID_PATTERN = r"^rob_[A-Za-z0-9_-]{1,64}$"


class TrainConfigIn(BaseModel):
    """Hyperparameters; 0 or absent means the default."""

    model_config = ConfigDict(extra="forbid")
    epochs: int | None = Field(None, ge=0, le=1000, description="1..1000 (default 20; 0: the "
                                                                "default)")
    learning_rate: float | None = Field(None, ge=0, le=1.0,
                                        description="(0, 1] (default 1e-3; 0: the default)")
    batch_size: int | None = Field(None, ge=0, le=4096, description="1..4096 (default 64; 0: "
                                                                    "the default)")


class TrainRequest(BaseModel):
    dataset_id: str = Field(..., pattern=ID_PATTERN,
                            description="ID of the preprocessed dataset to train on (ds_…); "
                                        "unknown in this workspace: 404.")
    robot_id: str = Field(..., pattern=ROBOT_ID_PATTERN,
                          description="Robot this model will be deployed to: rob_ and 1 to 64 "
                                      "letters, digits, _ or -.")
    task: Task = Field(..., description="What the model does; the dataset's task must match.")
    name: Text | None = Field(None, max_length=200, description="Human-readable name.")
    architecture: Literal["auto", "mlp", "cnn"] | None = Field(
        None, description="auto (default: mlp for vector tasks, cnn for object_detection), "
                          "mlp, or cnn (object_detection only).")
    config: TrainConfigIn | None = None


class TrainAccepted(BaseModel):
    model_id: str
    run_id: str
    status: Literal["queued"]
    position_in_queue: int
    estimated_duration_s: int


class Metrics(BaseModel):
    final_loss: float
    val_loss: float
    accuracy: float
    val_accuracy: float
    epochs_run: int
    inference_latency_p99_ms: float


class Progress(BaseModel):
    epoch: int
    epochs_total: int
    loss: float | None
    val_loss: float | None
    estimated_remaining_s: float | None


class RunPublic(BaseModel):
    run_id: str
    model_id: str
    status: RunStatus
    started_at: str | None
    completed_at: str | None
    duration_s: float | None
    metrics: Metrics | None
    model_version: str
    artifact_size_mb: float | None
    created_at: str
    dataset_id: str
    task: Task
    config: dict[str, Any]
    architecture: str
    position_in_queue: int
    progress: Progress
    error: str | None
    logs: list[str] | None = None


class RunList(BaseModel):
    data: list[RunPublic]
    total: int


def run_public(run: RunRow, position: int = 0,
               logs: list[RunLogRow] | None = None) -> dict[str, Any]:
    progress = run.get("progress") or {}
    epochs_total = run["config"]["epochs"]
    if not progress:
        remaining = run.get("estimated_duration_s") if run["status"] in ("queued", "running") \
            else 0.0
        progress = {"epoch": 0, "epochs_total": epochs_total, "loss": None, "val_loss": None,
                    "estimated_remaining_s": remaining}
    elif run["status"] != "running":
        progress = {**progress, "estimated_remaining_s": 0.0}
    duration = run.get("duration_s")
    out: dict[str, Any] = {
        "run_id": run["id"],
        "model_id": run["model_id"],
        "status": run["status"],
        "started_at": iso(run.get("started_at")),
        "completed_at": iso(run.get("completed_at")),
        "duration_s": round(duration, 3) if duration is not None else None,
        "metrics": run.get("metrics") if run["status"] == "complete" else None,
        "model_version": run["version"],
        "artifact_size_mb": run.get("artifact_size_mb"),
        "created_at": iso(run["created_at"]),
        "dataset_id": run["dataset_id"],
        "task": run["task"],
        "config": run["config"],
        "architecture": run["architecture"],
        "position_in_queue": position if run["status"] == "queued" else 0,
        "progress": progress,
        "error": run.get("error"),
    }
    if logs is not None:
        out["logs"] = [f"{iso(entry['at'])} {entry['line']}" for entry in logs]
    return out
