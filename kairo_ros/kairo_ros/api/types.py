"""The Models API's objects as frozen dataclasses, parsed from its JSON.

Field names follow docs/api.md. Parsing is lenient about the fields the
seed leaves out (a hosted backend may not send the additions: they get
empty defaults) and strict about types: a wrong type raises ValueError,
which the client turns into KairoResponseError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kairo_features.schema import TASKS as TASKS  # the features contract's tasks, re-exported

T = TypeVar("T")

RUN_QUEUED = "queued"
RUN_RUNNING = "running"
RUN_COMPLETE = "complete"
RUN_FAILED = "failed"
RUN_CANCELLED = "cancelled"
RUN_FINISHED = frozenset({RUN_COMPLETE, RUN_FAILED, RUN_CANCELLED})
EXPORT_FORMATS = ("onnx", "ros2-pkg")


def _obj(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what}: expected a JSON object, got {type(raw).__name__}")
    return raw


def _str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"field {key!r}: expected a string, got {type(value).__name__}")
    return value


def _num(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"field {key!r}: expected a number, got {type(value).__name__}")
    return float(value)


def _float(raw: Mapping[str, Any], key: str) -> float:
    value = _num(raw, key)
    return 0.0 if value is None else value


def _int(raw: Mapping[str, Any], key: str) -> int:
    value = _num(raw, key)
    return 0 if value is None else int(value)


def _list(raw: Mapping[str, Any], key: str, parse: Callable[[Any], T]) -> tuple[T, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"field {key!r}: expected a list, got {type(value).__name__}")
    return tuple(parse(item) for item in value)


@dataclass(frozen=True)
class Metrics:
    final_loss: float | None = None
    val_loss: float | None = None
    accuracy: float | None = None
    val_accuracy: float | None = None
    epochs_run: int = 0
    inference_latency_p99_ms: float | None = None

    @classmethod
    def from_json(cls, raw: Any) -> Metrics | None:
        if raw is None:
            return None
        m = _obj(raw, "metrics")
        return cls(_num(m, "final_loss"), _num(m, "val_loss"), _num(m, "accuracy"),
                   _num(m, "val_accuracy"), _int(m, "epochs_run"), _num(m, "inference_latency_p99_ms"))


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 0
    learning_rate: float = 0.0
    batch_size: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> TrainingConfig:
        if raw is None:
            return cls()
        c = _obj(raw, "config")
        return cls(_int(c, "epochs"), _float(c, "learning_rate"), _int(c, "batch_size"))

    def to_json(self) -> dict[str, Any]:
        """Only the values set: zero means "the backend's default"."""
        body: dict[str, Any] = {}
        if self.epochs:
            body["epochs"] = self.epochs
        if self.learning_rate:
            body["learning_rate"] = self.learning_rate
        if self.batch_size:
            body["batch_size"] = self.batch_size
        return body


@dataclass(frozen=True)
class RunProgress:
    epoch: int = 0
    epochs_total: int = 0
    loss: float | None = None
    val_loss: float | None = None
    estimated_remaining_s: float | None = None

    @classmethod
    def from_json(cls, raw: Any) -> RunProgress:
        if raw is None:
            return cls()
        p = _obj(raw, "progress")
        return cls(_int(p, "epoch"), _int(p, "epochs_total"), _num(p, "loss"), _num(p, "val_loss"),
                   _num(p, "estimated_remaining_s"))


@dataclass(frozen=True)
class Run:
    run_id: str
    model_id: str
    status: str
    started_at: str = ""
    completed_at: str = ""
    duration_s: float | None = None
    metrics: Metrics | None = None
    model_version: str = ""
    artifact_size_mb: float | None = None
    created_at: str = ""
    dataset_id: str = ""
    task: str = ""
    config: TrainingConfig = field(default_factory=TrainingConfig)
    architecture: str = ""
    position_in_queue: int = 0
    progress: RunProgress = field(default_factory=RunProgress)
    error: str = ""
    logs: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in RUN_FINISHED

    @classmethod
    def from_json(cls, raw: Any) -> Run:
        r = _obj(raw, "run")
        return cls(
            run_id=_str(r, "run_id"), model_id=_str(r, "model_id"), status=_str(r, "status"),
            started_at=_str(r, "started_at"), completed_at=_str(r, "completed_at"),
            duration_s=_num(r, "duration_s"), metrics=Metrics.from_json(r.get("metrics")),
            model_version=_str(r, "model_version"), artifact_size_mb=_num(r, "artifact_size_mb"),
            created_at=_str(r, "created_at"), dataset_id=_str(r, "dataset_id"), task=_str(r, "task"),
            config=TrainingConfig.from_json(r.get("config")), architecture=_str(r, "architecture"),
            position_in_queue=_int(r, "position_in_queue"), progress=RunProgress.from_json(r.get("progress")),
            error=_str(r, "error"), logs=_list(r, "logs", str),
        )


@dataclass(frozen=True)
class ModelVersion:
    version: str
    run_id: str = ""
    status: str = ""
    created_at: str = ""
    metrics: Metrics | None = None
    artifact_size_mb: float | None = None
    sha256: str = ""

    @classmethod
    def from_json(cls, raw: Any) -> ModelVersion:
        v = _obj(raw, "version")
        return cls(_str(v, "version"), _str(v, "run_id"), _str(v, "status"), _str(v, "created_at"),
                   Metrics.from_json(v.get("metrics")), _num(v, "artifact_size_mb"), _str(v, "sha256"))


@dataclass(frozen=True)
class Promotion:
    at: str
    from_version: str
    to_version: str

    @classmethod
    def from_json(cls, raw: Any) -> Promotion:
        p = _obj(raw, "promotion")
        return cls(_str(p, "at"), _str(p, "from"), _str(p, "to"))


@dataclass(frozen=True)
class Model:
    id: str
    name: str = ""
    task: str = ""
    status: str = ""
    active_version: str = ""
    accuracy: float | None = None
    robot_id: str = ""
    created_at: str = ""
    updated_at: str = ""
    metrics: Metrics | None = None
    versions: tuple[ModelVersion, ...] = ()
    promotions: tuple[Promotion, ...] = ()

    def version(self, name: str) -> ModelVersion | None:
        return next((v for v in self.versions if v.version == name), None)

    @classmethod
    def from_json(cls, raw: Any) -> Model:
        m = _obj(raw, "model")
        return cls(
            id=_str(m, "id"), name=_str(m, "name"), task=_str(m, "task"), status=_str(m, "status"),
            active_version=_str(m, "active_version"), accuracy=_num(m, "accuracy"),
            robot_id=_str(m, "robot_id"), created_at=_str(m, "created_at"), updated_at=_str(m, "updated_at"),
            metrics=Metrics.from_json(m.get("metrics")), versions=_list(m, "versions", ModelVersion.from_json),
            promotions=_list(m, "promotions", Promotion.from_json),
        )


@dataclass(frozen=True)
class TrainRequest:
    dataset_id: str
    robot_id: str
    task: str
    name: str = ""
    architecture: str = ""
    config: TrainingConfig = field(default_factory=TrainingConfig)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"dataset_id": self.dataset_id, "robot_id": self.robot_id, "task": self.task}
        if self.name:
            body["name"] = self.name
        if self.architecture:
            body["architecture"] = self.architecture
        config = self.config.to_json()
        if config:
            body["config"] = config
        return body


@dataclass(frozen=True)
class TrainAccepted:
    model_id: str
    run_id: str
    status: str
    position_in_queue: int = 0
    estimated_duration_s: float | None = None

    @classmethod
    def from_json(cls, raw: Any) -> TrainAccepted:
        t = _obj(raw, "train answer")
        accepted = cls(_str(t, "model_id"), _str(t, "run_id"), _str(t, "status"),
                       _int(t, "position_in_queue"), _num(t, "estimated_duration_s"))
        if not accepted.model_id or not accepted.run_id:
            raise ValueError("train answer: model_id and run_id are required")
        return accepted


@dataclass(frozen=True)
class ExportLink:
    download_url: str
    expires_at: str = ""
    format: str = ""
    size_mb: float | None = None
    sha256: str = ""
    version: str = ""

    @classmethod
    def from_json(cls, raw: Any) -> ExportLink:
        e = _obj(raw, "export answer")
        link = cls(_str(e, "download_url"), _str(e, "expires_at"), _str(e, "format"), _num(e, "size_mb"),
                   _str(e, "sha256"), _str(e, "version"))
        if not link.download_url:
            raise ValueError("export answer: download_url is required")
        return link


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str = ""
    task: str = ""
    samples: int = 0
    features: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @classmethod
    def from_json(cls, raw: Any) -> Dataset:
        d = _obj(raw, "dataset")
        features = d.get("features") or {}
        return cls(_str(d, "id"), _str(d, "name"), _str(d, "task"), _int(d, "samples"),
                   dict(_obj(features, "features")), _str(d, "created_at"))


@dataclass(frozen=True)
class Page(Generic[T]):
    """A list answer: `{data: [...], total}`."""

    data: tuple[T, ...]
    total: int

    @classmethod
    def from_json(cls, raw: Any, parse: Callable[[Any], T]) -> Page[T]:
        p = _obj(raw, "list answer")
        data = _list(p, "data", parse)
        total = _num(p, "total")
        return cls(data, len(data) if total is None else int(total))


# --- the fleet: robots, assignments, deployments ---------------------------------------------------------
DEPLOYMENT_MODES = ("active", "shadow")
DEPLOYMENT_ROLLING_OUT = "rolling_out"
DEPLOYMENT_OBSERVING = "observing"
DEPLOYMENT_COMPLETE = "complete"
DEPLOYMENT_ROLLED_BACK = "rolled_back"
DEPLOYMENT_CANCELLED = "cancelled"
DEPLOYMENT_ENDED = frozenset({DEPLOYMENT_ROLLED_BACK, DEPLOYMENT_CANCELLED})


def _opt_obj(raw: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = raw.get(key)
    return None if value is None else _obj(value, key)


@dataclass(frozen=True)
class ShadowAssignment:
    """A candidate the robot runs beside the version it serves."""

    version: str
    sha256: str = ""
    deployment_id: str = ""

    @classmethod
    def from_json(cls, raw: Any) -> ShadowAssignment:
        s = _obj(raw, "shadow assignment")
        return cls(_str(s, "version"), _str(s, "sha256"), _str(s, "deployment_id"))


@dataclass(frozen=True)
class Assignment:
    """What one robot must serve: its deployment's pin, else the model's active version."""

    model_id: str
    robot_id: str
    version: str
    sha256: str = ""
    deployment_id: str = ""
    shadow: ShadowAssignment | None = None

    @classmethod
    def from_json(cls, raw: Any) -> Assignment:
        a = _obj(raw, "assignment")
        shadow = _opt_obj(a, "shadow")
        assignment = cls(_str(a, "model_id"), _str(a, "robot_id"), _str(a, "version"), _str(a, "sha256"),
                         _str(a, "deployment_id"), ShadowAssignment.from_json(shadow) if shadow else None)
        if not assignment.model_id or not assignment.version:
            raise ValueError("assignment: model_id and version are required")
        return assignment

    @classmethod
    def from_heartbeat_answer(cls, raw: Any) -> Assignment | None:
        """The heartbeat's answer: an assignment, or `{"robot_id", "assignment": null}` when none."""
        answer = _obj(raw, "heartbeat answer")
        if "assignment" in answer and answer["assignment"] is None:
            return None
        return cls.from_json(answer)


