from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kairo_backend.core.util import iso
from kairo_backend.schemas.common import Task
from kairo_backend.store.rows import DatasetRow

# The upload's multipart body (the route parses it itself, to stream the file and
# keep its own error messages); what the route requires, said in the schema.
UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["file", "features"],
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": ".npz (numpy savez, no pickles): one real-valued array "
                                    "per input and output name, first dimension the sample "
                                    "count (>= 10); or a rosbag2 recording: a .mcap file, or "
                                    "a .zip or .tar.gz of the bag directory (docs/api.md)."},
            "features": {"type": "string", "contentMediaType": "application/json",
                         "description": "The features description as JSON "
                                        "(docs/features.md)."},
            "name": {"type": "string", "maxLength": 200,
                     "description": "Default: the file name."},
        },
    }}},
}


class RecordingTopic(BaseModel):
    topic: str
    type: str
    messages: int


class RecordingSource(BaseModel):
    kind: Literal["rosbag2"]
    storage: Literal["mcap", "sqlite3"]
    file: str
    messages: int
    start_ns: int = Field(description="The bag's first log time, ns since the epoch")
    end_ns: int = Field(description="The bag's last log time, ns since the epoch")
    duration_s: float
    topics: list[RecordingTopic]
    late: dict[str, int] = Field(description="Messages that came too late to be aligned, "
                                             "by entry name")


class DatasetPublic(BaseModel):
    id: str
    name: str
    task: Task
    samples: int
    features: dict[str, Any]
    created_at: str
    size_mb: float
    source: RecordingSource | None = Field(
        description="The rosbag2 recording the dataset was imported from; null for an .npz")
    dropped: dict[str, int] = Field(
        description="Samples the import could not complete, by reason (docs/features.md)")


class DatasetList(BaseModel):
    data: list[DatasetPublic]
    total: int


def dataset_public(ds: DatasetRow) -> dict[str, Any]:
    return {"id": ds["id"], "name": ds["name"], "task": ds["task"], "samples": ds["samples"],
            "features": ds["features"], "created_at": iso(ds["created_at"]),
            "size_mb": round(ds["size_bytes"] / 1e6, 3), "source": ds.get("source"),
            "dropped": ds.get("dropped") or {}}
