"""A real backend process on a free loopback port, with a temporary data dir.

The session's server runs once per engine: SQLite (a file in its data dir) and
PostgreSQL (a database of its own on one real PostgreSQL server, tests/postgres.py,
started for the session when a test asks for it). `cli()` and `Server` pass the
data dir's database on, so a test reads the same whatever the engine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

STARTUP_S = 60.0
ENGINES = ("sqlite", "postgresql")
# The PostgreSQL database of each data dir that has one (else: SQLite in the data dir).
DATABASES: dict[Path, str] = {}
_DATABASE_NUMBERS = itertools.count(1)


def database_args(data_dir: Path) -> list[str]:
    """`--database-url URL` for a data dir on PostgreSQL, else nothing."""
    url = DATABASES.get(Path(data_dir))
    return ["--database-url", url] if url else []


def cli(data_dir: Path, *args: str) -> str:
    """Run `kairo-backend ARGS --data-dir DIR`; its last stdout line."""
    out = subprocess.run([sys.executable, "-m", "kairo_backend", *args, "--data-dir",
                          str(data_dir), *database_args(data_dir)], check=True,
                         capture_output=True, text=True, timeout=120, cwd=data_dir)
    return out.stdout.strip().splitlines()[-1]


# Tests of what training makes (quality floors, detections, the exported envelope):
# the store only carries their run, so they run on the default engine alone.
SQLITE_ONLY_MODULES = ("test_training_quality.py", "test_detection.py", "test_envelope.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the PostgreSQL instances of SQLITE_ONLY_MODULES' tests."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("data_dir") == "postgresql"
        (dropped if on_postgres and item.path.name in SQLITE_ONLY_MODULES else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[str]:
    """One PostgreSQL server for the session (each data dir gets its own database)."""
    from postgres import running_postgres

    with running_postgres() as url:
        yield url


def new_database(cluster_url: str) -> str:
    """A new, empty database on the cluster; its URL."""
    import psycopg

    name = f"kairo_{next(_DATABASE_NUMBERS)}_{os.getpid()}"
    with psycopg.connect(cluster_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return cluster_url.rsplit("/", 1)[0] + "/" + name


def engine_data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    name: str, engine: str) -> Path:
    """A new data dir whose database is on `engine` (a PostgreSQL one: made now)."""
    d = tmp_path_factory.mktemp(f"{name}-{engine}")
    if engine == "postgresql":
        DATABASES[d] = new_database(request.getfixturevalue("postgres_cluster"))
    return d


def store_of(data_dir: Path) -> Any:
    """A Store on the data dir's database (for what the API does not show)."""
    from kairo_backend.store import Store

    return Store(DATABASES.get(Path(data_dir)) or Path(data_dir) / "kairo.db", upgrade=False)


@dataclass
class Server:
    data_dir: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    url: str = ""

    def start(self) -> Server:
        cmd = [sys.executable, "-m", "kairo_backend", "serve", "--host", "127.0.0.1",
               "--port", "0", "--data-dir", str(self.data_dir),
               *database_args(self.data_dir), *self.extra]
        # cwd: the data dir, so a checkout in the caller's cwd never shadows the package
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True, cwd=self.data_dir)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if m:
                self.url = m.group(1)
                break
        if not self.url:
            self.stop()
            raise RuntimeError("backend did not start")
        # keep draining its output so it never blocks on a full pipe
        import threading

        threading.Thread(target=self._drain, daemon=True).start()
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("backend never answered /health")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)  # the server and its worker processes
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def wait_run(c: httpx.Client, model_id: str, run_id: str, timeout: float = 180.0,
             until: tuple[str, ...] = ("complete", "failed", "cancelled")) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = c.get(f"/v1/models/{model_id}/runs/{run_id}").json()
        if run["status"] in until or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


@pytest.fixture(scope="session", params=ENGINES)
def data_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session server's data dir, once per engine."""
    return engine_data_dir(request, tmp_path_factory, "kairo-data", request.param)


@pytest.fixture(scope="session")
def server(data_dir: Path) -> Iterator[Server]:
    srv = Server(data_dir, ["--max-upload-mb", "2"]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def key(server: Server) -> str:
    return cli(server.data_dir, "keys", "create", "--workspace", "acme")


@pytest.fixture(scope="session")
def other_key(server: Server) -> str:
    return cli(server.data_dir, "keys", "create", "--workspace", "globex")


@pytest.fixture(scope="session")
def api(server: Server, key: str) -> Iterator[httpx.Client]:
    with server.client(key) as c:
        yield c


@pytest.fixture(scope="session")
def demo(server: Server, key: str) -> dict[str, str]:
    """Demo dataset IDs per task in workspace acme (sizes for short CPU runs)."""
    sizes = {"manipulation": 8000, "navigation": 3000, "object_detection": 600}
    return {t: cli(server.data_dir, "datasets", "create-demo", t, "--workspace", "acme",
                   "--samples", str(n), "--seed", "7") for t, n in sizes.items()}


def has_shape(obj: dict[str, Any], shape: dict[str, Any]) -> None:
    """Every key of `shape` present with its type (as the seed shows it)."""
    for k, t in shape.items():
        assert k in obj, f"missing {k}"
        assert isinstance(obj[k], t) and not isinstance(obj[k], bool), f"{k}: {obj[k]!r}"


# what each demo dataset reaches in a short CPU run (documented in README.md)
TARGETS = {"manipulation": ({"epochs": 50, "learning_rate": 0.002, "batch_size": 64}, 0.9),
           "navigation": ({"epochs": 30, "learning_rate": 0.002, "batch_size": 64}, 0.9),
           "object_detection": ({"epochs": 6, "learning_rate": 0.003, "batch_size": 16}, 0.7)}


@pytest.fixture(scope="session")
def trained(api: httpx.Client, demo: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Train every demo dataset once; {task: final run}."""
    accepted = {}
    for task, (config, _) in TARGETS.items():
        r = api.post("/v1/models/train", json={
            "dataset_id": demo[task], "robot_id": "rob_a1b2c3d4", "task": task,
            "name": f"{task}-model", "config": config})
        assert r.status_code == 202, r.text
        has_shape(r.json(), {"model_id": str, "run_id": str, "status": str,
                             "position_in_queue": int, "estimated_duration_s": int})
        assert r.json()["status"] == "queued" and r.json()["estimated_duration_s"] >= 1
        accepted[task] = r.json()
    return {t: wait_run(api, a["model_id"], a["run_id"], timeout=900.0) for t, a in accepted.items()}