@dataclass(frozen=True)
class RobotHealth:
    window_s: float = 0.0
    rate_hz: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    processed: int = 0
    dropped: int = 0
    errors: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> RobotHealth:
        h = _obj(raw, "health")
        return cls(_float(h, "window_s"), _float(h, "rate_hz"), _float(h, "latency_p50_ms"),
                   _float(h, "latency_p99_ms"), _int(h, "processed"), _int(h, "dropped"), _int(h, "errors"))


@dataclass(frozen=True)
class Robot:
    """A robot as it last reported (GET /v1/robots/{robot_id}); serving/shadow as sent by the robot."""

    id: str
    node: str = ""
    task: str = ""
    model_id: str = ""
    serving: Mapping[str, Any] | None = None
    health: RobotHealth | None = None
    shadow: Mapping[str, Any] | None = None
    refused: tuple[Mapping[str, Any], ...] = ()
    period_s: float = 0.0
    first_seen: str = ""
    last_seen: str = ""
    status: str = ""            # online | stale | offline

    @property
    def version(self) -> str:
        return str((self.serving or {}).get("version") or "")

    @classmethod
    def from_json(cls, raw: Any) -> Robot:
        r = _obj(raw, "robot")
        serving, health, shadow = _opt_obj(r, "serving"), _opt_obj(r, "health"), _opt_obj(r, "shadow")
        return cls(
            id=_str(r, "id"), node=_str(r, "node"), task=_str(r, "task"), model_id=_str(r, "model_id"),
            serving=dict(serving) if serving is not None else None,
            health=RobotHealth.from_json(health) if health is not None else None,
            shadow=dict(shadow) if shadow is not None else None,
            refused=_list(r, "refused", lambda item: dict(_obj(item, "refusal"))),
            period_s=_float(r, "period_s"), first_seen=_str(r, "first_seen"), last_seen=_str(r, "last_seen"),
            status=_str(r, "status"))


