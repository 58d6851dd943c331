"""The safety guard: no non-finite or out-of-envelope command reaches a robot, and a stale input stops it.

The guard's rules are checked on kairo_ros.inference.guard alone (numpy, no ROS); then kairo_inference
runs in its own process over real DDS, fed NaN, infinite and huge values between well-formed ones.
"""

from __future__ import annotations

import math
import pathlib
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from inference_helpers import (
    NODE,
    RELIABLE,
    Collector,
    arm_publishers,
    diagnostic_values,
    joint_state,
    predictions,
    publish_until,
    reference_session,
    start_inference,
    target_point,
    wait_matched,
)
from onnx_models import features, linear_model, sqrt_model, with_ranges
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import LaserScan
from std_msgs.msg import Float64MultiArray

from kairo_features.schema import parse_features
from kairo_ros.inference import guard as guard_module
from kairo_ros.inference import params as inference_params
from kairo_ros.inference.errors import ConfigError
from kairo_ros.inference.guard import (
    CLAMPED_OUTPUT,
    NON_FINITE_INPUT,
    NON_FINITE_OUTPUT,
    OUT_OF_ENVELOPE_INPUT,
    Guard,
    GuardSettings,
    parse_output_limits,
    stale_timeout_s,
)
from kairo_ros.testing.graph import wait_until

ARM_RANGES = {"joint_positions": ([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]), "target": ([-1.0, -1.0], [1.0, 1.0]),
              "joint_commands": ([-0.2, -0.2, -0.2], [0.2, 0.2, 0.2])}


def arm_features(ranges: bool = True):  # type: ignore[no-untyped-def]
    return parse_features(with_ranges(features("manipulation"), ARM_RANGES if ranges else {}))


def f32(*values: float) -> np.ndarray:
    """One sample as the readers and the model give it: float32 [1, n]."""
    return np.array([values], dtype=np.float32)


# --- the rules, without ROS ------------------------------------------------------------------------------
def test_inputs_non_finite_always_dropped_out_of_envelope_by_policy() -> None:
    drop = Guard(arm_features(), GuardSettings(envelope_margin=0.1)).inputs[0]
    assert drop.check(f32(0.5, -1.05, 1.1))[1] == ""  # inside the envelope widened by 10 % of its width 2
    for bad in (f32(math.nan, 0, 0), f32(0, math.inf, 0), f32(0, 0, -math.inf)):
        assert drop.check(bad) == (None, NON_FINITE_INPUT)
    assert drop.check(f32(1e6, 0, 0)) == (None, OUT_OF_ENVELOPE_INPUT)
    clamp = Guard(arm_features(), GuardSettings("clamp", 0.0)).inputs[0]
    value, reason = clamp.check(f32(1e6, -1e6, 0.5))
    assert reason == OUT_OF_ENVELOPE_INPUT and value is not None and value.tolist() == [[1.0, -1.0, 0.5]]
    assert clamp.check(f32(math.nan, 0, 0)) == (None, NON_FINITE_INPUT), "clamp never turns a NaN into a value"
    passing = Guard(arm_features(), GuardSettings("pass", 0.0)).inputs[0]
    value, reason = passing.check(f32(1e6, 0, 0))
    assert reason == OUT_OF_ENVELOPE_INPUT and value is not None and value[0, 0] == 1e6
    # An older model without an envelope: only non-finite values are refused.
    bare = Guard(arm_features(ranges=False), GuardSettings()).inputs[0]
    assert bare.check(f32(1e6, -1e6, 0))[1] == "" and bare.check(f32(math.nan, 0, 0)) == (None, NON_FINITE_INPUT)


