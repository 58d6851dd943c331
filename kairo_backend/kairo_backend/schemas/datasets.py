from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kairo_backend.core.util import iso


class DatasetPublic(BaseModel):
    id: str
    name: str
    task: str
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
