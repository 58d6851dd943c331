"""kairo_inference serving a local ONNX file, in its own process over real DDS (no backend)."""

import pathlib

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from inference_helpers import (
    RELIABLE,
    Collector,
    arm_publishers,
    diagnostic_values,
    joint_state,
    predictions,
    publish_until,
    reference_session,
    set_parameter,
    start_inference,
    target_point,
    wait_matched,
)
from onnx_models import features, linear_model
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Float64MultiArray

from kairo_ros.testing.graph import wait_until


def test_file_model_answers_like_onnxruntime(processes, ros, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    path = linear_model(features("manipulation"), tmp_path / "arm.onnx", model_id="mdl_file", version="v7")
    node = start_inference(processes, ros, f"model_path:={path}", "input_qos:=reliable")
    answers = predictions(ros)
    commands = Collector(ros, Float64MultiArray, "/arm_controller/commands")
    joints, targets = arm_publishers(ros)
    target = np.array([0.3, -0.2], np.float32)
    targets.publish(target_point(target))
    rng = np.random.default_rng(0)
    positions = rng.uniform(-1, 1, (40, 3)).astype(np.float32)
    # Messages before the target arrives are dropped (waiting for inputs): publish until one is answered.
    publish_until(lambda: joints.publish(joint_state(0, positions[0])), lambda: bool(answers.snapshot()), 20,
                  "a first prediction")
    first = answers.wait_for(lambda _m: True, 20, "a prediction")
    for index in range(40):
        joints.publish(joint_state(1000 + index, positions[index]))
    reference = reference_session(path)
    for index in range(40):
        answer = answers.wait_for(lambda m, i=index: m.header.stamp.sec == 1000 + i, 20, f"prediction {index}")
        expected = reference.run(None, {"joint_positions": positions[index][None], "target": target[None]})[0][0]
        np.testing.assert_allclose(np.array(answer.data), expected, rtol=1e-5, atol=1e-6)
        assert answer.model_id == "mdl_file" and answer.model_version == "v7"
        assert answer.latency.sec > 0 or answer.latency.nanosec > 0
    command = commands.wait_for(lambda m: True, 10, "a command on /arm_controller/commands")
    assert len(command.data) == 3
    assert first.model_version == "v7" and node.alive


def test_bad_files_and_bad_messages_never_stop_it(processes, ros, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("not a model")
    good = linear_model(features("navigation"), tmp_path / "good.onnx", model_id="mdl_nav", version="v1")
    mismatching = linear_model(features("navigation"), tmp_path / "bad.onnx", model_id="mdl_nav", version="v2",
                               graph_shapes={"scan": [32]})
    diagnostics = Collector(ros, DiagnosticArray, "/diagnostics")
    node = start_inference(processes, ros, f"model_path:={not_onnx}", "input_qos:=reliable")
    refused = diagnostics.wait_for(
        lambda a: "not a loadable ONNX model" in diagnostic_values(a)["last_error"], 20, "the refusal in diagnostics")
    assert diagnostic_values(refused)["model_version"] == "" and node.alive
    node.wait_for_output("not a loadable ONNX model", 5)

    assert set_parameter(ros, "model_path", str(good)).successful
    answers = predictions(ros)
    scans = ros.node.create_publisher(LaserScan, "/scan", RELIABLE)
    wait_matched(scans)
    ranges = [float(v) for v in np.linspace(0.5, 5.0, 64)]
    publish_until(lambda: scans.publish(LaserScan(ranges=ranges)), lambda: bool(answers.snapshot()), 20,
                  "a prediction from the good model")
    assert answers.snapshot()[0].model_version == "v1"

    scans.publish(LaserScan(ranges=ranges[:10]))  # wrong size: dropped and counted
    diagnostics.wait_for(lambda a: int(diagnostic_values(a)["dropped_bad_input"]) >= 1, 20, "a counted bad input")
    node.wait_for_output("got 10 values from ranges; the model takes 64", 20)

    assert set_parameter(ros, "model_path", str(mismatching)).successful
    diagnostics.wait_for(lambda a: "has shape ['batch', 32]" in diagnostic_values(a)["last_error"], 20,
                         "the mismatch in diagnostics")
    count = len(answers.snapshot())
    scans.publish(LaserScan(ranges=ranges))
    answers.wait_for(lambda m: True, 20, "a prediction after the refusal", after=count)
    assert {m.model_version for m in answers.snapshot()} == {"v1"}, "the refused model must not serve"
    unknown = set_parameter(ros, "model_path", "package://kairo_model_not_installed_v1/models/model.onnx")
    assert not unknown.successful and "is not installed" in unknown.reason
    assert node.alive


def test_lifecycle_transitions_remove_and_restore_the_data_path(processes, ros, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    path = linear_model(features("navigation"), tmp_path / "nav.onnx", model_id="mdl_nav", version="v1")
    node = start_inference(processes, ros, f"model_path:={path}", "input_qos:=reliable")
    answers = predictions(ros)
    scans = ros.node.create_publisher(LaserScan, "/scan", RELIABLE)
    wait_matched(scans)
    ranges = [float(v) for v in np.linspace(0.5, 5.0, 64)]
    publish_until(lambda: scans.publish(LaserScan(ranges=ranges)), lambda: bool(answers.snapshot()), 20,
                  "a prediction")
    # The data path's own node carries no parameter services: they stay on the lifecycle node.
    services = {name for name, _ in ros.node.get_service_names_and_types()}
    assert "/kairo/kairo_inference/set_parameters" in services
    assert not any("kairo_inference_data/" in name for name in services)
    change = ros.node.create_client(ChangeState, "/kairo/kairo_inference/change_state")
    ros.wait_for_service(change, 10)

    def transition(label: str) -> None:
        assert ros.call(change, ChangeState.Request(transition=Transition(label=label)), 10).success, label

    reports = Collector(ros, DiagnosticArray, "/diagnostics")

    def reported(state: str) -> dict[str, str]:
        """The next report once the node is in `state`: its real lifecycle state, as `ros2 lifecycle get` says."""
        return diagnostic_values(reports.wait_for(lambda a: diagnostic_values(a)["state"] == state, 10,
                                                  f"a report in state {state}", after=len(reports.snapshot())))

    assert reported("active")["model_version"] == "v1"
    transition("deactivate")
    wait_until(lambda: scans.get_subscription_count() == 0, 10, "the input subscription gone")
    inactive = reported("inactive")
    assert inactive["model_version"] == "" and "no model serving" in inactive["message"]
    transition("cleanup")
    wait_until(lambda: ros.node.count_publishers("/kairo/kairo_inference/prediction") == 0, 10,
               "~/prediction gone")
    assert reported("unconfigured")["model_version"] == ""
    transition("configure")
    transition("activate")
    assert reported("active")["model_version"] == "v1"
    wait_matched(scans)
    count = len(answers.snapshot())
    publish_until(lambda: scans.publish(LaserScan(ranges=ranges)), lambda: len(answers.snapshot()) > count, 20,
                  "a prediction after activate again")
    assert node.alive


def test_outputs_nobody_reads_are_skipped_and_a_late_subscriber_is_served(processes, ros,  # type: ignore[no-untyped-def]
                                                                            tmp_path: pathlib.Path) -> None:
    path = linear_model(features("navigation"), tmp_path / "nav.onnx", model_id="mdl_nav", version="v3")
    node = start_inference(processes, ros, f"model_path:={path}", "input_qos:=reliable")
    reports = Collector(ros, DiagnosticArray, "/diagnostics")
    scans = ros.node.create_publisher(LaserScan, "/scan", RELIABLE)
    wait_matched(scans)
    ranges = [1.0] * 64
    # Nobody reads ~/prediction or /cmd_vel yet: every scan is still answered (counted), only not written.
    publish_until(lambda: scans.publish(LaserScan(ranges=ranges)),
                  lambda: any(int(diagnostic_values(a)["predictions"]) >= 3 for a in reports.snapshot()), 20,
                  "predictions counted with no subscriber")
    answers = predictions(ros)
    commands = Collector(ros, Twist, "/cmd_vel")
    publish_until(lambda: scans.publish(LaserScan(ranges=ranges)),
                  lambda: bool(answers.snapshot()) and bool(commands.snapshot()), 20,
                  "a prediction and a command for subscribers that came later")
    assert answers.snapshot()[0].model_version == "v3" and node.alive