def test_outputs_clamped_to_envelope_or_operator_limits_and_non_finite_withheld() -> None:
    guard = Guard(arm_features(), GuardSettings(envelope_margin=0.5))
    inside = [f32(0.1, -0.35, 0.39)]  # the range +-0.2 widened by half its width 0.4: +-0.4
    assert guard.check_outputs(inside) == ""
    over = [f32(0.1, 5.0, -5.0)]
    assert guard.check_outputs(over) == CLAMPED_OUTPUT
    np.testing.assert_allclose(over[0], [[0.1, 0.4, -0.4]], rtol=1e-6)
    assert guard.check_outputs([f32(0.0, math.nan, 0.0)]) == NON_FINITE_OUTPUT
    assert guard.check_outputs([f32(0.0, math.inf, 0.0)]) == NON_FINITE_OUTPUT
    # Operator limits replace the envelope: the whole output first, then one value (the narrower statement).
    limited = Guard(arm_features(), GuardSettings(output_limits=parse_output_limits(
        ["joint_commands:-1:1", "joint_commands[2]:-0.01:0.01"])))
    out = [f32(0.9, -3.0, 0.5)]
    assert limited.check_outputs(out) == CLAMPED_OUTPUT
    np.testing.assert_allclose(out[0], [[0.9, -1.0, 0.01]], rtol=1e-6)
    # Without an envelope, limits apply only where given; other values only have to be finite.
    first_only = parse_output_limits(["joint_commands[0]:0:1"])
    bare = Guard(arm_features(ranges=False), GuardSettings(output_limits=first_only))
    out = [f32(-2.0, 1e6, -1e6)]
    assert bare.check_outputs(out) == CLAMPED_OUTPUT and out[0].tolist() == [[0.0, 1e6, -1e6]]
    assert Guard(arm_features(ranges=False), GuardSettings()).check_outputs([f32(1e6, 0, 0)]) == ""


def test_bad_guard_settings_say_what_to_write() -> None:
    for item, words in (("joint_commands", "must look like"), ("joint_commands:-1", "must look like"),
                        ("joint_commands:a:1", "must look like"), ("joint_commands:nan:1", "finite"),
                        ("joint_commands:1:-1", "above max"), ("Joint:0:1", "must look like")):
        with pytest.raises(ConfigError, match=words):
            parse_output_limits([item])
    with pytest.raises(ConfigError, match="given twice"):
        parse_output_limits(["cmd_vel:0:1", "cmd_vel:0:2"])
    with pytest.raises(ConfigError, match="not an output of this model; its outputs are joint_commands"):
        Guard(arm_features(), GuardSettings(output_limits=parse_output_limits(["cmd_vel:0:1"])))
    with pytest.raises(ConfigError, match=r"past the output's 3 values \(indexes 0..2\)"):
        Guard(arm_features(), GuardSettings(output_limits=parse_output_limits(["joint_commands[3]:0:1"])))
    with pytest.raises(ConfigError, match="out_of_envelope: 'maybe' must be one of drop, clamp, pass"):
        Guard(arm_features(), GuardSettings(out_of_envelope="maybe"))
    specs = {spec.name: spec for spec in inference_params.SPECS}
    assert "must be one of drop, clamp, pass" in specs["out_of_envelope"].problem("maybe")
    assert "must be in 0..100" in specs["envelope_margin"].problem(-0.1)
    assert "-1 (the task's default), 0 (off)" in specs["stale_input_timeout_s"].problem(-0.5)
    assert "must look like" in specs["output_limits"].problem(("cmd_vel",))
    assert not specs["output_limits"].problem(("cmd_vel[1]:-0.5:0.5",))
    # The launch-safe table keeps the guard's own constants.
    assert inference_params.OUT_OF_ENVELOPE_CHOICES == guard_module.OUT_OF_ENVELOPE_CHOICES
    assert inference_params.STALE_TASK_DEFAULT == guard_module.STALE_TASK_DEFAULT
    assert stale_timeout_s(-1.0, "navigation") == 0.5 and stale_timeout_s(-1.0, "manipulation") == 0.0
    assert stale_timeout_s(0.0, "navigation") == 0.0 and stale_timeout_s(2.0, "manipulation") == 2.0


# --- real nodes over DDS ---------------------------------------------------------------------------------
def vec(*values: float) -> np.ndarray:
    """The values of one message."""
    return np.array(values, dtype=np.float32)


