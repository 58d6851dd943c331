"""Action `export` (ExportModel): request an export, download it verified and atomically.

Stages in feedback: requesting, downloading (bytes received / total),
verifying, writing (ros2-pkg: unpacking), done. The file appears at its
final path only whole and with the sha256 the backend stated (temporary
file, check, rename); a ros2-pkg archive is verified the same way, then
unpacked safely (`package_archive`) and the package directory appears whole.
On any failure or cancel nothing is left behind.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import tempfile
import time

from rclpy.action.server import ServerGoalHandle

from kairo_interfaces.action import ExportModel
from kairo_ros.api import EXPORT_FORMATS, DownloadResult, ExportLink, KairoApiClient, KairoError, display_url
from kairo_ros.manager.goal_action import GoalSlotAction
from kairo_ros.manager.package_archive import extract_package

_FEEDBACK_PERIOD_S = 0.1  # download progress is throttled to about 10 messages a second
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class _Cancelled(Exception):
    """Raised from the progress callback to stop a download when the goal is cancelled."""


class ExportAction(GoalSlotAction[ExportModel.Result]):
    kind = "export"
    action_type = ExportModel

    def _failed_result(self, message: str) -> ExportModel.Result:
        return ExportModel.Result(message=message)

    def _run(self, handle: ServerGoalHandle) -> ExportModel.Result:
        goal: ExportModel.Goal = handle.request
        model_id, version, fmt = goal.model_id.strip(), goal.version.strip(), goal.format.strip() or "onnx"
        output_dir = pathlib.Path(goal.output_dir.strip()).expanduser() if goal.output_dir.strip() \
            else self._params.export_dir
        problem = self._check(model_id, fmt, output_dir)
        if problem:
            self._log.warning(f"export goal aborted: {problem}")
            return self._end(handle, "abort", ExportModel.Result(format=fmt, message=problem))

        handle.publish_feedback(ExportModel.Feedback(stage="requesting"))
        try:
            link = self._backend.call(lambda api: api.export(model_id, fmt, version))
            expected = link.sha256 or self._backend.call(lambda api: _stated_sha256(api, model_id, link, version))
            if not expected:
                raise KairoError(f"the backend stated no sha256 for {model_id} {link.version or version}; "
                                 f"refusing an unverified download")
            name = _SAFE_NAME.sub("_", f"{model_id}_{link.version or version or 'active'}")
            progress = _Progress(handle)
            if fmt == "ros2-pkg":
                result = self._fetch_package(handle, link, output_dir, name, expected, progress)
            else:
                path = output_dir / f"{name}.onnx"
                result = self._backend.call(lambda api: api.download(link.download_url, path, expected, progress))
        except _Cancelled:
            self._log.info(f"export of {model_id} cancelled; nothing written")
            return self._end(handle, "canceled", ExportModel.Result(format=fmt, message="export cancelled; "
                                                                                        "nothing was written"))
        except (KairoError, OSError) as exc:
            self._log.warning(f"export of {model_id} failed: {exc}")
            return self._end(handle, "abort", ExportModel.Result(format=fmt, message=str(exc)))
        handle.publish_feedback(ExportModel.Feedback(stage="done", bytes_received=result.size_bytes,
                                                     bytes_total=result.size_bytes))
        self._log.info(f"exported {model_id} {link.version} to {result.path} ({result.size_bytes} bytes)")
        size_mb = link.size_mb if link.size_mb is not None else result.size_bytes / 1e6
        return self._end(handle, "succeed", ExportModel.Result(
            path=str(result.path), download_url=link.download_url, expires_at=link.expires_at, format=link.format
            or fmt, size_mb=float(size_mb), sha256=result.sha256,
            message=f"{model_id} {link.version} written to {result.path}, sha256 verified"))

    @staticmethod
    def _check(model_id: str, fmt: str, output_dir: pathlib.Path) -> str:
        if not model_id:
            return "model_id is empty; give the mdl_... ID of the model to export (list_models lists them)"
        if fmt not in EXPORT_FORMATS:
            return f"format {fmt!r} is unknown; use one of {', '.join(EXPORT_FORMATS)}"
        if not output_dir.is_absolute():
            return f"output_dir {str(output_dir)!r} must be an absolute path (or start with ~)"
        return ""

    def _fetch_package(self, handle: ServerGoalHandle, link: ExportLink, output_dir: pathlib.Path, name: str,
                       expected: str, progress: _Progress) -> DownloadResult:
        """Download the package archive verified into a private temporary dir, unpack it, drop the archive."""
        output_dir.mkdir(parents=True, exist_ok=True)
        scratch = pathlib.Path(tempfile.mkdtemp(dir=output_dir, prefix=".kairo-export-"))
        try:
            archive = scratch / f"{name}.tar.gz"
            fetched = self._backend.call(lambda api: api.download(link.download_url, archive, expected, progress))
            handle.publish_feedback(ExportModel.Feedback(stage="writing", bytes_received=fetched.size_bytes,
                                                         bytes_total=fetched.size_bytes))
            try:
                package = extract_package(archive, output_dir)
            except KairoError as exc:
                raise KairoError(f"refused the package archive {display_url(link.download_url)}: {exc}; "
                                 f"nothing was written to {output_dir}") from None
            return DownloadResult(package, fetched.sha256, fetched.size_bytes)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _stated_sha256(api: KairoApiClient, model_id: str, link: ExportLink, version: str) -> str:
    """A backend whose export answer lacks sha256 may still state it on the model's version."""
    model = api.get_model(model_id)
    stated = model.version(link.version or version or model.active_version)
    return stated.sha256 if stated is not None else ""


class _Progress:
    """Download progress as throttled feedback; stops the download when the goal is cancelled."""

    def __init__(self, handle: ServerGoalHandle) -> None:
        self._handle = handle
        self._last = 0.0

    def __call__(self, received: int, total: int) -> None:
        if self._handle.is_cancel_requested:
            raise _Cancelled()
        now = time.monotonic()
        finished = total > 0 and received >= total
        if finished or now - self._last >= _FEEDBACK_PERIOD_S:
            self._last = now
            self._handle.publish_feedback(ExportModel.Feedback(
                stage="verifying" if finished else "downloading", bytes_received=received, bytes_total=total))
