"""Fleet rollout end to end: a real backend, kairo_manager and three kairo_inference robots (rob_1..3,
each in its own namespace and process) over DDS, heartbeats every 0.5 s.

The module's tests build on each other, in file order, on one model: rob_2 shadows v2 beside v1 (and the
goal's cancel rolls the shadow back); a canary makes rob_1 alone serve v2, then a promote widens it to all
three; a broken v3 (NaN outputs) sent to rob_3 rolls back by itself, and rob_3 serves v2 again.
"""

from __future__ import annotations

import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import onnx
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from inference_helpers import RELIABLE, Collector, download_model, reference_session
from onnx import numpy_helper
from rclpy.action import ActionClient
from sensor_msgs.msg import LaserScan

from conftest import DOMAIN_ID, Backend, TrainedModel, new_group, train_model
from kairo_features.schema import features_from_metadata
from kairo_interfaces.action import DeployModel
from kairo_interfaces.msg import ModelEvent, Prediction, ShadowReport
from kairo_interfaces.srv import ListRobots
from kairo_ros.api import KairoApiClient
from kairo_ros.testing.commander import ActionOutcome, KairoCommander, RunningGoal, send_goal
from kairo_ros.testing.graph import SpinningNode, wait_until
from kairo_ros.testing.processes import ChildProcess, ProcessGroup

ROBOTS = ("rob_1", "rob_2", "rob_3")
HEARTBEAT_S = 0.5
OWNER = "rob_fleetowner"   # the robot the model is trained for; the fleet serves it by model_id
MANAGER = "/kairo/kairo_manager"
BEAMS = 64


def inference_node(robot: str) -> str:
    return f"/{robot}/kairo_inference"


@dataclass
class Fleet:
    backend: Backend
    ros: SpinningNode
    kairo: KairoCommander
    api: KairoApiClient
    v1: TrainedModel
    v2: TrainedModel
    nodes: dict[str, ChildProcess]
    manager: ChildProcess
    deploy: ActionClient
    list_robots: Any
    predictions: dict[str, Collector] = field(default_factory=dict)
    scans: dict[str, Any] = field(default_factory=dict)
    stamp: list[int] = field(default_factory=lambda: [1000])
    sent: dict[int, np.ndarray] = field(default_factory=dict)   # every scan published, by its stamp

    @property
    def model_id(self) -> str:
        return self.v1.model_id

    def next_stamp(self) -> int:
        self.stamp[0] += 1
        return self.stamp[0]

    def answer(self, robot: str, ranges: np.ndarray, timeout_s: float = 20) -> Prediction:
        """Publish one scan to `robot` and return its prediction (again every second until it answers)."""
        stamp = self.next_stamp()
        self.sent[stamp] = ranges.astype(np.float32)
        scan = LaserScan(ranges=ranges.astype(np.float32).tolist())
        scan.header.stamp.sec = stamp
        collector = self.predictions[robot]
        found: list[Prediction] = []

        resend = [time.monotonic() + 1.0]

        def answered() -> bool:
            found[:] = [m for m in collector.snapshot() if m.header.stamp.sec == stamp][:1]
            if not found and time.monotonic() > resend[0]:
                self.scans[robot].publish(scan)
                resend[0] = time.monotonic() + 1.0
            return bool(found)

        self.scans[robot].publish(scan)
        wait_until(answered, timeout_s, f"{robot}'s answer to scan {stamp}", period_s=0.02)
        return found[0]

    def wait_serving(self, robot: str, version: str, timeout_s: float = 60) -> None:
        ranges = np.full(BEAMS, 2.0, np.float32)
        wait_until(lambda: self.answer(robot, ranges).model_version == version, timeout_s,
                   f"{robot} serving {version}", period_s=0.2)

    def robot(self, robot: str) -> Any:
        return self.api.get_robot(robot)

    def send_deploy(self, goal: DeployModel.Goal, feedback: list[DeployModel.Feedback] | None = None
                    ) -> RunningGoal[DeployModel.Result]:
        self.ros.wait_for_action_server(self.deploy, 30, "deploy")
        handle = send_goal(self.ros, self.deploy, goal, "deploy", feedback.append if feedback is not None else None,
                           20)
        assert handle.accepted
        return RunningGoal(self.ros, handle, "deploy")

    def robots_over_ros(self) -> dict[str, Any]:
        self.ros.wait_for_service(self.list_robots, 30)
        answer = self.ros.call(self.list_robots, ListRobots.Request(), 20)
        assert answer.success, answer.message
        return {r.id: r for r in answer.robots}


