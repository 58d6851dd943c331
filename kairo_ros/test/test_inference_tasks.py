"""Each task's default wiring, end to end: a model trained by the real backend, served by a
kairo_inference process, answers published inputs exactly as onnxruntime does in this process."""

import pathlib

import numpy as np
from geometry_msgs.msg import Twist
from inference_helpers import (
    RELIABLE,
    Collector,
    api_params,
    arm_publishers,
    download_model,
    joint_state,
    predictions,
    publish_until,
    reference_session,
    start_inference,
    target_point,
    wait_matched,
)
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Float64MultiArray

from kairo_features.schema import features_from_metadata

SAMPLES = 20


def serve(processes, ros, backend, model, tmp_path: pathlib.Path, *params: str):  # type: ignore[no-untyped-def]
    return start_inference(processes, ros, *api_params(backend, tmp_path / "cache", "input_qos:=reliable", *params),
                           env={"KAIRO_API_KEY": backend.key})


def test_manipulation(processes, ros, backend, trained_model, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    model = trained_model("manipulation")
    node = serve(processes, ros, backend, model, tmp_path, f"model_id:={model.model_id}")
    answers = predictions(ros)
    commands = Collector(ros, Float64MultiArray, "/arm_controller/commands")
    joints, targets = arm_publishers(ros)
    target = np.array([0.35, 0.2], np.float32)
    targets.publish(target_point(target))
    rng = np.random.default_rng(3)
    positions = rng.uniform(-1.5, 1.5, (SAMPLES, 3)).astype(np.float32)
    # Until both outputs reach us (each publisher matches our reader on its own); stamps >= 100 below.
    publish_until(lambda: joints.publish(joint_state(0, positions[0])),
                  lambda: bool(answers.snapshot() and commands.snapshot()), 30, "a first prediction and command")
    warm_up_commands = len(commands.snapshot())
    for index in range(SAMPLES):
        joints.publish(joint_state(100 + index, positions[index]))
    reference = reference_session(download_model(backend, model.model_id, model.version, tmp_path / "m.onnx"))
    for index in range(SAMPLES):
        answer = answers.wait_for(lambda m, i=index: m.header.stamp.sec == 100 + i, 20, f"prediction {index}")
        expected = reference.run(None, {"joint_positions": positions[index][None], "target": target[None]})[0][0]
        np.testing.assert_allclose(np.array(answer.data), expected, rtol=1e-5, atol=1e-5)
        assert (answer.model_id, answer.model_version) == (model.model_id, model.version)
    # The command topic carries the same numbers, as float64 for a forward command controller.
    last = reference.run(None, {"joint_positions": positions[-1][None], "target": target[None]})[0][0]
    commands.wait_for(lambda m: np.allclose(m.data, last, atol=1e-5), 20, "the last command", after=warm_up_commands)
    assert node.alive


def test_navigation_by_robot_and_task(processes, ros, backend, trained_model,  # type: ignore[no-untyped-def]
                                      tmp_path: pathlib.Path) -> None:
    model = trained_model("navigation")
    node = serve(processes, ros, backend, model, tmp_path, f"robot_id:={model.robot_id}", "task:=navigation")
    answers = predictions(ros)
    twists = Collector(ros, Twist, "/cmd_vel")
    scans = ros.node.create_publisher(LaserScan, "/scan", RELIABLE)
    wait_matched(scans)
    rng = np.random.default_rng(4)
    ranges = rng.uniform(0.3, 6.0, (SAMPLES, 64)).astype(np.float32)
    reference = reference_session(download_model(backend, model.model_id, model.version, tmp_path / "n.onnx"))
    # Random scans can ask for more than the training data ever commanded: the safety guard clamps the
    # command to the trained output envelope widened by envelope_margin (0.1 of its width) and says so.
    envelope = features_from_metadata(reference.get_modelmeta().custom_metadata_map).outputs[0].range
    assert envelope is not None, "a trained model carries its output envelope"
    low, high = np.array(envelope.low), np.array(envelope.high)
    low, high = (low - 0.1 * (high - low)).astype(np.float32), (high + 0.1 * (high - low)).astype(np.float32)

    def guarded(scan: np.ndarray) -> tuple[np.ndarray, bool]:
        raw = reference.run(None, {"scan": scan[None]})[0][0]
        return np.clip(raw, low, high), bool(((raw < low) | (raw > high)).any())

    # wait_matched(scans) says nothing of ~/prediction and /cmd_vel reaching our readers (volatile): a
    # warm-up scan (stamp 1) until both answer; predictions are read by stamp, twists after the warm-up's.
    warm_up = LaserScan(ranges=[1.0] * 64)
    warm_up.header.stamp.sec = 1
    publish_until(lambda: scans.publish(warm_up), lambda: bool(answers.snapshot() and twists.snapshot()), 30,
                  "a warm-up prediction and twist")
    warm_up_twists = len(twists.snapshot())
    for index in range(SAMPLES):
        scan = LaserScan(ranges=ranges[index].tolist())
        scan.header.stamp.sec = 100 + index
        scans.publish(scan)
    for index in range(SAMPLES):
        answer = answers.wait_for(lambda m, i=index: m.header.stamp.sec == 100 + i, 20, f"prediction {index}")
        expected, clamped = guarded(ranges[index])
        np.testing.assert_allclose(np.array(answer.data), expected, rtol=1e-5, atol=1e-5)
        assert answer.model_id == model.model_id and answer.clamped == clamped
    expected, _ = guarded(ranges[-1])
    twists.wait_for(lambda t: np.allclose([t.linear.x, t.angular.z], expected, atol=1e-5), 20, "the last twist",
                    after=warm_up_twists)
    assert node.alive


# object_detection: test_detection.py (a trained detector on 640x480 camera frames, vision_msgs-shaped output)
