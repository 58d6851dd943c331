"""Fixtures shared by the kairo_ros tests.

Each test session claims its own ROS_DOMAIN_ID and keeps DDS on localhost,
so parallel runs never see each other. Every child process a test starts
is ended when the test ends, pass or fail.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from kairo_ros.testing.backend import Backend, start_backend  # noqa: F401 - tests import it from here
from kairo_ros.testing.graph import SpinningNode
from kairo_ros.testing.processes import ChildProcess, ProcessGroup, claim_domain_id, isolated_ros_env

DOMAIN_ID, _DOMAIN_CLAIM = claim_domain_id()
os.environ.update(isolated_ros_env(DOMAIN_ID))

TEST_DIR = pathlib.Path(__file__).resolve().parent
TEST_NODES = TEST_DIR / "nodes"
_ALL_GROUPS: list[ProcessGroup] = []


def pytest_report_header() -> str:
    return f"ROS_DOMAIN_ID={DOMAIN_ID} (claimed), ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST"


def pytest_sessionfinish(session: pytest.Session) -> None:
    alive = [c.name for g in _ALL_GROUPS for c in g.children if c.alive]
    for group in _ALL_GROUPS:
        group.stop_all()
    if alive:
        print(f"\nkairo tests: children still alive at session end, now killed: {alive}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def new_group(log_dir: pathlib.Path) -> ProcessGroup:
    group = ProcessGroup(log_dir=log_dir, env=dict(os.environ))
    _ALL_GROUPS.append(group)
    return group


@pytest.fixture
def processes(tmp_path: pathlib.Path) -> Iterator[ProcessGroup]:
    """Start children with `processes.start(...)`; all end with the test."""
    group = new_group(tmp_path / "logs")
    yield group
    group.stop_all()
    assert not [c.name for c in group.children if c.alive], "a child outlived stop_all()"


@pytest.fixture
def ros() -> Iterator[SpinningNode]:
    """A client node in the test's domain, spun in the background."""
    with SpinningNode("kairo_test_client", domain_id=DOMAIN_ID) as node:
        yield node


def python_node(group: ProcessGroup, script: str, *args: str) -> ChildProcess:
    """Start one of the test nodes under test/nodes as its own process."""
    return group.start(pathlib.Path(script).stem, [sys.executable, str(TEST_NODES / script), *args])


# --- the embedded backend ------------------------------------------------------
@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A real kairo-backend on a free loopback port, with a fresh data dir and key."""
    root = tmp_path_factory.mktemp("backend")
    group = new_group(root / "logs")
    data_dir = root / "data"
    try:
        yield Backend.start(group, data_dir)
    finally:
        group.stop_all()


# --- models trained by the real backend -----------------------------------------------------------
# Small demo datasets and few epochs: a run takes a few seconds on 2 cores.
DEMO_SAMPLES = {"manipulation": 500, "navigation": 500, "object_detection": 300}
TEST_ROBOT = "rob_test1"


@dataclass(frozen=True)
class TrainedModel:
    model_id: str
    version: str
    task: str
    robot_id: str
    dataset_id: str


def train_model(backend: Backend, task: str, *, robot_id: str = TEST_ROBOT, epochs: int = 2,
                dataset_id: str = "", promote: bool = True, timeout_s: float = 300) -> TrainedModel:
    """Train a new version of (robot_id, task) through HTTP, wait for it, and promote it."""
    from kairo_ros.testing.graph import wait_until

    dataset_id = dataset_id or backend.cli("datasets", "create-demo", task, "--workspace", "test",
                                           "--samples", str(DEMO_SAMPLES[task]))
    with backend.client() as api:
        answer = api.post("/v1/models/train", json={"dataset_id": dataset_id, "robot_id": robot_id, "task": task,
                                                   "config": {"epochs": epochs}})
        assert answer.status_code == 202, answer.text
        model_id, run_id = answer.json()["model_id"], answer.json()["run_id"]
        run: dict = {}

        def finished() -> bool:
            run.update(api.get(f"/v1/models/{model_id}/runs/{run_id}").json())
            return run["status"] in ("complete", "failed", "cancelled")

        wait_until(finished, timeout_s, f"training run {run_id}", period_s=0.2)
        assert run["status"] == "complete", f"run {run_id} ended {run['status']}: {run.get('error')}"
        if promote:
            promoted = api.post(f"/v1/models/{model_id}/promote", json={"version": run["model_version"]})
            assert promoted.status_code == 200, promoted.text
    return TrainedModel(model_id, run["model_version"], task, robot_id, dataset_id)


@pytest.fixture(scope="module")
def trained_model(backend: Backend) -> Callable[[str], TrainedModel]:
    """`trained_model(task)`: that task's model trained by the module's backend and promoted (once per task)."""
    done: dict[str, TrainedModel] = {}

    def get(task: str) -> TrainedModel:
        if task not in done:
            done[task] = train_model(backend, task)
        return done[task]

    return get
