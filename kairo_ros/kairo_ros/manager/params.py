"""kairo_manager's parameters: the one table (SPECS) and the frozen dataclass the node reads.

SPECS drives the declaration and the checks (kairo_ros.parameters), the
launch arguments of manager.launch.py and the README table. Every parameter
is read once at start, so all are read-only. The API key is deliberately not
a parameter (parameters are readable by anyone on the graph): it comes from
KAIRO_API_KEY or the file `api_key_file` names.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kairo_ros.parameters import ParameterSpec, declare, read

if TYPE_CHECKING:
    from rclpy.node import Node


def _http_url(value: str) -> str:
    ok = value.strip().startswith(("http://", "https://"))
    return "" if ok else f"api_url: {value!r} must start with http:// or https://"


SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("api_url", "http://127.0.0.1:8080", "Base URL of the Kairo Models API, without /v1.",
                  read_only=True, check=_http_url, check_text="http(s)://..."),
    ParameterSpec("api_key_file", "", "File holding the API key; empty: the KAIRO_API_KEY environment variable.",
                  read_only=True),
    ParameterSpec("robot_id", "", "Robot a train goal is for when the goal leaves robot_id empty (rob_...).",
                  read_only=True),
    ParameterSpec("poll_period_s", 1.0, "Seconds between progress polls of a running train or deploy goal.",
                  range=(0.05, 60.0), read_only=True),
    ParameterSpec("request_timeout_s", 5.0, "Deadline of every API call in seconds, retries included; services "
                  "answer within it.", range=(0.1, 120.0), read_only=True),
    ParameterSpec("export_dir", "~/.kairo/exports", "Directory export goals write to when they leave output_dir "
                  "empty.", read_only=True),
    ParameterSpec("max_outage_s", 600.0, "Seconds a train or deploy goal keeps polling an unreachable backend "
                  "before it aborts.", range=(1.0, 86400.0), read_only=True),
    ParameterSpec("deploy_watch_period_s", 2.0, "Seconds between checks of the deployments this manager made, "
                  "so a rollback the backend decides by itself, or a promote, is published as a ModelEvent.",
                  range=(0.1, 3600.0), read_only=True),
)


@dataclass(frozen=True)
class ManagerParams:
    api_url: str
    api_key_file: str
    robot_id: str
    poll_period_s: float
    request_timeout_s: float
    export_dir: pathlib.Path
    max_outage_s: float
    deploy_watch_period_s: float = 2.0


def declare_and_read(node: Node) -> ManagerParams:
    """Declare SPECS on `node` and read them; a bad value raises ParameterError."""
    declare(node, SPECS)
    value = read(node, SPECS)
    return ManagerParams(
        api_url=value["api_url"].strip().rstrip("/"),
        api_key_file=value["api_key_file"].strip(),
        robot_id=value["robot_id"].strip(),
        poll_period_s=value["poll_period_s"],
        request_timeout_s=value["request_timeout_s"],
        export_dir=pathlib.Path(value["export_dir"]).expanduser(),
        max_outage_s=value["max_outage_s"],
        deploy_watch_period_s=value["deploy_watch_period_s"],
    )
