"""What the nodes say, read from the real processes' output: once, at the right level, with the
names a user can act on, and never the API key."""

from __future__ import annotations

import contextlib
import pathlib
import secrets

from diagnostic_msgs.msg import DiagnosticArray
from inference_helpers import Collector, api_params
from onnx_models import features, linear_model

from kairo_ros.testing.processes import ProcessGroup


def test_waiting_for_a_first_promotion_is_said_once_not_as_an_error(  # type: ignore[no-untyped-def]
        processes: ProcessGroup, ros, backend, tmp_path: pathlib.Path) -> None:
    diagnostics = Collector(ros, DiagnosticArray, "/diagnostics")
    argv = ["kairo_inference", "--ros-args"]
    for param in api_params(backend, tmp_path / "cache", "robot_id:=rob_nomodel1", "task:=navigation",
                            "poll_period_s:=0.5"):
        argv += ["-p", param]
    node = processes.start("kairo_inference", argv, env={"KAIRO_API_KEY": backend.key})
    node.wait_for_output("waiting for a promotion", 30)
    # Five diagnostics later the node has polled the backend ten more times.
    count = len(diagnostics.snapshot())
    processes.wait_until(lambda: len(diagnostics.snapshot()) >= count + 5, 30, "five more diagnostics", watch=node)
    lines = [line for line in node.output().splitlines() if "no model" in line or "waiting for" in line]
    assert len(lines) == 1 and lines[0].startswith("[WARN]"), "\n".join(lines)
    assert not [line for line in node.output().splitlines() if line.startswith("[ERROR]")], node.tail()


def test_wiring_names_the_topics_actually_subscribed(processes: ProcessGroup, ros,  # type: ignore[no-untyped-def]
                                                    tmp_path: pathlib.Path) -> None:
    model = linear_model(features("manipulation"), tmp_path / "arm.onnx")
    node = processes.start("kairo_inference", [
        "kairo_inference", "--ros-args", "-r", "/joint_states:=/arm1/joint_states",
        "-r", "/arm_controller/commands:=/arm1/commands",
        "-p", f"model_path:={model}", "-p", "topic_remaps:=['target:=/arm1/goal']"])
    wired = node.wait_for_output("wired:", 30)
    assert "joint_positions <- /arm1/joint_states" in wired, wired
    assert "target <- /arm1/goal" in wired, wired
    assert "joint_commands -> /arm1/commands" in wired, wired

    def counts() -> dict[str, int]:
        return {"/arm1/commands publishers": ros.node.count_publishers("/arm1/commands"),
                "/arm1/joint_states subscribers": ros.node.count_subscribers("/arm1/joint_states"),
                "/arm1/goal subscribers": ros.node.count_subscribers("/arm1/goal")}

    # Publications and subscriptions are discovered separately: wait for all three together.
    with contextlib.suppress(TimeoutError):  # the assertion shows which count is missing
        processes.wait_until(lambda: set(counts().values()) == {1}, 60, "the remapped topics", watch=node)
    assert set(counts().values()) == {1}, counts()


def test_the_manager_says_at_start_whether_a_key_is_configured(processes: ProcessGroup) -> None:
    without = processes.start("kairo_manager", ["kairo_manager"], env={"KAIRO_API_KEY": ""})
    ready = without.wait_for_output("kairo_manager ready", 30)
    warning = without.wait_for_output("no API key configured", 30)
    assert warning.startswith("[WARN]") and "KAIRO_API_KEY" in warning and "api_key_file" in warning
    assert "keys create" in warning and "no API key yet" in ready

    key = "kai_live_" + secrets.token_hex(16)
    with_key = processes.start("kairo_manager", ["kairo_manager", "--ros-args", "-r", "__ns:=/other"],
                               env={"KAIRO_API_KEY": key})
    ready = with_key.wait_for_output("kairo_manager ready", 30)
    assert "API key from $KAIRO_API_KEY" in ready
    assert "no API key" not in with_key.output() and key not in with_key.output()
