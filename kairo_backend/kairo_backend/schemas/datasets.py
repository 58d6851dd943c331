from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kairo_backend.core.util import iso
from kairo_backend.schemas.common import Task

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
                                    "count (>= 10)."},
            "features": {"type": "string", "contentMediaType": "application/json",
                         "description": "The features description as JSON "
                                        "(docs/features.md)."},
            "name": {"type": "string", "maxLength": 200,
                     "description": "Default: the file name."},
        },
    }}},
}


class DatasetPublic(BaseModel):
    id: str
    name: str
    task: Task
    samples: int
    features: dict[str, Any]
    created_at: str
    size_mb: float


class DatasetList(BaseModel):
    data: list[DatasetPublic]
    total: int


def dataset_public(ds: dict[str, Any]) -> dict[str, Any]:
    return {"id": ds["id"], "name": ds["name"], "task": ds["task"], "samples": ds["samples"],
            "features": ds["features"], "created_at": iso(ds["created_at"]),
            "size_mb": round(ds["size_bytes"] / 1e6, 3)}
