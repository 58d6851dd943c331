"""A typed, synchronous client for the Kairo Models API (docs/api.md).

    client = KairoApiClient("http://127.0.0.1:8080", load_api_key(), timeout_s=5)
    model = client.get_model("mdl_abc123")

Every call has a deadline: `timeout_s` bounds the whole call, retries
included. Retries, with exponential backoff, happen only where repeating is
safe: on 429 and 503 (the server refused the request; Retry-After is
honoured when it fits the deadline), on connection failures before the
request was sent, and, for idempotent calls (GET, DELETE, cancel, export,
downloads), also on failures after it was sent. A POST train, deployment,
or a deployment's promote or rollback that may have reached the server is
never repeated (a second one would start a second run or deployment, or
answer 409 for the first's effect); a heartbeat is never repeated at all
(the next one follows within a period).

The client is thread-safe: one instance serves every callback of a node.
The key is sent to the API's own origin only, never to a download URL.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json as json_module
import logging
import os
import pathlib
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpx

from kairo_ros.api.credentials import ApiKey
from kairo_ros.api.errors import (
    KairoApiError,
    KairoArgumentError,
    KairoConnectionError,
    KairoError,
    KairoIntegrityError,
    KairoRateLimitedError,
    KairoResponseError,
    api_error_class,
)
from kairo_ros.api.types import (
    DEPLOYMENT_MODES,
    EXPORT_FORMATS,
    Assignment,
    Dataset,
    Deployment,
    DeploymentRequest,
    ExportLink,
    Model,
    Page,
    Robot,
    Run,
    TrainAccepted,
    TrainRequest,
)
from kairo_ros.files import usual_file_mode

log = logging.getLogger("kairo_ros.api")
T = TypeVar("T")

# Statuses that say "not done, come back later" for any method.
_REFUSED = frozenset({429, 503})
# Gateway statuses: the request may have been processed, so idempotent calls only.
_GATEWAY = frozenset({502, 504})
# Raised before a byte of the request left this machine.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a retryable call is repeated (within its deadline)."""

    attempts: int = 4
    backoff_s: float = 0.2
    max_backoff_s: float = 2.0
    # Cap on one try's network waits; None lets one try use what is left of the deadline.
    attempt_timeout_s: float | None = None

    def attempt_timeout(self, remaining_s: float) -> float:
        return remaining_s if self.attempt_timeout_s is None else min(remaining_s, self.attempt_timeout_s)

    def delay_s(self, attempt: int) -> float:
        """Backoff before try `attempt + 1` (attempt counts from 1)."""
        return float(min(self.max_backoff_s, self.backoff_s * (2 ** (attempt - 1))))


@dataclass(frozen=True)
class DownloadResult:
    path: pathlib.Path
    sha256: str
    size_bytes: int