@dataclass(frozen=True)
class DeploymentGuard:
    """Thresholds; None leaves the API's default (for max_divergence: not checked)."""

    max_error_rate: float | None = None
    max_drop_rate: float | None = None
    max_divergence: float | None = None
    min_observation_s: float | None = None
    report_within_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if value is not None}

    @classmethod
    def from_json(cls, raw: Any) -> DeploymentGuard:
        g = _obj(raw or {}, "guard")
        return cls(_num(g, "max_error_rate"), _num(g, "max_drop_rate"), _num(g, "max_divergence"),
                   _num(g, "min_observation_s"), _num(g, "report_within_s"))


@dataclass(frozen=True)
class DeploymentRequest:
    version: str
    mode: str = "active"
    robots: tuple[str, ...] = ()            # empty and percent None: every robot that reported the model
    percent: int | None = None
    guard: DeploymentGuard = field(default_factory=DeploymentGuard)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"version": self.version, "mode": self.mode}
        if self.robots:
            body["robots"] = list(self.robots)
        if self.percent is not None:
            body["percent"] = self.percent
        guard = self.guard.to_json()
        if guard:
            body["guard"] = guard
        return body


@dataclass(frozen=True)
class DeploymentProgress:
    robot_id: str
    status: str                 # pending | serving | shadowing | failed
    version: str = ""
    reported_at: str = ""
    reason: str = ""
    shadow: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, raw: Any) -> DeploymentProgress:
        p = _obj(raw, "progress")
        shadow = _opt_obj(p, "shadow")
        return cls(_str(p, "robot_id"), _str(p, "status"), _str(p, "version"), _str(p, "reported_at"),
                   _str(p, "reason"), dict(shadow) if shadow is not None else None)


@dataclass(frozen=True)
class Deployment:
    id: str
    model_id: str
    version: str
    state: str
    mode: str = "active"
    previous_version: str = ""
    robots: tuple[str, ...] = ()
    guard: DeploymentGuard = field(default_factory=DeploymentGuard)
    reason: str = ""
    created_at: str = ""
    updated_at: str = ""
    progress: tuple[DeploymentProgress, ...] = ()

    @property
    def live(self) -> bool:
        return self.state not in DEPLOYMENT_ENDED

    @classmethod
    def from_json(cls, raw: Any) -> Deployment:
        d = _obj(raw, "deployment")
        deployment = cls(
            id=_str(d, "id"), model_id=_str(d, "model_id"), version=_str(d, "version"), state=_str(d, "state"),
            mode=_str(d, "mode") or "active", previous_version=_str(d, "previous_version"),
            robots=_list(d, "robots", str), guard=DeploymentGuard.from_json(d.get("guard")),
            reason=_str(d, "reason"), created_at=_str(d, "created_at"), updated_at=_str(d, "updated_at"),
            progress=_list(d, "progress", DeploymentProgress.from_json))
        if not deployment.id or not deployment.state:
            raise ValueError("deployment: id and state are required")
        return deployment
