"""kairo_inference's parameters: the one table (SPECS) and the frozen dataclass the node reads.

SPECS drives the declaration and the checks (kairo_ros.parameters), the
launch arguments of inference.launch.py and the README table. The API key is
never a parameter: it comes from KAIRO_API_KEY or from the file
`api_key_file` names.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kairo_features.schema import TASKS  # light: no numpy, so launch files may import this table
from kairo_ros.parameters import ParameterSpec, declare, read

if TYPE_CHECKING:
    from rclpy.node import Node

    from kairo_ros.inference.guard import GuardSettings

# The launch files import this table, so the checks import the node's modules only when they run.
INPUT_QOS_CHOICES = ("sensor_data", "reliable")  # what wiring.input_qos() makes (a test keeps them equal)


def _model_file(value: str) -> str:
    from kairo_ros.inference.errors import ConfigError
    from kairo_ros.inference.package_uri import resolve_model_path

    if not value.strip():
        return ""
    try:
        path = pathlib.Path(resolve_model_path(value.strip())).expanduser()
    except ConfigError as exc:
        return str(exc)
    if not path.is_file():
        return f"model_path: {path} is not a file; give a local ONNX file or package://<package>/<path>"
    return ""


def _task(value: str) -> str:
    if value.strip() in ("", *TASKS):
        return ""
    return f"task: {value!r} must be one of {', '.join(TASKS)} (or empty)"


def _http_url(name: str) -> Any:
    def check(value: str) -> str:
        ok = value.strip().startswith(("http://", "https://"))
        return "" if ok else f"{name}: {value!r} must start with http:// or https://"
    return check


def _absolute_topic(value: str) -> str:
    return "" if value.strip().startswith("/") else f"events_topic: {value!r} must be an absolute topic name"


def _providers(value: tuple[str, ...]) -> str:
    from kairo_ros.inference.errors import ConfigError
    from kairo_ros.inference.model_session import resolve_providers

    try:
        resolve_providers([p.strip() for p in value if p.strip()])
    except ConfigError as exc:
        return str(exc)
    return ""


def _topic_remaps(value: tuple[str, ...]) -> str:
    from kairo_ros.inference.errors import ConfigError
    from kairo_ros.inference.wiring import parse_topic_remaps

    try:
        parse_topic_remaps(value)
    except ConfigError as exc:
        return str(exc)
    return ""


def _output_limits(value: tuple[str, ...]) -> str:
    from kairo_ros.inference.errors import ConfigError
    from kairo_ros.inference.guard import parse_output_limits

    try:
        parse_output_limits(value)
    except ConfigError as exc:
        return str(exc)
    return ""


def _stale_timeout(value: float) -> str:
    if value == STALE_TASK_DEFAULT or value >= 0:
        return ""
    return f"stale_input_timeout_s: {value!r} must be -1 (the task's default), 0 (off) or a positive number of seconds"


def _score_threshold(value: float) -> str:
    if value == FEATURES_SCORE_THRESHOLD or 0 <= value <= 1:
        return ""
    return f"score_threshold: {value!r} must be -1 (the model's own) or a score from 0 to 1"


FEATURES_SCORE_THRESHOLD = -1.0  # as kairo_ros.inference.wiring has it
# As kairo_ros.inference.guard has them (a test keeps them equal); this table must not import numpy.
OUT_OF_ENVELOPE_CHOICES = ("drop", "clamp", "pass")
STALE_TASK_DEFAULT = -1.0

DEFAULT_API_URL = "http://127.0.0.1:8080"
DEFAULT_CACHE_DIR = "~/.cache/kairo/models"
DEFAULT_EVENTS_TOPIC = "/kairo/model_events"

# Read when the node configures; model_path also while it serves a file (a hot swap to the new file).
SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("model_path", "", "Local ONNX file to serve (no backend needed), or package://<package>/<path> "
                  "in an installed package; wins over model_id and robot_id+task. Set while serving a file: "
                  "hot-swaps to the new file.", check=_model_file, check_text="empty, or an existing file"),
    ParameterSpec("model_id", "", "Serve the active version of this model (mdl_...); wins over robot_id+task."),
    ParameterSpec("robot_id", "", "This robot (rob_...). With task alone: serve the robot's active model for the "
                  "task. Either way, serve what the fleet API assigns this robot (a deployment's version and "
                  "shadow candidate, else the active version) and send heartbeats."),
    ParameterSpec("task", "", "With robot_id: the task of the model to serve.", check=_task,
                  check_text="empty | " + " | ".join(TASKS)),
    ParameterSpec("api_url", DEFAULT_API_URL, "Base URL of the Kairo Models API, without /v1.",
                  check=_http_url("api_url"), check_text="http(s)://..."),
    ParameterSpec("api_key_file", "", "File holding the API key; empty: the KAIRO_API_KEY environment variable."),
    ParameterSpec("cache_dir", DEFAULT_CACHE_DIR, "Where downloaded models are kept, sha256-verified; the node "
                  "boots from it when the backend is unreachable."),
    ParameterSpec("poll_period_s", 30.0, "Seconds between checks for a newly promoted version; 0: only on "
                  "promotion events.", range=(0.0, 86400.0)),
    ParameterSpec("request_timeout_s", 10.0, "Deadline of each API call in seconds, retries included.",
                  range=(0.1, 600.0)),
    ParameterSpec("providers", (), "onnxruntime execution providers in order (e.g. [cuda, cpu]); empty: CUDA "
                  "when available, else CPU. CPU is always the last fallback.", check=_providers,
                  check_text="providers this onnxruntime has"),
    ParameterSpec("intra_op_threads", 1, "onnxruntime intra-op threads; 0: onnxruntime's default (all cores).",
                  range=(0, 256)),
    ParameterSpec("autostart", True, "Configure and activate at start, without a lifecycle manager.",
                  read_only=True),
    ParameterSpec("input_qos", "sensor_data", "QoS of the input subscriptions: sensor_data (best effort, depth "
                  "1: the newest reading wins) or reliable (every unread message is kept).",
                  choices=INPUT_QOS_CHOICES),
    ParameterSpec("events_topic", DEFAULT_EVENTS_TOPIC, "kairo_interfaces/ModelEvent topic; a promotion of the "
                  "served model triggers a hot swap.", check=_absolute_topic, check_text="an absolute topic"),
    ParameterSpec("topic_remaps", (), "Topic overrides 'name:=/topic', name an input or output of the model (or "
                  "its default topic), e.g. [joint_positions:=/arm/joint_states].", check=_topic_remaps,
                  check_text="name:=/topic items"),
    ParameterSpec("out_of_envelope", "drop", "An input value outside the model's envelope (the training data's "
                  "range, widened by envelope_margin): drop the message, clamp it to the envelope, or pass it "
                  "as it is; counted either way. Non-finite inputs are always dropped.",
                  choices=OUT_OF_ENVELOPE_CHOICES),
    ParameterSpec("envelope_margin", 0.1, "How far past the recorded range a value is still inside the "
                  "envelope, as a fraction of the range's width (per value; inputs and outputs).",
                  range=(0.0, 100.0)),
    ParameterSpec("output_limits", (), "Operator limits that replace the output envelope, to narrow or widen "
                  "it: 'name:min:max' for every value of an output, 'name[i]:min:max' for its value i, e.g. "
                  "[cmd_vel[0]:-0.5:0.5]. Outputs past their limits are clamped (and flagged in ~/prediction).",
                  check=_output_limits, check_text="name:min:max or name[i]:min:max items"),
    ParameterSpec("score_threshold", FEATURES_SCORE_THRESHOLD, "Detection models: publish only detections scoring "
                  "at least this (0 to 1); -1: the model's own score_threshold (its features).",
                  range=(-1.0, 1.0), check=_score_threshold, check_text="-1, or 0 to 1"),
    ParameterSpec("stale_input_timeout_s", STALE_TASK_DEFAULT, "Once no command went out for this long (the "
                  "trigger input stopped), send the task's safe output once: a zero command for navigation; "
                  "other tasks only report it. -1: the task's default (navigation 0.5 s, others off); 0: off.",
                  range=(-1.0, 3600.0), check=_stale_timeout, check_text="-1, or 0 and above"),
    ParameterSpec("heartbeat_period_s", 5.0, "With a robot_id: seconds between heartbeats to the fleet API (what "
                  "the node serves, its health over the last 10 s, its shadow results); the answer says which "
                  "version to serve (canary, shadow, rollback). 0: no heartbeats.", range=(0.0, 3600.0)),
    ParameterSpec("shadow_tolerance", 0.05, "In shadow mode, an output value of the candidate within this "
                  "absolute difference of the serving model's counts as agreeing, for a model whose features "
                  "carry no tolerance (they usually do: the training accuracy threshold, in output units).",
                  range=(0.0, 1e9)),
)
DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in SPECS}


@dataclass(frozen=True)
class InferenceParams:
    """The values the node works with; each default is its spec's."""

    model_path: str = DEFAULTS["model_path"]
    model_id: str = DEFAULTS["model_id"]
    robot_id: str = DEFAULTS["robot_id"]
    task: str = DEFAULTS["task"]
    api_url: str = DEFAULTS["api_url"]
    api_key_file: str = DEFAULTS["api_key_file"]
    cache_dir: pathlib.Path = pathlib.Path(DEFAULTS["cache_dir"]).expanduser()
    poll_period_s: float = DEFAULTS["poll_period_s"]
    request_timeout_s: float = DEFAULTS["request_timeout_s"]
    providers: tuple[str, ...] = DEFAULTS["providers"]
    intra_op_threads: int = DEFAULTS["intra_op_threads"]
    autostart: bool = DEFAULTS["autostart"]
    input_qos: str = DEFAULTS["input_qos"]
    events_topic: str = DEFAULTS["events_topic"]
    topic_remaps: tuple[tuple[str, str], ...] = ()
    out_of_envelope: str = DEFAULTS["out_of_envelope"]
    envelope_margin: float = DEFAULTS["envelope_margin"]
    output_limits: tuple[str, ...] = DEFAULTS["output_limits"]
    score_threshold: float = DEFAULTS["score_threshold"]
    stale_input_timeout_s: float = DEFAULTS["stale_input_timeout_s"]
    heartbeat_period_s: float = DEFAULTS["heartbeat_period_s"]
    shadow_tolerance: float = DEFAULTS["shadow_tolerance"]

    def __post_init__(self) -> None:
        from kairo_ros.inference.errors import ConfigError

        # Each value alone is checked when it is set (SPECS); what is left is how they go together.
        # Precedence: model_path, then model_id, then robot_id + task (a launch file may pass all).
        if not (self.model_path or self.model_id or (self.robot_id and self.task)):
            missing = "task" if self.robot_id else "robot_id" if self.task else "model_path, model_id"
            raise ConfigError(f"{missing}: set model_path (a local ONNX file), model_id, or robot_id and task, "
                              f"so the node knows which model to serve")
        if not (self.model_path or self.model_id) and self.task not in TASKS:
            raise ConfigError(f"task: {self.task!r} must be one of {', '.join(TASKS)}")
        if self.input_qos not in INPUT_QOS_CHOICES:
            raise ConfigError(f"input_qos: {self.input_qos!r} must be one of {', '.join(INPUT_QOS_CHOICES)}")

    @property
    def guard_settings(self) -> GuardSettings:
        from kairo_ros.inference.guard import GuardSettings, parse_output_limits

        return GuardSettings(self.out_of_envelope, self.envelope_margin, parse_output_limits(self.output_limits))

    @property
    def uses_api(self) -> bool:
        return not self.model_path

    @property
    def sends_heartbeats(self) -> bool:
        """A node serving from the API under a robot_id reports to the fleet, unless switched off."""
        return self.uses_api and bool(self.robot_id) and self.heartbeat_period_s > 0

    @property
    def remaps(self) -> dict[str, str]:
        return dict(self.topic_remaps)


