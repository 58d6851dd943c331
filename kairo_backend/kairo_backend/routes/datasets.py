from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile

from kairo_backend.deps import Ctx, Workspace
from kairo_backend.errors import InvalidRequest, NotFound, PayloadTooLarge, ValidationFailed
from kairo_backend.schemas.common import ERROR_RESPONSES
from kairo_backend.schemas.datasets import DatasetList, DatasetPublic, dataset_public
from kairo_backend.services import create_dataset
from kairo_backend.training.datasets import load_arrays

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=DatasetPublic)
async def upload_dataset(request: Request, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """Multipart: `file` (.npz, one array per input/output name), `features` (JSON), `name`."""
    limit = int(ctx.settings.max_upload_mb * 1e6)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"upload of {int(length)} bytes is over the limit of {limit} bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("send multipart/form-data with fields file, features and name")
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed("file: field required (an .npz file)")
        if upload.size is not None and upload.size > limit:
            raise PayloadTooLarge(f"file of {upload.size} bytes is over the limit of {limit}")
        data = await upload.read()
        if len(data) > limit:
            raise PayloadTooLarge(f"file of {len(data)} bytes is over the limit of {limit}")
        raw = form.get("features")
        if not isinstance(raw, str):
            raise ValidationFailed("features: field required (JSON, see docs/features.md)")
        try:
            features = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"features: not valid JSON ({exc})") from exc
        name = form.get("name")
        if not isinstance(name, str) or not name.strip():
            name = upload.filename or "dataset"
        arrays = load_arrays(data)
    finally:
        await form.close()
    ds = create_dataset(ctx.settings, ctx.store, ws, name.strip()[:200], arrays, features)
    return dataset_public(ds)


@router.get("", response_model=DatasetList)
def list_datasets(ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    data = [dataset_public(d) for d in ctx.store.list_datasets(ws)]
    return {"data": data, "total": len(data)}


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    ds = ctx.store.get_dataset(ws, dataset_id)
    if ds is None:
        raise NotFound(f"dataset {dataset_id} not found in this workspace")
    return dataset_public(ds)