def finite_and_within(values: list[float], limit: float) -> bool:
    array = np.array(values, dtype=np.float64)
    return bool(np.isfinite(array).all() and (np.abs(array) <= np.float32(limit)).all())


def test_nan_infinite_and_huge_inputs_never_become_commands(processes, ros, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    doc = with_ranges(features("manipulation"), ARM_RANGES)
    path = linear_model(doc, tmp_path / "arm.onnx", model_id="mdl_guard", version="v1", seed=3)
    node = start_inference(processes, ros, f"model_path:={path}", "input_qos:=reliable",
                           'output_limits:=["joint_commands:-0.05:0.05"]')
    answers = predictions(ros)
    commands = Collector(ros, Float64MultiArray, "/arm_controller/commands")
    reports = Collector(ros, DiagnosticArray, "/diagnostics")
    joints, targets = arm_publishers(ros)
    target = vec(0.3, -0.2)
    targets.publish(target_point(target))
    publish_until(lambda: joints.publish(joint_state(1, np.zeros(3))), lambda: bool(answers.snapshot()), 20,
                  "a first prediction")
    bad = [vec(math.nan, 0, 0), vec(0, math.inf, 0), vec(0, 0, -math.inf), vec(1e6, 0, 0), vec(0, -1e6, 0)]
    rng = np.random.default_rng(1)
    good = rng.uniform(-1, 1, (len(bad) + 1, 3)).astype(np.float32)
    for index, value in enumerate(bad):  # each bad one between two good ones
        joints.publish(joint_state(1000 + index, good[index]))
        joints.publish(joint_state(2000 + index, value))
    targets.publish(target_point(np.array([math.nan, 0.0])))  # a NaN on the other input: the last good target stays
    joints.publish(joint_state(1000 + len(bad), good[-1]))
    reference = reference_session(path)
    clamped_seen = 0
    for index in range(len(good)):
        answer = answers.wait_for(lambda m, i=index: m.header.stamp.sec == 1000 + i, 20, f"good input {index}")
        raw = reference.run(None, {"joint_positions": good[index][None], "target": target[None]})[0][0]
        np.testing.assert_allclose(np.array(answer.data), np.clip(raw, -0.05, 0.05), rtol=1e-5, atol=1e-6)
        assert answer.clamped == bool((np.abs(raw) > 0.05).any())
        clamped_seen += answer.clamped
    assert clamped_seen > 0, "the test's limits should clamp some answers"
    assert not [m for m in answers.snapshot() if m.header.stamp.sec >= 2000], "a bad input was answered"
    # The commands travel apart from the predictions: wait for the last good input's.
    last_raw = reference.run(None, {"joint_positions": good[-1][None], "target": target[None]})[0][0]
    commands.wait_for(lambda m: np.allclose(m.data, np.clip(last_raw, -0.05, 0.05), rtol=1e-5, atol=1e-6), 20,
                      "the command of the last good input")
    sent = commands.snapshot()
    assert len(sent) >= len(good) and all(finite_and_within(list(m.data), 0.05) for m in sent)
    # The second report to arrive after every good answer did was published after the node counted them all
    # (the first may have been on its way before).
    acted = reports.wait_for(lambda a: int(diagnostic_values(a)["guard_out_of_envelope_input"]) >= 2
                             and int(diagnostic_values(a)["guard_non_finite_input"]) >= 4, 20,
                             "the guard's counters in /diagnostics", after=len(reports.snapshot()) + 1)
    values = diagnostic_values(acted)
    assert values["level"] == "1" and "safety guard acted" in values["message"], values
    # Every clamped answer is counted. The node answered the repeated first (zero) input some number of
    # times, not all of them heard here while discovery settled; each of those is clamped or none is.
    raw_zero = reference.run(None, {"joint_positions": np.zeros((1, 3), np.float32), "target": target[None]})[0][0]
    zero_clamped = bool((np.abs(raw_zero) > 0.05).any())
    assert all(m.clamped == zero_clamped for m in answers.snapshot() if m.header.stamp.sec == 1)
    first_answers = int(values["predictions"]) - len(good)
    assert first_answers >= 1
    assert int(values["guard_clamped_output"]) == clamped_seen + zero_clamped * first_answers, values
    assert values["guard_non_finite_output"] == "0"
    # Five joint states and one target withheld: NaN and infinities (4), +-1e6 out of the envelope (2).
    assert (values["dropped_guard"], values["guard_non_finite_input"], values["guard_out_of_envelope_input"]) \
        == ("6", "4", "2")
    assert node.alive


def set_parameters(ros, **values: object) -> list:  # type: ignore[no-untyped-def]
    """Set parameters of the node as `ros2 param set` does (one request each); the results."""
    client = ros.node.create_client(SetParameters, f"{NODE}/set_parameters")
    results = []
    for name, value in values.items():
        if isinstance(value, list):
            typed = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=value)
        elif isinstance(value, float):
            typed = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            typed = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))
        results.append(ros.call(client, SetParameters.Request(parameters=[Parameter(name=name, value=typed)]),
                                10).results[0])
    return results