def declare_parameters(node: Node) -> None:
    """Declare SPECS on the node; a bad value given at start raises ParameterError."""
    declare(node, SPECS)


def read_parameters(node: Node) -> InferenceParams:
    """The node's parameters as one checked value; ConfigError names a bad one."""
    from kairo_ros.inference.package_uri import resolve_model_path
    from kairo_ros.inference.wiring import parse_topic_remaps

    value = read(node, SPECS)
    return InferenceParams(
        model_path=resolve_model_path(value["model_path"].strip()),
        model_id=value["model_id"].strip(),
        robot_id=value["robot_id"].strip(),
        task=value["task"].strip(),
        api_url=value["api_url"].strip().rstrip("/"),
        api_key_file=value["api_key_file"].strip(),
        cache_dir=pathlib.Path(value["cache_dir"]).expanduser(),
        poll_period_s=value["poll_period_s"],
        request_timeout_s=value["request_timeout_s"],
        providers=tuple(p.strip() for p in value["providers"] if p.strip()),
        intra_op_threads=value["intra_op_threads"],
        autostart=value["autostart"],
        input_qos=value["input_qos"].strip(),
        events_topic=value["events_topic"].strip(),
        topic_remaps=tuple(sorted(parse_topic_remaps(value["topic_remaps"]).items())),
        out_of_envelope=value["out_of_envelope"].strip(),
        envelope_margin=value["envelope_margin"],
        output_limits=tuple(item.strip() for item in value["output_limits"] if item.strip()),
        score_threshold=value["score_threshold"],
        stale_input_timeout_s=value["stale_input_timeout_s"],
        heartbeat_period_s=value["heartbeat_period_s"],
        shadow_tolerance=value["shadow_tolerance"],
    )
