from __future__ import annotations

import json
import math
from typing import IO, Any

import anyio
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from kairo_backend.deps import Context, Ctx, Workspace
from kairo_backend.errors import InvalidRequest, NotFound, ValidationFailed
from kairo_backend.schemas.common import ERROR_RESPONSES
from kairo_backend.schemas.datasets import UPLOAD_BODY, DatasetList, DatasetPublic, dataset_public
from kairo_backend.services import create_dataset
from kairo_backend.store.rows import DatasetRow
from kairo_backend.training.datasets import check_features, read_npz
from kairo_backend.training.recordings import import_dataset, sniff_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)

# One upload decompressed and checked at a time: each may hold up to
# --max-dataset-mb in memory, so concurrent uploads wait here, not in the pool.
_ingesting = anyio.Semaphore(1)


@router.post("", status_code=201, response_model=DatasetPublic,
             openapi_extra={"requestBody": UPLOAD_BODY})
async def upload_dataset(request: Request, ctx: Ctx, ws: Workspace) -> dict[str, Any]:
    """Upload a dataset: multipart `file` (.npz, one array per input/output name; or a
    rosbag2 recording: .mcap, or a .zip / .tar.gz of the bag directory), `features`
    (JSON), `name`. The request body is limited by --max-upload-mb, the arrays once
    decompressed by --max-dataset-mb and --max-samples (413 above)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("send multipart/form-data with fields file, features and name")
    try:
        # the file part is spooled to a temporary file, never held whole in memory
        form = await request.form(max_files=1, max_fields=10)
    except HTTPException:
        raise  # the gate's 413
    except Exception as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed("file: field required (an .npz file or a rosbag2 recording)")
        raw = form.get("features")
        if not isinstance(raw, str):
            raise ValidationFailed("features: field required (JSON, see docs/features.md)")
        features = check_features(_parse_features(raw))
        name = form.get("name")
        if not isinstance(name, str) or not name.strip():
            name = upload.filename or "dataset"
        async with _ingesting:
            # reading, checking and compressing are CPU and file work: off the event loop
            ds = await run_in_threadpool(_ingest, ctx, ws, name.strip()[:200], upload.file,
                                         features, upload.filename or "upload")
    finally:
        await form.close()
    return dataset_public(ds)


def _parse_features(raw: str) -> Any:
    try:
        doc = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
        json.dumps(doc, ensure_ascii=False).encode()  # stored and answered as UTF-8
    except UnicodeEncodeError as exc:
        raise ValidationFailed("features: holds an invalid \\u escape (a lone surrogate); "
                               "send UTF-8 text") from exc
    except (ValueError, RecursionError) as exc:  # incl. JSONDecodeError, huge integers
        raise ValidationFailed(f"features: not valid JSON ({exc})") from exc
    return doc


def _not_json(word: str) -> Any:
    raise ValueError(f"{word} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _ingest(ctx: Context, ws: str, name: str, file: IO[bytes],
            features: dict[str, Any], file_name: str) -> DatasetRow:
    if sniff_upload(file) != "npz":
        return import_dataset(ctx.settings, ctx.store, ws, name, file, features,
                              file_name=file_name[:200])
    file.seek(0)
    arrays = read_npz(file, max_bytes=int(ctx.settings.max_dataset_mb * 1e6),
                      max_samples=ctx.settings.max_dataset_samples)
    return create_dataset(ctx.settings, ctx.store, ws, name, arrays, features)


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
