from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from kairo_backend.core import security
from kairo_backend.core.util import iso
from kairo_backend.deps import Ctx, Workspace, model_or_404
from kairo_backend.errors import Conflict, Forbidden, NotFound, ValidationFailed
from kairo_backend.schemas.common import ERROR_RESPONSES
from kairo_backend.schemas.models import ExportPublic, ExportRequest

router = APIRouter(tags=["exports"], responses=ERROR_RESPONSES)

FILENAME = re.compile(r"^(mdl_[a-z0-9]+)_(v[0-9]+)\.onnx$")


@router.post("/v1/models/{model_id}/export", response_model=ExportPublic)
def export(model_id: str, body: ExportRequest, request: Request, ctx: Ctx,
           ws: Workspace) -> dict[str, Any]:
    """Export a version as an ONNX file behind a signed link valid for 24 hours."""
    model = model_or_404(ctx, ws, model_id)
    if body.format == "ros2-pkg":
        raise ValidationFailed("format: ros2-pkg is not supported yet by this backend; "
                               "use onnx")
    if body.format != "onnx":
        raise ValidationFailed(f"format: unknown {body.format!r}; expected onnx or ros2-pkg")
    version = (body.version or "").strip() or model["active_version"]
    if not version:
        raise Conflict(f"model {model_id} has no active version; promote one or name "
                       "a version")
    run = next((r for r in ctx.store.list_runs(model_id) if r["version"] == version), None)
    if run is None:
        raise NotFound(f"version {version!r} not found for model {model_id}")
    if run["status"] != "complete":
        raise Conflict(f"version {version} is {run['status']}, not complete; nothing to export")
    path = ctx.settings.artifacts_dir / model_id / version / "model.onnx"
    if not path.is_file():
        raise NotFound(f"the artifact of {model_id} {version} is missing")
    filename = f"{model_id}_{version}.onnx"
    expires = int(time.time()) + ctx.settings.download_ttl_s
    sig = security.sign(ctx.secret, filename, expires)
    base = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
    return {"download_url": f"{base}/downloads/{filename}?expires={expires}&sig={sig}",
            "expires_at": iso(expires), "format": "onnx",
            "size_mb": round(path.stat().st_size / 1e6, 3), "sha256": run["sha256"],
            "version": version}


@router.get("/downloads/{filename}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download(filename: str, ctx: Ctx, expires: str = "", sig: str = "") -> FileResponse:
    """The file behind an export's download_url (signed; no key needed)."""
    if not expires.isdigit() or not security.verify(ctx.secret, filename, int(expires), sig,
                                                    time.time()):
        raise Forbidden("download link expired or invalid; request the export again")
    m = FILENAME.match(filename)
    if m is None:
        raise NotFound(f"no such download {filename}")
    model_id, version = m.groups()
    path = ctx.settings.artifacts_dir / model_id / version / "model.onnx"
    if ctx.store.model_by_id(model_id) is None or not path.is_file():
        raise NotFound(f"{filename} no longer exists")
    return FileResponse(path, media_type="application/octet-stream", filename=filename)
