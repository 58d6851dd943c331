"""kairo_manager end to end: a real backend process, a real manager process, rclpy clients in the test.

Each result is checked against the backend's own HTTP answers (raw httpx,
not the client under test).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import signal
from typing import Any

import pytest
from ament_index_python.packages import get_package_share_directory

from conftest import Backend, start_backend
from kairo_interfaces.action import ExportModel, TrainModel
from kairo_interfaces.msg import ModelEvent
from kairo_ros.testing.commander import KairoCommander
from kairo_ros.testing.graph import SpinningNode, wait_until
from kairo_ros.testing.processes import ChildProcess, ProcessGroup, free_port

MANAGER = "/kairo/kairo_manager"


def start_manager(processes: ProcessGroup, ros: SpinningNode, url: str, key: str, tmp_path: pathlib.Path,
                  *params: str) -> ChildProcess:
    """kairo_manager in its own process, key in its environment, ROS logs under tmp_path."""
    argv = ["kairo_manager", "--ros-args", "-r", "__ns:=/kairo", "-p", f"api_url:={url}",
            "-p", "poll_period_s:=0.2", "-p", "request_timeout_s:=2.0",
            "-p", f"export_dir:={tmp_path / 'exports'}"]
    for param in params:
        argv += ["-p", param]
    child = processes.start("kairo_manager", argv,
                            env={"KAIRO_API_KEY": key, "ROS_LOG_DIR": str(tmp_path / "roslog")})
    processes.wait_until(lambda: MANAGER in ros.node_names(), 30, f"node {MANAGER}", watch=child)
    return child


def commander(ros: SpinningNode, call_timeout_s: float = 10.0) -> KairoCommander:
    kairo = KairoCommander(ros, call_timeout_s=call_timeout_s)
    kairo.wait_until_ready(30)
    return kairo


def train_goal(dataset_id: str, epochs: int, robot_id: str = "", task: str = "manipulation") -> TrainModel.Goal:
    goal = TrainModel.Goal(dataset_id=dataset_id, robot_id=robot_id, task=task)
    goal.config.epochs = epochs
    return goal


def http_train(backend: Backend, dataset_id: str, robot_id: str, epochs: int) -> dict[str, Any]:
    """Train through the HTTP API directly and wait for the run to end."""
    with backend.client() as raw:
        accepted = raw.post("/v1/models/train", json={"dataset_id": dataset_id, "robot_id": robot_id,
                                                      "task": "manipulation", "config": {"epochs": epochs}}).json()
        path = f"/v1/models/{accepted['model_id']}/runs/{accepted['run_id']}"
        wait_until(lambda: raw.get(path).json()["status"] in ("complete", "failed", "cancelled"), 120,
                   f"run {accepted['run_id']}")
        run: dict[str, Any] = raw.get(path).json()
    assert run["status"] == "complete", run
    return run


def sha256_of(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset_id(backend: Backend) -> str:
    return backend.cli("datasets", "create-demo", "manipulation", "--workspace", "test", "--samples", "2000")


@pytest.fixture(scope="module")
def two_versions(backend: Backend, dataset_id: str) -> list[dict[str, Any]]:
    """One model (robot rob_svc00001) with complete versions v1 and v2, trained over HTTP."""
    return [http_train(backend, dataset_id, "rob_svc00001", epochs) for epochs in (3, 4)]


# --- train ------------------------------------------------------------------------------
def test_train_goals_stream_progress_and_end_with_the_runs_metrics(  # type: ignore[no-untyped-def]
        backend, dataset_id, processes, ros, tmp_path) -> None:
    manager = start_manager(processes, ros, backend.url, backend.key, tmp_path, "robot_id:=rob_param0001")
    kairo = commander(ros)
    feedback: dict[str, list[TrainModel.Feedback]] = {"first": [], "second": []}
    first = kairo.start_train(train_goal(dataset_id, 150, robot_id="rob_train0001"), feedback["first"].append)
    second = kairo.start_train(train_goal(dataset_id, 150), feedback["second"].append)  # robot_id: the parameter
    wait_until(lambda: any(f.status == "running" for f in feedback["first"] + feedback["second"]), 60,
               "a goal running")
    assert kairo.list_models().success, "services answer while goals run"
    outcomes = {"first": first.result(180), "second": second.result(180)}

    with backend.client() as raw:
        for name, outcome in outcomes.items():
            result = outcome.result
            assert outcome.succeeded and result.status == "complete", result.message
            run = raw.get(f"/v1/models/{result.model_id}/runs/{result.run_id}").json()
            assert result.model_version == run["model_version"]
            metrics = run["metrics"]
            assert result.metrics.epochs_run == metrics["epochs_run"] == 150
            for field in ("final_loss", "val_loss", "accuracy", "val_accuracy", "inference_latency_p99_ms"):
                assert getattr(result.metrics, field) == pytest.approx(metrics[field]), field
            assert result.duration_s == pytest.approx(run["duration_s"])
            running = [f for f in feedback[name] if f.status == "running" and f.epoch > 0]
            assert running, f"{name}: no running feedback with epochs"
            epochs = [f.epoch for f in running]
            assert epochs == sorted(epochs) and all(1 <= e <= 150 for e in epochs)
            assert all(f.epochs_total == 150 and f.loss > 0 and f.val_loss > 0 for f in running)
            assert {f.run_id for f in feedback[name]} == {result.run_id}
            kairo.wait_for_event(lambda e, r=result: e.event == ModelEvent.TRAINED and e.model_id == r.model_id
                                 and e.version == r.model_version, 10, f"trained event of {name}")
        second_model = raw.get(f"/v1/models/{outcomes['second'].result.model_id}").json()
    assert second_model["robot_id"] == "rob_param0001", "an empty robot_id falls back to the parameter"
    # One worker: the later goal's run waits in the queue, polled there at least once.
    queued = [[f for f in fb if f.status == "queued" and f.position_in_queue >= 1] for fb in feedback.values()]
    assert max(len(q) for q in queued) >= 2, "no goal was seen queued behind the other"
    assert manager.alive


def test_cancel_cancels_the_backend_run(backend, dataset_id, processes, ros, tmp_path) -> None:  # type: ignore[no-untyped-def]
    start_manager(processes, ros, backend.url, backend.key, tmp_path)
    kairo = commander(ros)
    feedback: list[TrainModel.Feedback] = []
    long_goal = train_goal(dataset_id, 1000, robot_id="rob_cancel001")  # 1000: the backend's most epochs
    long_goal.config.batch_size = 8  # small batches: slow epochs, so the run is surely cancelled mid-way
    goal = kairo.start_train(long_goal, feedback.append)
    wait_until(lambda: any(f.epoch >= 1 for f in feedback) or goal.done(), 90, "the run training")
    assert not goal.done(), goal.result(1).result.message
    assert goal.cancel()
    outcome = goal.result(30)
    assert outcome.canceled and outcome.result.status == "cancelled", outcome.result.message
    with backend.client() as raw:
        run = raw.get(f"/v1/models/{outcome.result.model_id}/runs/{outcome.result.run_id}").json()
    assert run["status"] == "cancelled" and run["progress"]["epoch"] < 1000
    assert not [e for e in kairo.events() if e.model_id == outcome.result.model_id and e.event == ModelEvent.TRAINED]


def test_a_stopped_manager_ends_its_running_goals_and_says_so(  # type: ignore[no-untyped-def]
        backend, dataset_id, processes, ros, tmp_path) -> None:
    """SIGINT with goals running: each ends aborted with why, its client hears it, and the manager exits 0
    without an error (its action servers go only after the goals ended); the runs go on on the backend."""
    manager = start_manager(processes, ros, backend.url, backend.key, tmp_path)
    kairo = commander(ros)
    feedback: list[TrainModel.Feedback] = []
    goals = []
    for robot in ("rob_stop00001", "rob_stop00002"):  # one training, one queued behind it
        goal = train_goal(dataset_id, 1000, robot_id=robot)
        goal.config.batch_size = 8
        goals.append(kairo.start_train(goal, feedback.append))
    wait_until(lambda: any(f.epoch >= 1 for f in feedback), 90, "a run training")
    os.killpg(manager.popen.pid, signal.SIGINT)
    assert manager.popen.wait(timeout=30) == 0, manager.tail()
    output = manager.output()
    assert not [w for w in ("Traceback", "RCLError", "[ERROR]", "still running") if w in output], output[-3000:]
    with backend.client() as raw:
        for goal in goals:
            outcome = goal.result(10)
            assert outcome.aborted and "kairo_manager stopped while following run" in outcome.result.message
            run = raw.get(f"/v1/models/{outcome.result.model_id}/runs/{outcome.result.run_id}").json()
            assert run["status"] in ("queued", "running"), run["status"]
            assert raw.post(f"/v1/models/{outcome.result.model_id}/runs/{outcome.result.run_id}/cancel"
                            ).status_code == 200


# --- services ----------------------------------------------------------------------------
def test_services_agree_with_the_http_api(  # type: ignore[no-untyped-def]
        backend, dataset_id, two_versions, processes, ros, tmp_path) -> None:
    start_manager(processes, ros, backend.url, backend.key, tmp_path)
    kairo = commander(ros)
    model_id = two_versions[0]["model_id"]
    raw = backend.client()

    promoted = kairo.promote(model_id, "v2")
    assert promoted.success and promoted.model.active_version == "v2", promoted.message
    assert raw.get(f"/v1/models/{model_id}").json()["active_version"] == "v2"
    kairo.wait_for_event(lambda e: e.event == ModelEvent.PROMOTED and e.model_id == model_id and e.version == "v2"
                         and e.robot_id == "rob_svc00001" and e.task == "manipulation", 10, "promoted event")

    listed, http_list = kairo.list_models(), raw.get("/v1/models").json()
    assert listed.success and listed.total == http_list["total"]
    assert [m.id for m in listed.models] == [m["id"] for m in http_list["data"]]
    assert [m.id for m in kairo.list_models(robot_id="rob_svc00001").models] == [model_id]
    assert kairo.list_models(task="navigation").models == []

    got, http_model = kairo.get_model(model_id), raw.get(f"/v1/models/{model_id}").json()
    assert got.success
    assert (got.model.id, got.model.name, got.model.status, got.model.active_version, got.model.robot_id) == (
        http_model["id"], http_model["name"], http_model["status"], "v2", "rob_svc00001")
    assert [(v.version, v.run_id, v.sha256) for v in got.model.versions] == [
        (v["version"], v["run_id"], v["sha256"]) for v in http_model["versions"]]
    assert got.model.versions[1].metrics.val_loss == pytest.approx(http_model["versions"][1]["metrics"]["val_loss"])
    assert [(p.from_version, p.to_version) for p in got.model.promotions] == [
        (p["from"] or "", p["to"]) for p in http_model["promotions"]]

    runs, http_runs = kairo.list_runs(model_id), raw.get(f"/v1/models/{model_id}/runs").json()
    assert runs.success and runs.total == http_runs["total"] == 2
    assert sorted(r.run_id for r in runs.runs) == sorted(r["run_id"] for r in http_runs["data"])

    run_id = two_versions[1]["run_id"]
    one, http_run = kairo.get_run(model_id, run_id), raw.get(f"/v1/models/{model_id}/runs/{run_id}").json()
    assert one.success and one.run.status == "complete" and one.run.model_version == "v2"
    assert one.run.metrics.epochs_run == http_run["metrics"]["epochs_run"] == 4
    assert one.run.config.epochs == 4 and one.run.dataset_id == dataset_id
    assert list(one.logs) == http_run["logs"]

    doomed = http_train(backend, dataset_id, "rob_delete001", 1)["model_id"]
    deleted = kairo.delete_model(doomed)
    assert deleted.success, deleted.message
    assert raw.get(f"/v1/models/{doomed}").status_code == 404
    kairo.wait_for_event(lambda e: e.event == ModelEvent.DELETED and e.model_id == doomed, 10, "deleted event")
    again = kairo.delete_model(doomed)
    assert not again.success and "not_found" in again.message
    raw.close()
    # Closing a commander on a node that goes on spinning leaves the node working for the next one.
    kairo.close()
    kairo.close()
    assert commander(ros).get_model(model_id).model.active_version == "v2"


# --- export ------------------------------------------------------------------------------
def test_export_writes_the_verified_file_atomically(  # type: ignore[no-untyped-def]
        backend, two_versions, processes, ros, tmp_path) -> None:
    start_manager(processes, ros, backend.url, backend.key, tmp_path)
    kairo = commander(ros)
    model_id = two_versions[0]["model_id"]
    out = tmp_path / "out"
    stages: list[ExportModel.Feedback] = []
    result = kairo.export(ExportModel.Goal(model_id=model_id, format="onnx", version="v1", output_dir=str(out)),
                          stages.append, timeout_s=60)
    assert result.path, result.message
    written = pathlib.Path(result.path)
    with backend.client() as raw:
        stated = raw.post(f"/v1/models/{model_id}/export", json={"format": "onnx", "version": "v1"}).json()
        version_sha = raw.get(f"/v1/models/{model_id}").json()["versions"][0]["sha256"]
    assert sha256_of(written) == result.sha256 == stated["sha256"] == version_sha
    assert written.parent == out and sorted(p.name for p in out.iterdir()) == [written.name]
    assert stages[0].stage == "requesting" and stages[-1].stage == "done"
    assert stages[-1].bytes_received == written.stat().st_size

    with backend.client() as raw:
        assert raw.post(f"/v1/models/{model_id}/promote", json={"version": "v1"}).status_code == 200
    active = kairo.export(ExportModel.Goal(model_id=model_id), timeout_s=60)  # no version, no output_dir
    assert pathlib.Path(active.path) == tmp_path / "exports" / written.name, active.message
    assert active.sha256 == version_sha

    for goal, expected in [
        (ExportModel.Goal(model_id=model_id, format="tflite"), "onnx"),
        (ExportModel.Goal(model_id=model_id, format="onnx", version="v99"), "v99"),
        (ExportModel.Goal(model_id=model_id, format="ros2-pkg", version="v99"), "v99"),
        (ExportModel.Goal(model_id=model_id, output_dir="relative/dir"), "absolute"),
        (ExportModel.Goal(model_id=""), "model_id is empty"),
        (ExportModel.Goal(model_id="mdl_nosuchmodel"), "not_found"),
    ]:
        outcome = kairo.start_export(goal).result(30)
        assert outcome.aborted and not outcome.result.path, goal
        assert expected in outcome.result.message, (goal, outcome.result.message)
    assert sorted(p.name for p in out.iterdir()) == [written.name], "failed exports leave nothing behind"


# --- bad input ---------------------------------------------------------------------------
def test_bad_input_is_answered_clearly_and_the_node_lives(  # type: ignore[no-untyped-def]
        backend, dataset_id, two_versions, processes, ros, tmp_path) -> None:
    manager = start_manager(processes, ros, backend.url, backend.key, tmp_path)
    kairo = commander(ros)
    model_id = two_versions[0]["model_id"]
    answers = {
        "get_model empty": (kairo.get_model(""), "model_id is empty"),
        "get_model unknown": (kairo.get_model("mdl_nosuchmodel"), "not_found"),
        "list_runs empty": (kairo.list_runs(" "), "model_id is empty"),
        "get_run empty run": (kairo.get_run(model_id, ""), "run_id is empty"),
        "get_run unknown run": (kairo.get_run(model_id, "run_nosuchrun"), "not_found"),
        "promote empty": (kairo.promote("", "v1"), "model_id is empty"),
        "promote bad version": (kairo.promote(model_id, "two"), "vN"),
        "promote missing version": (kairo.promote(model_id, "v99"), "v99"),
        "delete empty": (kairo.delete_model(""), "model_id is empty"),
    }
    for what, (answer, expected) in answers.items():
        assert not answer.success, what
        assert expected in answer.message, (what, answer.message)

    other_key = backend.cli("keys", "create", "--workspace", "manager-other")
    foreign = backend.cli("datasets", "create-demo", "manipulation", "--workspace", "manager-other",
                          "--samples", "200")
    for goal, expected in [
        (train_goal("", 1, robot_id="rob_bad00001"), "dataset_id is empty"),
        (train_goal(dataset_id, 1, robot_id="rob_bad00001", task="juggling"), "task 'juggling' is unknown"),
        (train_goal(dataset_id, 1), "robot_id is empty"),  # no goal robot_id and no parameter
        (train_goal(foreign, 1, robot_id="rob_bad00001"), "not_found"),  # another workspace's dataset
    ]:
        outcome = kairo.start_train(goal).result(30)
        assert outcome.aborted and outcome.result.status == "failed", goal
        assert expected in outcome.result.message, (goal, outcome.result.message)
    assert other_key != backend.key
    assert manager.alive and kairo.list_models().success


# --- outage --------------------------------------------------------------------------------
def test_a_goal_survives_a_backend_restart(processes, ros, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port, data_dir = free_port(), tmp_path / "backend-data"
    first = start_backend(processes, data_dir, port)
    backend = Backend(first.url, "", data_dir, first)  # type: ignore[attr-defined]
    backend.key = backend.cli("keys", "create", "--workspace", "outage")
    dataset = backend.cli("datasets", "create-demo", "manipulation", "--workspace", "outage", "--samples", "1000")
    start_manager(processes, ros, backend.url, backend.key, tmp_path, "request_timeout_s:=1.0")
    kairo = commander(ros, call_timeout_s=5.0)
    feedback: list[TrainModel.Feedback] = []
    goal_msg = train_goal(dataset, 30, robot_id="rob_outage001")
    goal_msg.config.batch_size = 4  # slow enough epochs to stop the backend in the middle of training
    goal = kairo.start_train(goal_msg, feedback.append)
    wait_until(lambda: any(f.status == "running" and f.epoch >= 2 for f in feedback) or goal.done(), 60,
               "the goal's run training")
    assert not goal.done(), goal.result(1).result.message
    model_id, run_id = feedback[-1].model_id, feedback[-1].run_id

    first.stop()
    assert not first.alive
    during = [kairo.get_model(model_id), kairo.list_models(), kairo.promote(model_id, "v1")]
    for answer in during:
        assert not answer.success and backend.url in answer.message, answer.message
    failed_export = kairo.start_export(ExportModel.Goal(model_id=model_id)).result(10)
    assert failed_export.aborted and backend.url in failed_export.result.message
    assert not goal.done(), "the train goal keeps waiting through the outage"

    start_backend(processes, data_dir, port)
    outcome = goal.result(180)
    assert outcome.succeeded and outcome.result.status == "complete", outcome.result.message
    assert outcome.result.metrics.epochs_run == 30
    assert kairo.get_model(model_id).success, "the manager recovered by itself"
    logs = kairo.get_run(model_id, run_id).logs
    assert any(" re-queued: the backend stopped" in line for line in logs), logs


# --- secrets -------------------------------------------------------------------------------
def test_the_key_is_in_no_log_file_and_no_parameter(  # type: ignore[no-untyped-def]
        backend, two_versions, processes, ros, tmp_path, tmp_path_factory) -> None:
    key_file = tmp_path / "secrets" / "kairo.key"
    key_file.parent.mkdir()
    key_file.write_text(backend.key + "\n")
    # The installed params file, as a launch file passes it, with one value changed to see it was read.
    installed = pathlib.Path(get_package_share_directory("kairo_ros"), "config", "manager.yaml")
    params_file = tmp_path / "manager.yaml"
    params_file.write_text(installed.read_text().replace('robot_id: ""', 'robot_id: "rob_yaml00001"'))
    argv = ["kairo_manager", "--ros-args", "-r", "__ns:=/kairo", "--log-level", "debug",
            "--params-file", str(params_file), "-p", f"api_url:={backend.url}", "-p", f"api_key_file:={key_file}"]
    manager = processes.start("kairo_manager", argv, env={"ROS_LOG_DIR": str(tmp_path / "roslog"),
                                                          "KAIRO_API_KEY": ""})
    processes.wait_until(lambda: MANAGER in ros.node_names(), 30, f"node {MANAGER}", watch=manager)
    kairo = commander(ros)
    assert kairo.get_model(two_versions[0]["model_id"]).success, "the key file's key works"
    assert not kairo.get_model("mdl_nosuchmodel").success

    from rcl_interfaces.srv import GetParameters, ListParameters
    names = ros.call(ros.node.create_client(ListParameters, f"{MANAGER}/list_parameters"),
                     ListParameters.Request(), 10).result.names
    values = ros.call(ros.node.create_client(GetParameters, f"{MANAGER}/get_parameters"),
                      GetParameters.Request(names=names), 10).values
    by_name = dict(zip(names, values, strict=True))
    assert by_name["api_key_file"].string_value == str(key_file)
    assert by_name["robot_id"].string_value == "rob_yaml00001" and by_name["poll_period_s"].double_value == 1.0
    assert all(backend.key not in v.string_value for v in values)
    processes.stop_all()

    # Every log of this session so far: backend logs and run logs, process outputs, ROS log files.
    logs = [p for p in pathlib.Path(tmp_path_factory.getbasetemp()).rglob("*")
            if p.is_file() and (p.suffix == ".log" or "roslog" in p.parts or "logs" in p.parts)]
    assert any("roslog" in p.parts for p in logs) and any(p.name.startswith("kairo_manager") for p in logs)
    leaked = [str(p) for p in logs if backend.key.encode() in p.read_bytes()]
    assert not leaked, f"API key found in {leaked}"