def start_robot(group: ProcessGroup, ros: SpinningNode, backend: Backend, model_id: str, robot: str,
                cache: pathlib.Path) -> ChildProcess:
    argv = ["kairo_inference", "--ros-args", "-r", f"__ns:=/{robot}", "-r", f"/scan:=/{robot}/scan",
            "-r", f"/cmd_vel:=/{robot}/cmd_vel", "--log-level", "kairo_inference:=info"]
    for param in (f"api_url:={backend.url}", f"cache_dir:={cache}", f"model_id:={model_id}", f"robot_id:={robot}",
                  f"heartbeat_period_s:={HEARTBEAT_S}", "poll_period_s:=0.0", "input_qos:=reliable",
                  "request_timeout_s:=5.0"):
        argv += ["-p", param]
    child = group.start(f"kairo_inference_{robot}", argv, env={"KAIRO_API_KEY": backend.key})
    group.wait_until(lambda: inference_node(robot) in ros.node_names(), 60, inference_node(robot), watch=child)
    return child


@pytest.fixture(scope="module")
def fleet(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    v1 = train_model(backend, "navigation", robot_id=OWNER, epochs=1)
    # Two epochs: other weights than v1's (training is seeded, so the same settings give the same model).
    v2 = train_model(backend, "navigation", robot_id=OWNER, epochs=2, dataset_id=v1.dataset_id, promote=False)
    group = new_group(root / "logs")
    with SpinningNode("kairo_fleet_test", domain_id=DOMAIN_ID, threads=2) as ros, \
            KairoApiClient(backend.url, backend.key, timeout_s=10) as api:
        try:
            manager = group.start("kairo_manager", [
                "kairo_manager", "--ros-args", "-r", "__ns:=/kairo", "-p", f"api_url:={backend.url}",
                "-p", "poll_period_s:=0.2", "-p", "request_timeout_s:=5.0", "-p", "deploy_watch_period_s:=0.3"],
                env={"KAIRO_API_KEY": backend.key, "ROS_LOG_DIR": str(root / "roslog")})
            group.wait_until(lambda: MANAGER in ros.node_names(), 60, MANAGER, watch=manager)
            nodes = {robot: start_robot(group, ros, backend, v1.model_id, robot, root / f"cache_{robot}")
                     for robot in ROBOTS}
            kairo = KairoCommander(ros)
            fleet = Fleet(backend, ros, kairo, api, v1, v2, nodes, manager,
                          ros.action_client(DeployModel, "/kairo/deploy"),
                          ros.node.create_client(ListRobots, "/kairo/list_robots"))
            for robot in ROBOTS:
                fleet.predictions[robot] = Collector(ros, Prediction, f"{inference_node(robot)}/prediction")
                fleet.scans[robot] = ros.node.create_publisher(LaserScan, f"/{robot}/scan", RELIABLE)
            for robot in ROBOTS:
                fleet.wait_serving(robot, v1.version)
            # Deployments target robots that reported: every one has, with v1.
            wait_until(lambda: all(fleet.robot(r).version == v1.version for r in ROBOTS), 30, "three heartbeats")
            yield fleet
        finally:
            group.stop_all()


def deploy_goal(fleet: Fleet, version: str, robots: list[str], *, mode: str = "active", wait: bool = False,
                **guard: float) -> DeployModel.Goal:
    goal = DeployModel.Goal(model_id=fleet.model_id, version=version, mode=mode, robots=robots,
                            wait_for_complete=wait)
    for name, value in guard.items():
        setattr(goal, name, value)
    return goal


def event_seen(fleet: Fleet, event: str, version: str, robots: list[str]) -> Callable[[ModelEvent], bool]:
    return lambda e: (e.event == event and e.model_id == fleet.model_id and e.version == version
                      and sorted(e.robots) == sorted(robots))


def test_a_shadow_publishes_only_the_active_outputs_and_measures_the_candidate(
        fleet: Fleet, tmp_path: pathlib.Path) -> None:
    reports = Collector(fleet.ros, ShadowReport, f"{inference_node('rob_2')}/shadow")
    diagnostics = Collector(fleet.ros, DiagnosticArray, "/diagnostics")
    twists = Collector(fleet.ros, Twist, "/rob_2/cmd_vel")
    feedback: list[DeployModel.Feedback] = []
    # Observed for long, so the goal is still running when the test cancels it.
    goal = fleet.send_deploy(deploy_goal(fleet, fleet.v2.version, ["rob_2"], mode="shadow", wait=True,
                                         min_observation_s=600.0, report_within_s=120.0), feedback)
    wait_until(lambda: any(f.state == "observing" and f.robots_reporting == 1 for f in feedback), 60,
               "feedback: rob_2 shadowing v2")
    assert feedback[-1].robots_targeted == 1 and "rob_2: shadowing" in feedback[-1].guard_state
    reports.wait_for(lambda r: r.candidate_version == fleet.v2.version, 30, "a ShadowReport of v2")
    start = max(r.samples for r in reports.snapshot() if r.candidate_version == fleet.v2.version)

    rng = np.random.default_rng(11)
    inputs = rng.uniform(0.3, 6.0, (40, BEAMS)).astype(np.float32)
    mine = {fleet.answer("rob_2", scan).header.stamp.sec for scan in inputs}
    # Every answer counts, a scan sent again (no answer within a second, on a loaded machine) included.
    settled: list[Any] = []

    def caught_up() -> bool:
        answers = [m for m in fleet.predictions["rob_2"].snapshot() if m.header.stamp.sec in mine]
        latest = reports.snapshot()[-1]
        settled[:] = [latest, answers]
        return latest.candidate_version == fleet.v2.version and latest.samples == len(answers) >= len(inputs)

    wait_until(caught_up, 30, "the shadow's report of every answered input", period_s=0.1)
    report, answers = settled
    assert {m.model_version for m in answers} == {fleet.v1.version}
    assert report.errors == 0 and report.dropped == 0
    assert report.active_version == fleet.v1.version and report.deployment_id
    published = np.array([m.data for m in answers], dtype=np.float32)
    scans = np.array([fleet.sent[m.header.stamp.sec] for m in answers], dtype=np.float32)

    # Offline, with onnxruntime, on the same inputs: the candidate against what rob_2 published.
    # (start == 0: rob_2 answered no input between loading v2 and the first of these.)
    assert start == 0
    v1 = reference_session(download_model(fleet.backend, fleet.model_id, fleet.v1.version, tmp_path / "v1.onnx"))
    v2 = reference_session(download_model(fleet.backend, fleet.model_id, fleet.v2.version, tmp_path / "v2.onnx"))
    candidate = np.concatenate([v2.run(None, {"scan": scan[None]})[0] for scan in scans])
    active = np.concatenate([v1.run(None, {"scan": scan[None]})[0] for scan in scans])
    diff = np.abs(candidate.astype(np.float64) - published.astype(np.float64))
    assert not np.allclose(active, candidate, atol=1e-3), "v1 and v2 answer differently"
    assert not np.allclose(published, candidate, atol=1e-4), "rob_2 published v1's commands, not v2's"
    # What v1 answers, through rob_2's safety guard (its output envelope, widened by envelope_margin 0.1).
    envelope = features_from_metadata(v1.get_modelmeta().custom_metadata_map).outputs[0].range
    assert envelope is not None
    low, high = np.array(envelope.low), np.array(envelope.high)
    low, high = (low - 0.1 * (high - low)).astype(np.float32), (high + 0.1 * (high - low)).astype(np.float32)
    np.testing.assert_allclose(published, np.clip(active, low, high), rtol=1e-5, atol=1e-5)
    index = report.outputs.index("cmd_vel")
    np.testing.assert_allclose(report.mean_abs_diff[index], diff.mean(), rtol=1e-5)
    np.testing.assert_allclose(report.max_abs_diff[index], diff.max(), rtol=1e-5)
    tolerance = report.tolerance[index]
    assert tolerance == pytest.approx(0.1), "the navigation features' tolerance"
    assert report.within_tolerance[index] == pytest.approx(np.count_nonzero(diff <= tolerance) / diff.size)
    assert report.divergence == pytest.approx(diff.mean(), rel=1e-5)
    # Every command on rob_2's topic is one of v1's answers.
    commands = np.array([[t.linear.x, t.angular.z] for t in twists.snapshot()], dtype=np.float32)
    for row in published:
        assert np.any(np.all(np.isclose(commands, row, atol=1e-6), axis=1))

    # The heartbeat carries it to the fleet API, and /diagnostics has a shadow entry.
    # (Against rob_2's latest ShadowReport: an answer to a scan sent again may have come in since.)
    heard: list[dict[str, Any]] = []

    def heartbeat_caught_up() -> bool:
        heard[:] = [fleet.robot("rob_2").shadow or {}]
        return heard[0].get("samples") == reports.snapshot()[-1].samples >= len(answers)

    wait_until(heartbeat_caught_up, 20, "rob_2's heartbeat with the shadow results")
    shadow, latest = heard[0], reports.snapshot()[-1]
    assert shadow["version"] == fleet.v2.version
    if latest.samples == report.samples:
        assert shadow["divergence"] == pytest.approx(diff.mean(), rel=1e-5)
    assert shadow["divergence"] == pytest.approx(latest.divergence, rel=1e-5)
    status = diagnostics.wait_for(lambda a: any(s.name == f"{inference_node('rob_2')}: shadow" for s in a.status),
                                  20, "rob_2's shadow diagnostics")
    values = {kv.key: kv.value for s in status.status if s.name.endswith(": shadow") for kv in s.values}
    assert values["candidate_version"] == fleet.v2.version
    assert fleet.robots_over_ros()["rob_2"].shadow_version == fleet.v2.version

    # Cancel = rollback: the deployment ends, rob_2 lets the candidate go and keeps serving v1.
    assert goal.cancel()
    outcome: ActionOutcome[DeployModel.Result] = goal.result(30)
    assert outcome.canceled and outcome.result.state == "rolled_back"
    assert "operator" in outcome.result.reason
    fleet.kairo.wait_for_event(event_seen(fleet, ModelEvent.ROLLED_BACK, fleet.v2.version, ["rob_2"]), 20,
                               "the rolled_back event")
    wait_until(lambda: fleet.robot("rob_2").shadow is None, 20, "rob_2 no longer shadowing")
    assert fleet.answer("rob_2", inputs[0]).model_version == fleet.v1.version


def test_a_canary_reaches_one_robot_and_a_promote_widens_it_to_all(fleet: Fleet) -> None:
    v1, v2 = fleet.v1.version, fleet.v2.version
    diagnostics = Collector(fleet.ros, DiagnosticArray, "/diagnostics")
    # Without wait_for_complete the goal ends once the deployment exists.
    first = fleet.send_deploy(deploy_goal(fleet, v2, ["rob_1"], min_observation_s=600.0)).result(30)
    assert first.succeeded and first.result.success and first.result.state == "rolling_out"
    # With it, the goal follows the deployment (superseding the first) until rob_1 served v2 within the
    # guard for min_observation_s.
    feedback: list[DeployModel.Feedback] = []
    outcome = fleet.send_deploy(deploy_goal(fleet, v2, ["rob_1"], wait=True, min_observation_s=1.0),
                                feedback).result(90)
    assert outcome.succeeded and outcome.result.success, outcome.result.reason
    assert outcome.result.state == "complete" and "within the guard" in outcome.result.reason
    assert feedback and all(f.robots_targeted == 1 and f.deployment_id == outcome.result.deployment_id
                            for f in feedback)
    assert fleet.api.get_deployment(fleet.model_id, first.result.deployment_id).state == "cancelled"
    deployment_id = outcome.result.deployment_id
    fleet.kairo.wait_for_event(event_seen(fleet, ModelEvent.DEPLOYED, v2, ["rob_1"]), 20, "the deployed event")
    fleet.wait_serving("rob_1", v2)
    for robot in ("rob_2", "rob_3"):
        assert fleet.answer(robot, np.full(BEAMS, 2.0, np.float32)).model_version == v1
    expected = {"rob_1": v2, "rob_2": v1, "rob_3": v1}
    reported: dict[str, str] = {}

    def diagnosed(array: DiagnosticArray) -> bool:
        for status in array.status:
            robot = status.name.split("/")[1] if status.name.endswith("kairo_inference: model") else ""
            if robot in expected:
                reported[robot] = next(kv.value for kv in status.values if kv.key == "model_version")
        return reported == expected

    diagnostics.wait_for(diagnosed, 20, "each robot's /diagnostics naming the version it serves")
    wait_until(lambda: {r: fleet.robot(r).version for r in ROBOTS} == expected, 20, "GET /v1/robots")
    over_ros = fleet.robots_over_ros()
    assert {r: over_ros[r].version for r in ROBOTS} == expected
    assert all(over_ros[r].status == "online" and over_ros[r].model_id == fleet.model_id for r in ROBOTS)
    assert over_ros["rob_1"].last_seen.sec > 0 and over_ros["rob_1"].node == inference_node("rob_1")
    # The deployment sees rob_1 serving v2; promoting it makes v2 the active version of the fleet.
    promoted = fleet.api.promote_deployment(fleet.model_id, deployment_id)
    assert promoted.state == "complete"
    fleet.kairo.wait_for_event(event_seen(fleet, ModelEvent.WIDENED, v2, []), 20, "the widened event")
    for robot in ROBOTS:
        fleet.wait_serving(robot, v2)
    wait_until(lambda: all(fleet.robot(r).version == v2 for r in ROBOTS), 20, "every robot reporting v2")
    assert all(node.alive and node.output().count("wired:") == 1 for node in fleet.nodes.values()), \
        "no node restarted or rewired"


def nan_version(fleet: Fleet, tmp_path: pathlib.Path) -> str:
    """A version whose weights are all NaN, as a training that diverged would leave it.

    The backend refuses to finish such a run, so the test trains a healthy v3 and then replaces its
    artifact in the backend's data dir with the same graph and NaN weights, recording the new sha256
    as the training would have: the version then goes through deployment, download and load like any.
    """
    v3 = train_model(fleet.backend, "navigation", robot_id=OWNER, epochs=3, dataset_id=fleet.v1.dataset_id,
                     promote=False)
    artifact = fleet.backend.data_dir / "artifacts" / v3.model_id / v3.version / "model.onnx"
    model = onnx.load(str(artifact))
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32 and values.size > 1:
            tensor.CopyFrom(numpy_helper.from_array(np.full_like(values, np.nan), tensor.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    data = broken.read_bytes()
    artifact.write_bytes(data)
    import hashlib

    with sqlite3.connect(fleet.backend.data_dir / "kairo.db") as db:
        db.execute("UPDATE runs SET sha256=? WHERE model_id=? AND version=?",
                   (hashlib.sha256(data).hexdigest(), v3.model_id, v3.version))
    session = reference_session(broken)
    assert np.isnan(session.run(None, {"scan": np.full((1, BEAMS), 2.0, np.float32)})[0]).all()
    return v3.version


def test_a_broken_candidate_rolls_back_by_itself(fleet: Fleet, tmp_path: pathlib.Path) -> None:
    serving = fleet.api.get_model(fleet.model_id).active_version
    broken = nan_version(fleet, tmp_path)
    feedback: list[DeployModel.Feedback] = []
    goal = fleet.send_deploy(deploy_goal(fleet, broken, ["rob_3"], wait=True, min_observation_s=30.0,
                                         report_within_s=30.0), feedback)
    # rob_3's commands keep coming in: each answer of the broken version is withheld by its safety guard.
    stop = threading.Event()
    rng = np.random.default_rng(5)

    def stream() -> None:
        while not stop.wait(0.05):
            fleet.scans["rob_3"].publish(LaserScan(ranges=rng.uniform(0.3, 6.0, BEAMS).astype(np.float32).tolist()))

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        outcome = goal.result(120)
    finally:
        stop.set()
        streamer.join()
    assert outcome.aborted and not outcome.result.success
    assert outcome.result.state == "rolled_back"
    assert "rob_3" in outcome.result.reason and "drop rate" in outcome.result.reason, outcome.result.reason
    assert feedback and all(f.robots_targeted == 1 for f in feedback)
    fleet.kairo.wait_for_event(event_seen(fleet, ModelEvent.ROLLED_BACK, broken, ["rob_3"]), 20,
                               "the rolled_back event")
    # Back to the active version without a restart.
    fleet.wait_serving("rob_3", serving)
    assert fleet.nodes["rob_3"].alive and fleet.nodes["rob_3"].output().count("wired:") == 1
    deployment = fleet.api.get_deployment(fleet.model_id, outcome.result.deployment_id)
    assert deployment.state == "rolled_back" and deployment.reason == outcome.result.reason
    (progress,) = deployment.progress
    assert progress.robot_id == "rob_3" and progress.status == "failed"
    assert progress.version == broken, "rob_3 had served the broken version (its guard withheld every answer)"


def test_the_readme_deploy_goal_is_a_valid_goal() -> None:
    """The README's `ros2 action send_goal /kairo/deploy` YAML fills a DeployModel goal, field by field with
    the message's own type checks (as ros2cli's set_message_fields; ints are not taken for floats here)."""
    import re

    import yaml

    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(r'ros2 action send_goal /kairo/deploy kairo_interfaces/action/DeployModel \\\n\s*"([^"]+)"',
                      readme)
    assert found, "README shows no deploy goal"
    values = yaml.safe_load(found.group(1))
    goal = DeployModel.Goal()
    for name, value in values.items():
        assert hasattr(goal, name), f"DeployModel.Goal has no field {name!r}"
        setattr(goal, name, value)
    assert goal.mode == "active" and list(goal.robots) == ["rob_1"] and goal.wait_for_complete
    from kairo_ros.manager.deploy_action import request_from_goal

    request, problem = request_from_goal(goal)
    assert request is not None, problem
    assert request.robots == ("rob_1",) and request.guard.min_observation_s == 60.0


def test_the_client_reads_the_fleet_as_the_raw_json(fleet: Fleet) -> None:
    from kairo_ros.api import (
        DeploymentRequest,
        KairoArgumentError,
        KairoNotFoundError,
        KairoValidationError,
    )

    model_id, api = fleet.model_id, fleet.api
    with fleet.backend.client() as raw:
        raw_robots = raw.get("/v1/robots").json()
        raw_deployments = raw.get(f"/v1/models/{model_id}/deployments").json()
        raw_assignment = raw.get(f"/v1/models/{model_id}/assignment", params={"robot_id": "rob_1"}).json()
    robots = api.list_robots()
    assert robots.total == raw_robots["total"]
    assert {r.id for r in robots.data} == {r["id"] for r in raw_robots["data"]} >= set(ROBOTS)
    robot, raw_robot = api.get_robot("rob_1"), next(r for r in raw_robots["data"] if r["id"] == "rob_1")
    assert (robot.node, robot.model_id, robot.period_s, robot.first_seen, robot.version) == (
        raw_robot["node"], raw_robot["model_id"], raw_robot["period_s"], raw_robot["first_seen"],
        raw_robot["serving"]["version"])
    assert robot.health is not None and robot.health.window_s == raw_robot["health"]["window_s"]
    deployments = api.list_deployments(model_id)
    assert deployments.total == raw_deployments["total"] >= 3
    for typed, plain in zip(deployments.data, raw_deployments["data"], strict=True):
        assert (typed.id, typed.state, typed.reason, typed.mode, typed.version, list(typed.robots)) == (
            plain["id"], plain["state"], plain["reason"] or "", plain["mode"], plain["version"], plain["robots"])
        assert typed.guard.max_drop_rate == plain["guard"]["max_drop_rate"]
        assert [(p.robot_id, p.status) for p in typed.progress] == [(p["robot_id"], p["status"])
                                                                    for p in plain["progress"]]
        assert api.get_deployment(model_id, typed.id).state == typed.state
    assignment = api.assignment(model_id, "rob_1")
    assert (assignment.version, assignment.sha256, assignment.deployment_id or None, assignment.shadow) == (
        raw_assignment["version"], raw_assignment["sha256"], raw_assignment["deployment_id"], None)
    # A heartbeat answers with the robot's assignment: a new robot gets the active version.
    answer = api.heartbeat("rob_client1", {"period_s": 60.0, "model_id": model_id, "task": "navigation"})
    assert answer is not None and answer.version == api.get_model(model_id).active_version
    assert api.heartbeat("rob_client1", {"period_s": 60.0}) is None, "no model named: no assignment"
    assert api.get_robot("rob_client1").status == "online"
    with pytest.raises(KairoNotFoundError) as missing:
        api.get_robot("rob_nobody")
    assert missing.value.status == 404
    with pytest.raises(KairoValidationError):
        api.heartbeat("rob_client1", {"period_s": 60.0, "unknown_field": 1})
    with pytest.raises(KairoNotFoundError):
        api.create_deployment(model_id, DeploymentRequest(version="v99", robots=("rob_1",)))
    with pytest.raises(KairoArgumentError):
        api.create_deployment(model_id, DeploymentRequest(version="v2", robots=("rob_1",), percent=50))


def test_deleting_the_model_under_a_live_deployment(fleet: Fleet) -> None:
    """Last (it deletes the module's model): the manager stops watching the gone deployment, and every
    robot keeps serving the version it had loaded, its heartbeats answered that the model is gone."""
    serving = fleet.api.get_model(fleet.model_id).active_version
    live = fleet.send_deploy(deploy_goal(fleet, fleet.v1.version, ["rob_2"], min_observation_s=600.0)).result(30)
    assert live.succeeded and live.result.state == "rolling_out"
    fleet.wait_serving("rob_2", fleet.v1.version)
    deleted_at = time.time()
    fleet.api.delete_model(fleet.model_id)
    gone = f"deployment {live.result.deployment_id} of {fleet.model_id} is gone; no longer watched"
    wait_until(lambda: gone in fleet.manager.output(), 20, "the manager letting the deleted deployment go")
    assert fleet.manager.alive
    # Two heartbeats of each robot answered since the deletion.
    wait_until(lambda: all(datetime.fromisoformat(fleet.robot(r).last_seen.replace("Z", "+00:00")).timestamp()
                           > deleted_at + 2 * HEARTBEAT_S for r in ROBOTS), 20, "heartbeats after the deletion")
    for robot, version in (("rob_1", serving), ("rob_2", fleet.v1.version), ("rob_3", serving)):
        assert fleet.answer(robot, np.full(BEAMS, 2.0, np.float32)).model_version == version
        assert fleet.nodes[robot].alive