def test_a_graph_that_yields_nan_never_reaches_the_robot(processes, ros, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    # No envelope in this model (as one exported before envelopes): it serves, guarded against non-finite values.
    path = sqrt_model(features("manipulation"), tmp_path / "sqrt.onnx")
    node = start_inference(processes, ros, f"model_path:={path}", "input_qos:=reliable")
    answers = predictions(ros)
    commands = Collector(ros, Float64MultiArray, "/arm_controller/commands")
    reports = Collector(ros, DiagnosticArray, "/diagnostics")
    joints, targets = arm_publishers(ros)
    targets.publish(target_point(vec(0.0, 0.0)))
    publish_until(lambda: joints.publish(joint_state(1, vec(1, 1, 1))), lambda: bool(answers.snapshot()), 20,
                  "a first prediction")
    for index in range(5):
        joints.publish(joint_state(2000 + index, vec(-1.0, 4.0, 9.0)))  # sqrt(-1): NaN
        joints.publish(joint_state(1000 + index, vec(4.0, 9.0, 16.0 + index)))
    for index in range(5):
        answer = answers.wait_for(lambda m, i=index: m.header.stamp.sec == 1000 + i, 20, f"good input {index}")
        np.testing.assert_allclose(answer.data, [2.0, 3.0, math.sqrt(16.0 + index)], rtol=1e-6)
    assert not [m for m in answers.snapshot() if m.header.stamp.sec >= 2000]
    commands.wait_for(lambda m: np.allclose(m.data, [2.0, 3.0, math.sqrt(20.0)], rtol=1e-6), 20,
                      "the command of the last good input")
    assert all(np.isfinite(m.data).all() for m in commands.snapshot()) and len(commands.snapshot()) >= 5
    reports.wait_for(lambda a: diagnostic_values(a)["guard_non_finite_output"] == "5", 20,
                     "five withheld outputs counted")

    # Bad guard parameters are refused with the reason, and the old value stays.
    refused = set_parameters(ros, out_of_envelope="sometimes", envelope_margin=-0.5, stale_input_timeout_s=-0.5,
                             output_limits=["joint_commands:1:-1"])
    assert [r.successful for r in refused] == [False] * 4
    assert "drop, clamp, pass" in refused[0].reason
    assert "envelope_margin" in refused[1].reason and "100" in refused[1].reason  # rclpy's range check words it
    assert "-1 (the task's default)" in refused[2].reason and "above max" in refused[3].reason
    accepted = set_parameters(ros, output_limits=["joint_commands[0]:-0.5:0.5"], out_of_envelope="clamp")
    assert all(r.successful for r in accepted)
    assert node.alive


def test_a_stale_scan_stops_the_base_once(processes, ros, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    doc = with_ranges(features("navigation"), {"scan": ([0.0] * 64, [10.0] * 64)})
    path = linear_model(doc, tmp_path / "nav.onnx", model_id="mdl_nav", version="v1", seed=5)
    node = start_inference(processes, ros, f"model_path:={path}", "input_qos:=reliable")  # navigation: 0.5 s
    commands = Collector(ros, Twist, "/cmd_vel")
    reports = Collector(ros, DiagnosticArray, "/diagnostics")
    scans = ros.node.create_publisher(LaserScan, "/scan", RELIABLE)
    wait_matched(scans)
    ranges = [float(v) for v in np.linspace(0.5, 5.0, 64)]

    def is_zero(twist: Twist) -> bool:
        return (twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.x, twist.angular.y,
                twist.angular.z) == (0.0,) * 6

    def repeated_stop(sent: list[Twist]) -> bool:
        return any(is_zero(a) and is_zero(b) for a, b in zip(sent, sent[1:], strict=False))

    # The safe output follows every stop, once. (A stall of this test's publishing thread longer than the
    # timeout is a stop too, on a loaded machine: the test counts stops, it does not assume two.)
    for _ in range(2):
        # Counted from here: the answers to the last round's scans may have kept coming after it saw five.
        start = len(commands.snapshot())
        publish_until(lambda: scans.publish(LaserScan(ranges=ranges)),
                      lambda s=start: sum(1 for m in commands.snapshot()[s:] if not is_zero(m)) >= 5, 20,
                      "commands while scans arrive")
        wait_until(lambda: is_zero(commands.snapshot()[-1]), 10, "a zero Twist after the scans stop")
        time.sleep(1.5)  # three timeouts more: no second zero Twist for this stop
        sent = commands.snapshot()
        assert is_zero(sent[-1]) and not repeated_stop(sent)
    sent = commands.snapshot()
    assert all(math.isfinite(m.linear.x) and math.isfinite(m.angular.z) for m in sent)
    stops = str(sum(map(is_zero, sent)))
    stale = reports.wait_for(lambda a: diagnostic_values(a)["guard_stale_input"] == stops, 20, "stale inputs counted")
    assert diagnostic_values(stale)["dropped_guard"] == "0" and node.alive


def test_scans_with_rep117_values_are_answered_as_their_substitutes(processes, ros, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    """+Inf (no return), -Inf (too close) and NaN (invalid) in a real scan: read by REP 117, not dropped."""
    doc = with_ranges(features("navigation"), {"scan": ([0.0] * 64, [10.0] * 64)})
    path = linear_model(doc, tmp_path / "nav.onnx", model_id="mdl_rep117", version="v1", seed=7)
    node = start_inference(processes, ros, f"model_path:={path}", "input_qos:=reliable")
    answers = predictions(ros)
    scans = ros.node.create_publisher(LaserScan, "/scan", RELIABLE)
    wait_matched(scans)
    clean = [float(v) for v in np.linspace(0.5, 5.0, 64)]
    raw = list(clean)
    raw[3], raw[10], raw[20] = math.inf, -math.inf, math.nan
    substituted = list(clean)
    # range_max for no return, range_min for too close, the nearer of the NaN's valid neighbours.
    substituted[3], substituted[10], substituted[20] = 8.0, 0.1, min(clean[19], clean[21])

    def scan(stamp: int, ranges: list[float]) -> LaserScan:
        msg = LaserScan(ranges=ranges, range_min=0.1, range_max=8.0)
        msg.header.stamp.sec = stamp
        return msg

    publish_until(lambda: scans.publish(scan(1, clean)), lambda: bool(answers.snapshot()), 20, "a first prediction")
    scans.publish(scan(100, raw))
    scans.publish(scan(200, substituted))
    with_specials = answers.wait_for(lambda m: m.header.stamp.sec == 100, 20, "the answer to the scan with Inf/NaN")
    as_substituted = answers.wait_for(lambda m: m.header.stamp.sec == 200, 20, "the answer to its substitute")
    assert np.isfinite(with_specials.data).all()
    np.testing.assert_array_equal(with_specials.data, as_substituted.data)
    expected = reference_session(path).run(None, {"scan": np.array([substituted], dtype=np.float32)})[0][0]
    np.testing.assert_allclose(with_specials.data, expected, rtol=1e-5, atol=1e-6)
    assert node.alive
