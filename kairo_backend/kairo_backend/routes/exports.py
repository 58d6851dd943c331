from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from kairo_backend.core import security
from kairo_backend.core.util import iso
from kairo_backend.deps import Ctx, Workspace, model_or_404
from kairo_backend.errors import (
    ArtifactCorrupted,
    Conflict,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from kairo_backend.exporters import ros2_pkg
from kairo_backend.exporters.archive import write_atomically
from kairo_backend.schemas.common import ERROR_RESPONSES
from kairo_backend.schemas.models import ExportPublic, ExportRequest
from kairo_backend.services import model_files, verified_artifact
from kairo_backend.store.rows import ModelRow, RunRow

router = APIRouter(tags=["exports"], responses=ERROR_RESPONSES)

EXTENSIONS = {"onnx": ".onnx", "ros2-pkg": ".tar.gz"}
ARTIFACTS = {".onnx": "model.onnx", ".tar.gz": "ros2_pkg.tar.gz"}  # download extension -> file
PACKAGE_ARCHIVE = ARTIFACTS[".tar.gz"]
FILENAME = re.compile(r"^(mdl_[a-z0-9]+)_(v[0-9]+)(\.onnx|\.tar\.gz)$")


@router.post("/v1/models/{model_id}/export", response_model=ExportPublic)
def export(model_id: str, body: ExportRequest, request: Request, ctx: Ctx,
           ws: Workspace) -> dict[str, Any]:
    """Export a version (ONNX file or ROS 2 package) behind a signed link valid for 24 hours.

    The model file is checked against the sha256 recorded at training first:
    a corrupted one answers 409 `artifact_corrupted` and is marked on the version.
    """
    if body.format not in EXTENSIONS:
        raise ValidationFailed(f"format: unknown {body.format!r}; expected onnx or ros2-pkg")
    with model_files.exporting(model_id):  # a delete waits for this export, or it 404s
        model = model_or_404(ctx, ws, model_id)
        version = (body.version or "").strip() or model["active_version"]
        if not version:
            raise Conflict(f"model {model_id} has no active version; promote one or name "
                           "a version")
        run = next((r for r in ctx.store.list_runs(model_id) if r["version"] == version), None)
        if run is None:
            raise NotFound(f"version {version!r} not found for model {model_id}")
        if run["status"] != "complete":
            raise Conflict(f"version {version} is {run['status']}, not complete; "
                           "nothing to export")
        onnx_path = verified_artifact(ctx.settings, ctx.store, run)
        if body.format == "onnx":
            path, sha256 = onnx_path, run["sha256"]
        else:
            path = onnx_path.parent / PACKAGE_ARCHIVE
            sha256 = _build_package(model, run, version, onnx_path, path)
        size_mb = round(path.stat().st_size / 1e6, 3)
    filename = f"{model_id}_{version}{EXTENSIONS[body.format]}"
    expires = int(time.time()) + ctx.settings.download_ttl_s
    sig = security.sign(ctx.secret, filename, expires)
    base = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
    return {"download_url": f"{base}/downloads/{filename}?expires={expires}&sig={sig}",
            "expires_at": iso(expires), "format": body.format, "size_mb": size_mb,
            "sha256": sha256, "version": version}


def _build_package(model: ModelRow, run: RunRow, version: str, onnx_path: Path,
                   dest: Path) -> str:
    """Write the version's ROS 2 package archive to `dest` (atomically), and its
    sha256 beside it for the download to check; the sha256.

    Rebuilt on every export: the archive is deterministic, so a link handed
    out earlier still downloads the bytes its sha256 names.
    """
    onnx = onnx_path.read_bytes()
    if hashlib.sha256(onnx).hexdigest() != run["sha256"]:  # changed since it was verified
        raise ArtifactCorrupted(f"the artifact of {model['id']} {version} does not match its "
                                "recorded sha256; train the version again")
    features_path = onnx_path.parent / "features.json"
    features = json.loads(features_path.read_text()) if features_path.is_file() else None
    data = ros2_pkg.build(ros2_pkg.PackageSpec(
        model_id=model["id"], version=version, name=model["name"], task=model["task"],
        robot_id=model["robot_id"], onnx=onnx, onnx_sha256=run["sha256"], features=features))
    sha256 = hashlib.sha256(data).hexdigest()
    write_atomically(data, dest)
    write_atomically(sha256.encode(), _sha256_path(dest))
    return sha256


def _sha256_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256")


@router.get("/downloads/{filename}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def download(filename: str, ctx: Ctx, expires: str = "", sig: str = "") -> Response:
    """The file behind an export's download_url (signed; no key needed).

    The bytes are checked against their recorded sha256 before they are sent;
    a corrupted file answers 409 `artifact_corrupted`.
    """
    # ASCII digits only, and few: "²" is a digit to isdigit() but not to int()
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or \
            not security.verify(ctx.secret, filename, int(expires), sig, time.time()):
        raise Forbidden("download link expired or invalid; request the export again")
    m = FILENAME.match(filename)
    if m is None:
        raise NotFound(f"no such download {filename}")
    model_id, version, extension = m.groups()
    gone = NotFound(f"{filename} no longer exists")
    with model_files.exporting(model_id):  # read whole before a delete may remove it
        model = ctx.store.model_by_id(model_id)
        run = next((r for r in ctx.store.list_runs(model_id) if r["version"] == version),
                   None) if model else None
        if run is None or run["status"] != "complete":
            raise gone
        path = ctx.settings.artifacts_dir / model_id / version / ARTIFACTS[extension]
        try:
            data = path.read_bytes()
            expected = (run["sha256"] if extension == ".onnx"
                        else _sha256_path(path).read_text().strip())
            assert expected is not None  # a complete run's sha256 is recorded with it
        except FileNotFoundError:
            raise gone from None
    actual = hashlib.sha256(data).hexdigest()
    if not data or actual != expected:
        problem = (f"{path.name} is empty (0 bytes)" if not data else
                   f"{path.name} has sha256 {actual[:12]}…, not the {expected[:12]}… recorded")
        if extension == ".onnx":
            ctx.store.mark_artifact_error(run["id"], problem)
        raise ArtifactCorrupted(f"{filename} is corrupted: {problem}; request the export "
                                "again, or train the version again")
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
