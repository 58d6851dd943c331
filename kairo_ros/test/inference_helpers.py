"""Driving a kairo_inference process from a test: start it, feed it, read what it says."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from kairo_interfaces.msg import Prediction
from kairo_ros.testing.graph import SpinningNode, wait_until
from kairo_ros.testing.processes import ChildProcess, ProcessGroup

NODE = "/kairo/kairo_inference"
PREDICTION_TOPIC = f"{NODE}/prediction"
RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


class Collector:
    """Every message of one topic, kept in arrival order."""

    def __init__(self, ros: SpinningNode, msg_type: type, topic: str, qos: QoSProfile = RELIABLE) -> None:
        self.messages: list[Any] = []
        self._lock = threading.Lock()
        self.subscription = ros.node.create_subscription(msg_type, topic, self._on_message, qos)

    def _on_message(self, msg: Any) -> None:
        with self._lock:
            self.messages.append(msg)

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[Any], bool], timeout_s: float, what: str, after: int = 0) -> Any:
        """The first message (oldest first) that satisfies `predicate`, among those after the first `after`."""
        found: list[Any] = []

        def seen() -> bool:
            found[:] = [m for m in self.snapshot()[after:] if predicate(m)][:1]
            return bool(found)

        wait_until(seen, timeout_s, what)
        return found[0]


def diagnostic_values(array: DiagnosticArray) -> dict[str, str]:
    status = next(s for s in array.status if s.name.startswith(NODE))
    return {"level": str(int.from_bytes(status.level, "little")) if isinstance(status.level, bytes)
            else str(status.level), "message": status.message, **{kv.key: kv.value for kv in status.values}}


def start_inference(processes: ProcessGroup, ros: SpinningNode, *params: str,
                    env: dict[str, str] | None = None) -> ChildProcess:
    """kairo_inference with `-p name:=value` parameters, once its node is in the graph."""
    argv = ["kairo_inference", "--ros-args", "--log-level", "kairo.kairo_inference:=info"]
    for param in params:
        argv += ["-p", param]
    child = processes.start("kairo_inference", argv, env=env)
    processes.wait_until(lambda: NODE in ros.node_names(), 30, f"node {NODE}", watch=child)
    return child


def set_parameter(ros: SpinningNode, name: str, value: str) -> Any:
    client = ros.node.create_client(SetParameters, f"{NODE}/set_parameters")
    request = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
        type=ParameterType.PARAMETER_STRING, string_value=value))])
    return ros.call(client, request, 10).results[0]


def wait_matched(publisher: Any, timeout_s: float = 20) -> None:
    wait_until(lambda: publisher.get_subscription_count() > 0, timeout_s, f"a subscriber on {publisher.topic_name}")


def reference_session(path: pathlib.Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def joint_state(index: int, position: np.ndarray) -> JointState:
    """A JointState whose stamp (sec = index) names it in the predictions it causes."""
    msg = JointState(position=[float(v) for v in position])
    msg.header.stamp.sec = index
    return msg


def target_point(xy: np.ndarray) -> PointStamped:
    msg = PointStamped()
    msg.point.x, msg.point.y = float(xy[0]), float(xy[1])
    return msg


def arm_publishers(ros: SpinningNode) -> tuple[Any, Any]:
    """Reliable publishers of the manipulation inputs (/joint_states, /target_point), matched to the node."""
    joints = ros.node.create_publisher(JointState, "/joint_states", RELIABLE)
    targets = ros.node.create_publisher(PointStamped, "/target_point", RELIABLE)
    wait_matched(joints)
    wait_matched(targets)
    return joints, targets


def predictions(ros: SpinningNode) -> Collector:
    return Collector(ros, Prediction, PREDICTION_TOPIC)


def publish_until(publish: Callable[[], None], done: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Publish again every 20 ms until `done()` (for the first message after discovery)."""
    def attempt() -> bool:
        if done():
            return True
        publish()
        return False

    wait_until(attempt, timeout_s, what, period_s=0.02)


def download_model(backend: Any, model_id: str, version: str, dest: pathlib.Path) -> pathlib.Path:
    """The test's own copy of a model version, fetched through the API apart from the node."""
    import httpx

    with backend.client() as api:
        link = api.post(f"/v1/models/{model_id}/export", json={"format": "onnx", "version": version})
        assert link.status_code == 200, link.text
    data = httpx.get(link.json()["download_url"], timeout=30).content
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest


def api_params(backend: Any, cache_dir: pathlib.Path, *params: str) -> list[str]:
    return [f"api_url:={backend.url}", f"cache_dir:={cache_dir}", *params]
