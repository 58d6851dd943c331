"""Fixtures shared by the kairo_ros tests.

Each test session claims its own ROS_DOMAIN_ID and keeps DDS on localhost,
so parallel runs never see each other. Every child process a test starts
is ended when the test ends, pass or fail.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from kairo_ros.graph import SpinningNode
from kairo_ros.processes import ChildProcess, ProcessGroup, claim_domain_id, free_port, isolated_ros_env

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
@dataclass
class Backend:
    url: str
    key: str
    data_dir: pathlib.Path
    process: ChildProcess

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0,
                            headers={"Authorization": f"Bearer {key or self.key}"})

    def cli(self, *args: str) -> str:
        """Run a `kairo-backend` subcommand on this data dir; its last stdout line."""
        import subprocess
        out = subprocess.run([sys.executable, "-m", "kairo_backend", *args, "--data-dir", str(self.data_dir)],
                             check=True, capture_output=True, text=True, timeout=120).stdout
        return out.strip().splitlines()[-1]


def start_backend(group: ProcessGroup, data_dir: pathlib.Path, port: int | None = None) -> ChildProcess:
    port = port or free_port()
    child = group.start("kairo-backend", [sys.executable, "-m", "kairo_backend", "serve",
                                          "--host", "127.0.0.1", "--port", str(port),
                                          "--data-dir", str(data_dir)])
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    group.wait_until(healthy, 60, f"backend health at {url}", watch=child)
    child.url = url  # type: ignore[attr-defined]
    return child


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A real kairo-backend on a free loopback port, with a fresh data dir and key."""
    root = tmp_path_factory.mktemp("backend")
    group = new_group(root / "logs")
    data_dir = root / "data"
    try:
        child = start_backend(group, data_dir)
        backend = Backend(child.url, "", data_dir, child)  # type: ignore[attr-defined]
        backend.key = backend.cli("keys", "create", "--workspace", "test")
        yield backend
    finally:
        group.stop_all()
