"""kairo_inference's parameters: declared once with descriptors, read into one frozen dataclass.

The API key is never a parameter: it comes from KAIRO_API_KEY or from the
file `api_key_file` names.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from kairo_ros.api import TASKS
from kairo_ros.inference.errors import ConfigError
from kairo_ros.inference.package_uri import resolve_model_path
from kairo_ros.inference.wiring import INPUT_QOS_CHOICES, parse_topic_remaps

DEFAULT_API_URL = "http://127.0.0.1:8080"
DEFAULT_CACHE_DIR = "~/.cache/kairo/models"
DEFAULT_EVENTS_TOPIC = "/kairo/model_events"

_STRING = ParameterType.PARAMETER_STRING
_STRING_ARRAY = ParameterType.PARAMETER_STRING_ARRAY


def _descriptor(kind: int, description: str, *, read_only: bool = False,
                float_range: tuple[float, float] | None = None,
                int_range: tuple[int, int] | None = None) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(type=kind, description=description, read_only=read_only)
    if float_range is not None:
        # `-p poll_period_s:=0` is an integer to ROS: accept any number, check it when it is read.
        descriptor.dynamic_typing = True
        descriptor.floating_point_range = [FloatingPointRange(from_value=float_range[0], to_value=float_range[1])]
    if int_range is not None:
        descriptor.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    return descriptor


# name -> (default, descriptor). A default of a Parameter.Type declares a list that may stay unset.
PARAMETERS: dict[str, tuple[Any, ParameterDescriptor]] = {
    "model_path": ("", _descriptor(
        _STRING, "Local ONNX file to serve (no backend needed), or package://<package>/<path> in an installed "
                 "package's share directory; wins over model_id and robot_id+task. "
                 "Setting it while the node serves a file hot-swaps to the new file.")),
    "model_id": ("", _descriptor(
        _STRING, "Serve the active version of this model (mdl_...); wins over robot_id+task.")),
    "robot_id": ("", _descriptor(_STRING, "With task: serve the active model of this robot (rob_...).")),
    "task": ("", _descriptor(_STRING, f"With robot_id: the task ({', '.join(TASKS)}).")),
    "api_url": (DEFAULT_API_URL, _descriptor(_STRING, "Base URL of the Kairo Models API.")),
    "api_key_file": ("", _descriptor(
        _STRING, "File holding the API key; empty: the KAIRO_API_KEY environment variable.")),
    "cache_dir": (DEFAULT_CACHE_DIR, _descriptor(
        _STRING, "Where downloaded models are kept, sha256-verified; the node boots from it offline.")),
    "poll_period_s": (30.0, _descriptor(
        ParameterType.PARAMETER_DOUBLE, "Seconds between checks for a newly promoted version; 0: only on "
                                        "promotion events.", float_range=(0.0, 86400.0))),
    "request_timeout_s": (10.0, _descriptor(
        ParameterType.PARAMETER_DOUBLE, "Deadline of each API call, retries included.",
        float_range=(0.1, 600.0))),
    "providers": (Parameter.Type.STRING_ARRAY, _descriptor(
        _STRING_ARRAY, "onnxruntime execution providers in order (e.g. [cuda, cpu]); unset: CUDA when "
                       "available, else CPU. CPU is always the last fallback.")),
    "intra_op_threads": (1, _descriptor(
        ParameterType.PARAMETER_INTEGER, "onnxruntime intra-op threads; 0: onnxruntime's default "
                                         "(all cores).", int_range=(0, 256))),
    "autostart": (True, _descriptor(
        ParameterType.PARAMETER_BOOL, "Configure and activate at start, without a lifecycle manager.",
        read_only=True)),
    "input_qos": ("sensor_data", _descriptor(
        _STRING, "QoS of the input subscriptions: sensor_data (best effort, depth 1: the newest reading "
                 "wins) or reliable (nothing lost: every unread message is kept).")),
    "events_topic": (DEFAULT_EVENTS_TOPIC, _descriptor(
        _STRING, "kairo_interfaces/ModelEvent topic; a promotion of the served model triggers a hot swap.")),
    "topic_remaps": (Parameter.Type.STRING_ARRAY, _descriptor(
        _STRING_ARRAY, "Topic overrides 'name:=/topic', name an input or output name (or its default "
                       "topic), e.g. ['joint_positions:=/arm/joint_states'].")),
}


@dataclass(frozen=True)
class InferenceParams:
    model_path: str = ""
    model_id: str = ""
    robot_id: str = ""
    task: str = ""
    api_url: str = DEFAULT_API_URL
    api_key_file: str = ""
    cache_dir: pathlib.Path = pathlib.Path(DEFAULT_CACHE_DIR).expanduser()
    poll_period_s: float = 30.0
    request_timeout_s: float = 10.0
    providers: tuple[str, ...] = ()
    intra_op_threads: int = 1
    autostart: bool = True
    input_qos: str = "sensor_data"
    events_topic: str = DEFAULT_EVENTS_TOPIC
    topic_remaps: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Precedence: model_path, then model_id, then robot_id + task (a launch file may pass all).
        if not (self.model_path or self.model_id or (self.robot_id and self.task)):
            missing = "task" if self.robot_id else "robot_id" if self.task else "model_path, model_id"
            raise ConfigError(f"{missing}: set model_path (a local ONNX file), model_id, or robot_id and task, "
                              f"so the node knows which model to serve")
        if not (self.model_path or self.model_id) and self.task not in TASKS:
            raise ConfigError(f"task: {self.task!r} must be one of {', '.join(TASKS)}")
        if self.input_qos not in INPUT_QOS_CHOICES:
            raise ConfigError(f"input_qos: {self.input_qos!r} must be one of {', '.join(INPUT_QOS_CHOICES)}")
        if not self.events_topic.startswith("/"):
            raise ConfigError(f"events_topic: {self.events_topic!r} must be an absolute topic name")
        if not self.model_path and not self.api_url.startswith(("http://", "https://")):
            raise ConfigError(f"api_url: {self.api_url!r} must start with http:// or https://")

    @property
    def uses_api(self) -> bool:
        return not self.model_path

    @property
    def remaps(self) -> dict[str, str]:
        return dict(self.topic_remaps)


def declare_parameters(node: Node) -> None:
    for name, (default, descriptor) in PARAMETERS.items():
        node.declare_parameter(name, default, descriptor)


def _value(node: Node, name: str) -> Any:
    try:
        return node.get_parameter(name).value
    except ParameterUninitializedException:
        return None


def _seconds(node: Node, name: str) -> float:
    value = _value(node, name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}: {value!r} must be a number of seconds")
    allowed = PARAMETERS[name][1].floating_point_range[0]
    if not allowed.from_value <= value <= allowed.to_value:
        raise ConfigError(f"{name}: {value} must be in {allowed.from_value:g}..{allowed.to_value:g}")
    return float(value)


def read_parameters(node: Node) -> InferenceParams:
    """The node's parameters as one checked value; ConfigError names a bad one."""
    remaps = parse_topic_remaps(_value(node, "topic_remaps") or [])
    return InferenceParams(
        model_path=resolve_model_path(str(_value(node, "model_path")).strip()),
        model_id=str(_value(node, "model_id")).strip(),
        robot_id=str(_value(node, "robot_id")).strip(),
        task=str(_value(node, "task")).strip(),
        api_url=str(_value(node, "api_url")).strip().rstrip("/"),
        api_key_file=str(_value(node, "api_key_file")).strip(),
        cache_dir=pathlib.Path(str(_value(node, "cache_dir"))).expanduser(),
        poll_period_s=_seconds(node, "poll_period_s"),
        request_timeout_s=_seconds(node, "request_timeout_s"),
        providers=tuple(p.strip() for p in (_value(node, "providers") or []) if p.strip()),
        intra_op_threads=int(_value(node, "intra_op_threads")),
        autostart=bool(_value(node, "autostart")),
        input_qos=str(_value(node, "input_qos")).strip(),
        events_topic=str(_value(node, "events_topic")).strip(),
        topic_remaps=tuple(sorted(remaps.items())),
    )
