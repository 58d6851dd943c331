"""/diagnostics levels follow the recent window: OK when serving cleanly, WARN while messages drop,
ERROR with no model; the counters stay cumulative."""

import pathlib

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from inference_helpers import (
    Collector,
    arm_publishers,
    diagnostic_values,
    joint_state,
    predictions,
    publish_until,
    start_inference,
    target_point,
)
from onnx_models import features, linear_model

from kairo_ros.inference.diagnostics import RECENT_WINDOW_S, RecentCount, StatsSnapshot, diagnostic_status
from kairo_ros.inference.model_session import ModelIdentity

IDENTITY = ModelIdentity("mdl_diag", "v1", "ab" * 32, "/tmp/m.onnx")


def snapshot(dropped: int, recent_dropped: int, errors: int = 0, recent_errors: int = 0) -> StatsSnapshot:
    return StatsSnapshot(inputs=100, predictions=100 - dropped, dropped={"waiting_for_inputs": dropped},
                         input_rate_hz=10.0, latency_p50_ms=1.0, latency_p99_ms=2.0,
                         last_error="bad input" if errors else "", last_error_code="bad_input" if errors else "",
                         errors=errors, swaps=1, rejected_models=0, recent_dropped=recent_dropped,
                         recent_errors=recent_errors)


def as_int(level: bytes | int) -> int:
    return int.from_bytes(level, "little") if isinstance(level, bytes) else int(level)


OK, WARN, ERROR = (as_int(lvl) for lvl in (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR))


def level(status: DiagnosticStatus) -> int:
    return as_int(status.level)


def test_recent_count_forgets_what_is_older_than_its_window() -> None:
    recent = RecentCount(10.0)
    recent.add(3, now=100.2)
    recent.add(1, now=105.9)
    assert recent.total(now=106.0) == 4
    assert recent.total(now=110.5) == 1, "the events of second 100 left the window"
    assert recent.total(now=116.0) == 0


def test_level_reflects_the_window_and_counters_stay_cumulative() -> None:
    quiet = diagnostic_status("/kairo/kairo_inference", "active", IDENTITY, "CPUExecutionProvider",
                              snapshot(dropped=7, recent_dropped=0, errors=2, recent_errors=0))
    assert level(quiet) == OK
    assert {kv.key: kv.value for kv in quiet.values}["dropped"] == "7"
    dropping = diagnostic_status("/kairo/kairo_inference", "active", IDENTITY, "CPUExecutionProvider",
                                 snapshot(dropped=7, recent_dropped=2))
    assert level(dropping) == WARN and "2 messages dropped" in dropping.message
    failing = diagnostic_status("/kairo/kairo_inference", "active", IDENTITY, "CPUExecutionProvider",
                                snapshot(dropped=0, recent_dropped=0, errors=1, recent_errors=1))
    assert level(failing) == WARN and "bad_input" in failing.message
    no_model = diagnostic_status("/kairo/kairo_inference", "active", None, "", snapshot(0, 0))
    assert level(no_model) == ERROR


def test_warn_while_dropping_then_ok_when_serving_cleanly(processes, ros, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    path = linear_model(features("manipulation"), tmp_path / "arm.onnx", model_id="mdl_diag", version="v1")
    node = start_inference(processes, ros, f"model_path:={path}", "input_qos:=reliable")
    reports = Collector(ros, DiagnosticArray, "/diagnostics")
    answers = predictions(ros)
    joints, targets = arm_publishers(ros)
    # Joint states without a target yet: each is dropped (waiting for inputs).
    for index in range(5):
        joints.publish(joint_state(index, np.zeros(3)))
    warn = reports.wait_for(lambda a: int(diagnostic_values(a)["dropped"]) > 0, 20, "a report counting drops")
    assert diagnostic_values(warn)["level"] == str(WARN), diagnostic_values(warn)
    dropped = diagnostic_values(warn)["dropped"]
    targets.publish(target_point(np.array([0.3, 0.1])))
    publish_until(lambda: joints.publish(joint_state(100, np.zeros(3))), lambda: bool(answers.snapshot()), 20,
                  "a first prediction")
    # Serving cleanly for longer than the window: the level comes back to OK, the counter stays.
    reports.messages.clear()
    ok = reports.wait_for(lambda a: diagnostic_values(a)["level"] == str(OK),
                          RECENT_WINDOW_S + 15, "an OK report once the drops left the window")
    values = diagnostic_values(ok)
    assert int(values["dropped"]) >= int(dropped) > 0 and values["dropped_recently"] == "0"
    assert int(values["predictions"]) >= 1 and node.alive
