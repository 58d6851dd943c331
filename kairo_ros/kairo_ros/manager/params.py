"""kairo_manager's parameters: declared once with descriptors, read into one frozen dataclass.

The API key is deliberately not a parameter (parameters are readable by
anyone on the graph): it comes from KAIRO_API_KEY or the file `api_key_file` names.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, ParameterType
from rclpy.node import Node

from kairo_ros.api import KairoArgumentError


@dataclass(frozen=True)
class ManagerParams:
    api_url: str
    api_key_file: str
    robot_id: str
    poll_period_s: float
    request_timeout_s: float
    export_dir: pathlib.Path
    max_outage_s: float

    def __post_init__(self) -> None:
        if not self.api_url.startswith(("http://", "https://")):
            raise KairoArgumentError(f"parameter api_url {self.api_url!r} must start with http:// or https://")


def _string(description: str) -> ParameterDescriptor:
    return ParameterDescriptor(type=ParameterType.PARAMETER_STRING, description=description, read_only=True)


def _seconds(description: str, low: float, high: float) -> ParameterDescriptor:
    return ParameterDescriptor(type=ParameterType.PARAMETER_DOUBLE, description=description, read_only=True,
                               floating_point_range=[FloatingPointRange(from_value=low, to_value=high, step=0.0)])


_DECLARATIONS = (
    ("api_url", "http://127.0.0.1:8080",
     _string("Base URL of the Kairo Models API, without /v1")),
    ("api_key_file", "",
     _string("File holding the API key; empty: use the KAIRO_API_KEY environment variable")),
    ("robot_id", "",
     _string("Robot a train goal is for when the goal leaves robot_id empty (rob_...)")),
    ("poll_period_s", 1.0,
     _seconds("How often a running train goal asks the backend for its run's progress", 0.05, 60.0)),
    ("request_timeout_s", 5.0,
     _seconds("Deadline of every call to the API, retries included; services answer within it", 0.1, 120.0)),
    ("export_dir", "~/.kairo/exports",
     _string("Directory exported models are written to when a goal leaves output_dir empty")),
    ("max_outage_s", 600.0,
     _seconds("How long a train goal keeps polling an unreachable backend before it aborts", 1.0, 86400.0)),
)


def declare_and_read(node: Node) -> ManagerParams:
    """Declare every parameter on `node` and read them; raises KairoArgumentError on bad values."""
    for name, default, descriptor in _DECLARATIONS:
        node.declare_parameter(name, default, descriptor)
    value = {name: node.get_parameter(name).value for name, _d, _x in _DECLARATIONS}
    return ManagerParams(
        api_url=str(value["api_url"]).rstrip("/"),
        api_key_file=str(value["api_key_file"]),
        robot_id=str(value["robot_id"]),
        poll_period_s=float(value["poll_period_s"]),
        request_timeout_s=float(value["request_timeout_s"]),
        export_dir=pathlib.Path(str(value["export_dir"])).expanduser(),
        max_outage_s=float(value["max_outage_s"]),
    )