def display_url(url: str) -> str:
    """`url` without its query and fragment (a signed link's signature is a secret)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


class _Retry(Exception):
    """Internal: this try failed in a way worth another; `error` is what to raise if none is left."""

    def __init__(self, error: KairoError, delay_s: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay_s = delay_s


class KairoApiClient:
    """The Models API: one method per endpoint, typed answers, KairoError on failure."""

    def __init__(self, base_url: str, api_key: ApiKey | str, timeout_s: float = 10.0,
                 retry: RetryPolicy | None = None, download_deadline_s: float = 600.0,
                 user_agent: str = "kairo_ros") -> None:
        if not base_url.startswith(("http://", "https://")):
            raise KairoArgumentError(f"API URL {base_url!r} must start with http:// or https://")
        if timeout_s <= 0 or download_deadline_s <= 0:
            raise KairoArgumentError("timeout_s and download_deadline_s must be positive")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.download_deadline_s = float(download_deadline_s)
        self.retry = retry or RetryPolicy()
        self._key = api_key if isinstance(api_key, ApiKey) else ApiKey(api_key)
        self._api = httpx.Client(base_url=self.base_url, follow_redirects=False, headers={
            "Authorization": f"Bearer {self._key.reveal()}", "User-Agent": user_agent,
            "Accept": "application/json"})
        # Signed download links need no key; they may live on another host.
        self._downloads = httpx.Client(follow_redirects=True, headers={"User-Agent": user_agent})

    def __repr__(self) -> str:
        return f"KairoApiClient(base_url={self.base_url!r}, timeout_s={self.timeout_s:g})"

    def __enter__(self) -> KairoApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()
        self._downloads.close()

    # --- endpoints ---------------------------------------------------------------
    def health(self, timeout_s: float | None = None) -> dict[str, Any]:
        """GET /health: `{"status": "ok"}` when the backend serves."""
        return dict(self._call("GET", "/health", dict, idempotent=True, timeout_s=timeout_s))

    def list_models(self, timeout_s: float | None = None) -> Page[Model]:
        return self._call("GET", "/v1/models", lambda r: Page.from_json(r, Model.from_json),
                          idempotent=True, timeout_s=timeout_s)

    def get_model(self, model_id: str, timeout_s: float | None = None) -> Model:
        return self._call("GET", f"/v1/models/{_seg('model_id', model_id)}", Model.from_json,
                          idempotent=True, timeout_s=timeout_s)

    def train(self, request: TrainRequest, timeout_s: float | None = None) -> TrainAccepted:
        """POST /v1/models/train. Never repeated once it may have reached the server."""
        for name in ("dataset_id", "robot_id", "task"):
            if not getattr(request, name).strip():
                raise KairoArgumentError(f"{name} is empty; the API requires it")
        return self._call("POST", "/v1/models/train", TrainAccepted.from_json, json=request.to_json(),
                          idempotent=False, timeout_s=timeout_s)

    def list_runs(self, model_id: str, timeout_s: float | None = None) -> Page[Run]:
        return self._call("GET", f"/v1/models/{_seg('model_id', model_id)}/runs",
                          lambda r: Page.from_json(r, Run.from_json), idempotent=True, timeout_s=timeout_s)

    def get_run(self, model_id: str, run_id: str, timeout_s: float | None = None) -> Run:
        return self._call("GET", f"/v1/models/{_seg('model_id', model_id)}/runs/{_seg('run_id', run_id)}",
                          Run.from_json, idempotent=True, timeout_s=timeout_s)

    def cancel_run(self, model_id: str, run_id: str, timeout_s: float | None = None) -> Run:
        """POST .../cancel: the run, now `cancelled`; KairoConflictError when it had already finished."""
        path = f"/v1/models/{_seg('model_id', model_id)}/runs/{_seg('run_id', run_id)}/cancel"
        return self._call("POST", path, Run.from_json, idempotent=True, timeout_s=timeout_s)

    def promote(self, model_id: str, version: str, timeout_s: float | None = None) -> Model:
        """POST .../promote: the model with `version` active."""
        return self._call("POST", f"/v1/models/{_seg('model_id', model_id)}/promote", Model.from_json,
                          json={"version": _nonempty("version", version)}, idempotent=False,
                          timeout_s=timeout_s)

    def export(self, model_id: str, format: str = "onnx", version: str = "",
               timeout_s: float | None = None) -> ExportLink:
        """POST .../export: a signed download link; `version` empty means the active one."""
        if format not in EXPORT_FORMATS:
            raise KairoArgumentError(f"export format {format!r} is unknown; use one of {', '.join(EXPORT_FORMATS)}")
        body: dict[str, Any] = {"format": format}
        if version:
            body["version"] = version
        return self._call("POST", f"/v1/models/{_seg('model_id', model_id)}/export", ExportLink.from_json,
                          json=body, idempotent=True, timeout_s=timeout_s)

    def delete_model(self, model_id: str, timeout_s: float | None = None) -> None:
        self._call("DELETE", f"/v1/models/{_seg('model_id', model_id)}", lambda _r: None,
                   idempotent=True, timeout_s=timeout_s)

    def list_datasets(self, timeout_s: float | None = None) -> Page[Dataset]:
        return self._call("GET", "/v1/datasets", lambda r: Page.from_json(r, Dataset.from_json),
                          idempotent=True, timeout_s=timeout_s)

    def get_dataset(self, dataset_id: str, timeout_s: float | None = None) -> Dataset:
        return self._call("GET", f"/v1/datasets/{_seg('dataset_id', dataset_id)}", Dataset.from_json,
                          idempotent=True, timeout_s=timeout_s)

    def upload_dataset(self, path: str | os.PathLike[str], features: str | Mapping[str, Any], name: str = "",
                       timeout_s: float | None = None) -> Dataset:
        """POST /v1/datasets: a dataset file (an `.npz`, or a rosbag2 recording: `.mcap`, `.zip`, `.tar.gz`)
        and its features document, as multipart `file`, `features` and `name`; the new dataset.

        Streamed from disk. Never repeated once the body may have reached the
        server (that could make two datasets); `timeout_s` bounds the whole upload.
        """
        upload = pathlib.Path(path)
        if not upload.is_file():
            raise KairoArgumentError(f"dataset file {str(upload)!r} is not a file")
        text = features if isinstance(features, str) else json_module.dumps(features)
        form = {"features": text, "name": name.strip()}
        return self._call("POST", "/v1/datasets", Dataset.from_json, idempotent=False, upload=upload, form=form,
                          timeout_s=timeout_s)

    # --- the fleet ----------------------------------------------------------------
    def heartbeat(self, robot_id: str, report: Mapping[str, Any],
                  timeout_s: float | None = None) -> Assignment | None:
        """POST /v1/robots/{robot_id}/heartbeat: the robot's report (docs: the fleet contract); the
        robot's assignment for the model it names, None when it names none. One try only: the next
        heartbeat, a period later, is the retry."""
        return self._call("POST", f"/v1/robots/{_seg('robot_id', robot_id)}/heartbeat",
                          Assignment.from_heartbeat_answer, json=dict(report), idempotent=False,
                          timeout_s=timeout_s, retry=False)

    def assignment(self, model_id: str, robot_id: str, timeout_s: float | None = None) -> Assignment:
        """GET .../assignment: what `robot_id` must serve of `model_id` (its deployment's pin, else the
        active version); KairoConflictError (no_active_version) when there is neither."""
        return self._call("GET", f"/v1/models/{_seg('model_id', model_id)}/assignment", Assignment.from_json,
                          params={"robot_id": _nonempty("robot_id", robot_id)}, idempotent=True,
                          timeout_s=timeout_s)

    def list_robots(self, timeout_s: float | None = None) -> Page[Robot]:
        return self._call("GET", "/v1/robots", lambda r: Page.from_json(r, Robot.from_json),
                          idempotent=True, timeout_s=timeout_s)

    def get_robot(self, robot_id: str, timeout_s: float | None = None) -> Robot:
        return self._call("GET", f"/v1/robots/{_seg('robot_id', robot_id)}", Robot.from_json,
                          idempotent=True, timeout_s=timeout_s)

    def create_deployment(self, model_id: str, request: DeploymentRequest,
                          timeout_s: float | None = None) -> Deployment:
        """POST .../deployments. Never repeated once it may have reached the server."""
        _nonempty("version", request.version)
        if request.mode not in DEPLOYMENT_MODES:
            raise KairoArgumentError(f"deployment mode {request.mode!r} is unknown; use one of "
                                     f"{', '.join(DEPLOYMENT_MODES)}")
        if request.robots and request.percent is not None:
            raise KairoArgumentError("name the robots or a percent, not both")
        return self._call("POST", f"/v1/models/{_seg('model_id', model_id)}/deployments", Deployment.from_json,
                          json=request.to_json(), idempotent=False, timeout_s=timeout_s)

    def list_deployments(self, model_id: str, timeout_s: float | None = None) -> Page[Deployment]:
        return self._call("GET", f"/v1/models/{_seg('model_id', model_id)}/deployments",
                          lambda r: Page.from_json(r, Deployment.from_json), idempotent=True, timeout_s=timeout_s)

    def get_deployment(self, model_id: str, deployment_id: str, timeout_s: float | None = None) -> Deployment:
        return self._call("GET", self._deployment_path(model_id, deployment_id), Deployment.from_json,
                          idempotent=True, timeout_s=timeout_s)

    def promote_deployment(self, model_id: str, deployment_id: str, timeout_s: float | None = None) -> Deployment:
        """POST .../promote: the deployment's version becomes the model's active one (the whole fleet)."""
        return self._call("POST", self._deployment_path(model_id, deployment_id) + "/promote",
                          Deployment.from_json, idempotent=False, timeout_s=timeout_s)

    def rollback_deployment(self, model_id: str, deployment_id: str, timeout_s: float | None = None) -> Deployment:
        """POST .../rollback: the deployment ends; its robots fall back to the model's active version."""
        return self._call("POST", self._deployment_path(model_id, deployment_id) + "/rollback",
                          Deployment.from_json, idempotent=False, timeout_s=timeout_s)

    @staticmethod
    def _deployment_path(model_id: str, deployment_id: str) -> str:
        return f"/v1/models/{_seg('model_id', model_id)}/deployments/{_seg('deployment_id', deployment_id)}"

    # --- downloads -----------------------------------------------------------------
    def download(self, url: str, dest_path: str | os.PathLike[str], expected_sha256: str | None,
                 on_progress: ProgressCallback | None = None, timeout_s: float | None = None,
                 deadline_s: float | None = None) -> DownloadResult:
        """Fetch `url` (absolute, or relative to the API) to `dest_path`, atomically.

        The bytes go to a temporary file beside `dest_path`, are checked
        against `expected_sha256` (None skips the check), then renamed into
        place: `dest_path` is either the whole verified file or untouched.
        `on_progress(bytes_received, bytes_total)` is called per chunk
        (`bytes_total` 0 when unknown); an exception raised from it aborts
        the download. `timeout_s` bounds each network wait, `deadline_s` the
        whole download, retries included.
        """
        absolute = urljoin(self.base_url + "/", url)
        shown = display_url(absolute)
        if not absolute.startswith(("http://", "https://")):
            raise KairoArgumentError(f"download URL {shown!r} must be http:// or https://")
        expected = expected_sha256.strip().lower() if expected_sha256 is not None else None
        if expected is not None and (len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected)):
            raise KairoArgumentError("expected_sha256 must be 64 hex digits")
        dest = pathlib.Path(dest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        op_timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + (self.download_deadline_s if deadline_s is None else deadline_s)

        def attempt(remaining: float) -> DownloadResult:
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            tmp = pathlib.Path(tmp_name)
            try:
                os.fchmod(fd, usual_file_mode())  # the file is the user's: not mkstemp's 0600
                digest = hashlib.sha256()
                received = 0
                timeout = httpx.Timeout(min(op_timeout, remaining))
                with os.fdopen(fd, "wb") as out, self._downloads.stream("GET", absolute, timeout=timeout) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        self._raise_for_status(resp, "GET", shown, idempotent=True)
                    total = int(resp.headers.get("Content-Length") or 0)
                    for chunk in resp.iter_bytes(1 << 16):
                        if time.monotonic() > deadline:
                            raise httpx.ReadTimeout("download deadline passed")
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        if on_progress is not None:
                            on_progress(received, total)
                    out.flush()
                    os.fsync(out.fileno())
                actual = digest.hexdigest()
                if expected is not None and actual != expected:
                    raise KairoIntegrityError(shown, expected, actual)
                os.replace(tmp, dest)
                return DownloadResult(dest, actual, received)
            finally:
                tmp.unlink(missing_ok=True)

        return self._with_retries("GET", shown, attempt, idempotent=True, deadline=deadline)

    # --- plumbing --------------------------------------------------------------------
    def _call(self, method: str, path: str, parse: Callable[[Any], T], *, idempotent: bool,
              json: Any = None, timeout_s: float | None = None, upload: pathlib.Path | None = None,
              form: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
              retry: bool = True) -> T:
        """One API call; `upload` and `form` make it multipart (the file part named `file`, read from disk).
        `retry` False: one try, whatever the failure."""
        shown = self.base_url + path
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)

        def attempt(remaining: float) -> T:
            with contextlib.ExitStack() as files:
                parts = None if upload is None else {
                    "file": (upload.name, files.enter_context(upload.open("rb")), "application/octet-stream")}
                response = self._api.request(method, path, json=json, files=parts, data=form, params=params,
                                             timeout=httpx.Timeout(remaining))
            self._raise_for_status(response, method, shown, idempotent)
            if response.status_code == 204 or not response.content:
                body: Any = None
            else:
                try:
                    body = response.json()
                except ValueError as exc:
                    raise KairoResponseError(f"{method} {shown} answered {response.status_code} "
                                             f"with a body that is not JSON") from exc
            try:
                return parse(body)
            except (ValueError, TypeError) as exc:
                raise KairoResponseError(f"{method} {shown} answered with an unexpected body: {exc}") from exc

        return self._with_retries(method, shown, attempt, idempotent=idempotent, deadline=deadline,
                                  attempts=None if retry else 1)

    def _with_retries(self, method: str, shown: str, attempt: Callable[[float], T], *,
                      idempotent: bool, deadline: float, attempts: int | None = None) -> T:
        """Run `attempt(remaining_s)` until it succeeds, may not be repeated, or time is up."""
        started = time.monotonic()
        tries = 0
        while True:
            tries += 1
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise KairoConnectionError(shown, "no answer before the deadline")
                try:
                    return attempt(self.retry.attempt_timeout(remaining))
                except _NOT_SENT as exc:
                    raise _Retry(KairoConnectionError(shown, _reason(exc))) from exc
                except httpx.TransportError as exc:
                    broken = KairoConnectionError(shown, _reason(exc))
                    if not idempotent:
                        raise broken from exc
                    raise _Retry(broken) from exc
            except _Retry as retry:
                delay = retry.delay_s if retry.delay_s is not None else self.retry.delay_s(tries)
                elapsed = time.monotonic() - started
                if tries >= (attempts or self.retry.attempts) or time.monotonic() + delay >= deadline:
                    error: KairoError = retry.error
                    if isinstance(error, KairoConnectionError):
                        error = KairoConnectionError(shown, f"{error.reason}, for {elapsed:.1f} s", tries)
                    raise error from retry.__cause__
                log.debug("%s %s: %s; try %d in %.2f s", method, shown, retry.error, tries + 1, delay)
                time.sleep(delay)

    def _raise_for_status(self, response: httpx.Response, method: str, shown: str, idempotent: bool) -> None:
        status = response.status_code
        if status < 400:
            return
        code, message = self._error_body(response)
        cls = api_error_class(status)
        if cls is KairoRateLimitedError:
            error: KairoApiError = KairoRateLimitedError(status, code, message, method, shown,
                                                         _retry_after_s(response))
        else:
            error = cls(status, code, message, method, shown)
        if status in _REFUSED or (idempotent and status in _GATEWAY):
            raise _Retry(error, _retry_after_s(response))
        raise error

    def _error_body(self, response: httpx.Response) -> tuple[str, str]:
        """(code, message) from `{"error": {"code", "message"}}`, tolerating other bodies."""
        code, message = f"http_{response.status_code}", response.reason_phrase or "error"
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                code = str(body["error"].get("code") or code)
                message = str(body["error"].get("message") or message)
            elif isinstance(body, dict) and "detail" in body:
                message = str(body["detail"])
        # A server that echoes its input must not put the key into our errors.
        return code, message.replace(self._key.reveal(), "<redacted>")[:500]


def _reason(exc: httpx.TransportError) -> str:
    kinds = {httpx.ConnectError: "connection failed", httpx.ConnectTimeout: "connect timed out",
             httpx.ReadTimeout: "no answer in time", httpx.WriteTimeout: "sending timed out",
             httpx.PoolTimeout: "no free connection in time", httpx.RemoteProtocolError: "connection broken"}
    kind = next((text for cls, text in kinds.items() if isinstance(exc, cls)), type(exc).__name__)
    detail = str(exc).strip()
    return f"{kind} ({detail})" if detail and detail != kind else kind


def _nonempty(name: str, value: str) -> str:
    if not value or not value.strip():
        raise KairoArgumentError(f"{name} is empty")
    return value.strip()


def _seg(name: str, value: str) -> str:
    """One URL path segment, quoted so an ID can never reach another route."""
    return quote(_nonempty(name, value), safe="")
