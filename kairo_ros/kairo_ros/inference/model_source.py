"""Where the served model comes from: a local file, or the API's active version through a cache.

A node with a robot_id serves that robot's assignment instead of the bare
active version: the version a live deployment pins for it (a canary), else
the active one, and, in a shadow deployment, a candidate to run beside it
(`ModelSource.shadow`).

The cache (`cache_dir`) holds `models/<model_id>/<version>.onnx`, each file
written whole (the API client downloads to a temporary file, checks its
sha256 and renames it into place), and `last_good/<source>.json`: the
version that last loaded and served, with its sha256. With the backend
unreachable the node boots from that record; a cached file whose bytes no
longer have the recorded sha256 is refused (CacheIntegrityError), offline,
and downloaded again, online.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kairo_ros.api import (
    Assignment,
    KairoApiClient,
    KairoConnectionError,
    KairoNotFoundError,
    KairoServerError,
    Model,
)
from kairo_ros.inference.errors import CacheIntegrityError, NoModelError
from kairo_ros.inference.model_session import sha256_of_file
from kairo_ros.inference.params import InferenceParams

# Errors that mean "the backend cannot answer now": the cache may stand in.
OFFLINE_ERRORS = (KairoConnectionError, KairoServerError)


@dataclass(frozen=True)
class VersionRef:
    """A model version as the API (or the cache) names it."""

    model_id: str
    version: str
    sha256: str


@dataclass(frozen=True)
class ShadowRef:
    """A candidate to run beside the served version, and the deployment that asks for it."""

    ref: VersionRef
    deployment_id: str


@dataclass(frozen=True)
class LocalModel:
    """A model file on disk, ready to load, and where it came from."""

    ref: VersionRef
    path: pathlib.Path
    from_cache: bool
    offline_reason: str = ""    # why the cache stood in for the backend, when it did


def _write_atomically(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)


class ModelCache:
    """Verified model files and the last version that served, per source."""

    def __init__(self, root: pathlib.Path, warn: Callable[[str], None]) -> None:
        self.root = root
        self._warn = warn

    def file_for(self, ref: VersionRef) -> pathlib.Path:
        return self.root / "models" / ref.model_id / f"{ref.version}.onnx"

    def verified(self, ref: VersionRef) -> pathlib.Path | None:
        """The cached file of `ref` when its bytes have `ref.sha256`; None when absent or altered."""
        path = self.file_for(ref)
        if not path.is_file() or not ref.sha256:
            return None
        actual = sha256_of_file(path)
        if actual != ref.sha256:
            self._warn(f"cache entry {path} has sha256 {actual[:12]}..., expected {ref.sha256[:12]}...: "
                       f"refusing it and downloading it again")
            return None
        return path

    def _record_path(self, source_key: str) -> pathlib.Path:
        return self.root / "last_good" / f"{source_key}.json"

    def record_good(self, source_key: str, ref: VersionRef) -> None:
        record = {"model_id": ref.model_id, "version": ref.version, "sha256": ref.sha256}
        _write_atomically(self._record_path(source_key), json.dumps(record, indent=2) + "\n")

    def last_good(self, source_key: str) -> LocalModel:
        """The last version that served for this source, verified; NoModelError or CacheIntegrityError."""
        record_path = self._record_path(source_key)
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            ref = VersionRef(str(record["model_id"]), str(record["version"]), str(record["sha256"]))
        except FileNotFoundError:
            raise NoModelError(f"nothing cached in {self.root} for {source_key}; the node needs the backend "
                               f"once to download the model") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CacheIntegrityError(f"cache record {record_path} is unreadable ({exc}); delete it and "
                                      f"reconnect to the backend") from None
        path = self.file_for(ref)
        if not path.is_file():
            raise CacheIntegrityError(f"cache entry {path} for {ref.model_id} {ref.version} is missing; "
                                      f"reconnect to the backend to download it again")
        actual = sha256_of_file(path)
        if actual != ref.sha256:
            raise CacheIntegrityError(f"cache entry {path} for {ref.model_id} {ref.version} has sha256 "
                                      f"{actual[:12]}..., recorded {ref.sha256[:12]}...: it was altered, so it "
                                      f"is refused; reconnect to the backend to download it again")
        return LocalModel(ref, path, from_cache=True)


def last_promotion_at(model: Model) -> str:
    """When `model` was last promoted (ISO 8601 UTC, comparable as text); '' when never."""
    return max((p.at for p in model.promotions), default="")


def promoted_last(models: Sequence[Model]) -> Model:
    """The model whose version was promoted last, by the promotion history's times.

    Not the newest `updated_at`: that also moves when a run is submitted or finishes.
    Ties (promotions in the same second) go to the later creation, then the id.
    """
    return max(models, key=lambda m: (last_promotion_at(m), m.created_at, m.id))


class ModelSource:
    """Resolves the node's model source to a verified local file."""

    def __init__(self, params: InferenceParams, client: KairoApiClient | None,
                 warn: Callable[[str], None]) -> None:
        self.params = params
        self.client = client
        self.cache = ModelCache(params.cache_dir, warn)
        # What the last resolve said (read by the heartbeat's thread: each replaced whole).
        self.model_id = params.model_id
        self.deployment_id = ""
        self.shadow: ShadowRef | None = None
        self._version = ""

    @property
    def key(self) -> str:
        """Names this source in the cache's last-good records."""
        if self.params.model_id:
            return self.params.model_id
        return f"{self.params.robot_id}__{self.params.task}"

    def describe(self) -> str:
        if self.params.model_path:
            return f"file {self.params.model_path}"
        if self.params.model_id:
            return f"model {self.params.model_id}"
        return f"the active {self.params.task} model of robot {self.params.robot_id}"

    def wants_event(self, model_id: str, robot_id: str, task: str, robots: Sequence[str] = ()) -> bool:
        """Whether a model event concerns the model this source serves (and, when the event names
        robots, this robot among them)."""
        if self.params.model_path:
            return False
        if robots and self.params.robot_id not in robots:
            return False
        if self.params.model_id:
            return model_id == self.params.model_id
        if model_id and model_id == self.model_id:
            return True
        return robot_id == self.params.robot_id and task == self.params.task

    def assigned(self, assignment: Assignment | None) -> bool:
        """Whether `assignment` (a heartbeat's answer) differs from what the last resolve said."""
        if assignment is None:
            return False
        shadow = assignment.shadow
        now = (assignment.version, assignment.deployment_id, shadow.version if shadow else "")
        return now != (self._version, self.deployment_id, self.shadow.ref.version if self.shadow else "")

    def _api(self) -> KairoApiClient:
        if self.client is None:
            raise NoModelError(f"{self.describe()} needs the API, and no client is configured")
        return self.client

    def _model(self) -> Model:
        api = self._api()
        if self.params.model_id:
            return api.get_model(self.params.model_id)
        candidates = [m for m in api.list_models().data
                      if m.robot_id == self.params.robot_id and m.task == self.params.task and m.active_version]
        if not candidates:
            raise NoModelError(f"no {self.params.task} model of robot {self.params.robot_id} has an active "
                               f"version; train one and promote it")
        return api.get_model(promoted_last(candidates).id)

    def _assignment(self) -> Assignment | None:
        """This robot's assignment; None from a backend without the fleet routes (404), or when the model
        is gone (the active-version path then says so)."""
        model_id = self.params.model_id or self._model().id
        try:
            return self._api().assignment(model_id, self.params.robot_id)
        except KairoNotFoundError:
            return None

    def resolve(self) -> VersionRef:
        """The version to serve, as the API says now (KairoError when it cannot say): with a robot_id,
        the robot's assignment (and its shadow candidate, kept in `shadow`); else, or from a backend
        without the fleet routes, the active version."""
        assignment = self._assignment() if self.params.robot_id else None
        if assignment is not None:
            ref = VersionRef(assignment.model_id, assignment.version, assignment.sha256)
            shadow = assignment.shadow
            self.shadow = None if shadow is None else ShadowRef(
                VersionRef(assignment.model_id, shadow.version, shadow.sha256), shadow.deployment_id)
            self.model_id, self.deployment_id, self._version = assignment.model_id, assignment.deployment_id, \
                assignment.version
            return ref
        model = self._model()
        if not model.active_version:
            raise NoModelError(f"model {model.id} has no active version; promote one")
        version = model.version(model.active_version)
        self.model_id, self.deployment_id, self._version, self.shadow = model.id, "", model.active_version, None
        return VersionRef(model.id, model.active_version, version.sha256 if version else "")

    def fetch(self, ref: VersionRef) -> LocalModel:
        """`ref` as a verified local file: from the cache when intact, else downloaded."""
        cached = self.cache.verified(ref)
        if cached is not None:
            return LocalModel(ref, cached, from_cache=True)
        link = self._api().export(ref.model_id, "onnx", ref.version)
        expected = ref.sha256 or link.sha256 or None
        result = self._api().download(link.download_url, self.cache.file_for(ref), expected)
        return LocalModel(VersionRef(ref.model_id, ref.version, result.sha256), result.path, from_cache=False)

    def boot(self) -> LocalModel:
        """The model to start with: the active version online, else the last good one cached."""
        try:
            return self.fetch(self.resolve())
        except OFFLINE_ERRORS as exc:
            cached = self.cache.last_good(self.key)
            return dataclasses.replace(cached, offline_reason=str(exc))

    def mark_good(self, local: LocalModel) -> None:
        """Record a version that loaded and serves, for an offline boot later."""
        if self.params.uses_api:
            self.cache.record_good(self.key, local.ref)
