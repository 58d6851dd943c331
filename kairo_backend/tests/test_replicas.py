"""Two `kairo-backend serve` replicas on one PostgreSQL database and one data dir serve
the same API, with local worker processes and with Ray tasks (one Ray head): trains
submitted to either train once, runs are listed alike from both, a cancel through the
other replica stops the run, signed download links made by one are accepted by the
other, a replica killed with -9 loses nothing (the other re-queues and finishes its
runs), and concurrent trains over both get unique, contiguous version numbers."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import DATABASES, Server, cli, new_database, store_of, wait_run

FINAL = ("complete", "failed", "cancelled")


@pytest.fixture(scope="module", params=("local", "ray"))
def executor(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The replicas' executor arguments: local worker processes, or a Ray head's tasks."""
    if request.param == "local":
        yield ["--workers", "1"]
        return
    from ray_cluster import RAY_ENV, running_ray_head

    with running_ray_head() as head, pytest.MonkeyPatch.context() as mp:
        for name, value in RAY_ENV.items():  # the servers' environment (loopback only)
            mp.setenv(name, value)
        yield ["--workers", "1", "--executor", "ray", "--ray-address", head]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, postgres_cluster: str,
           executor: list[str]) -> Path:
    """One data dir (the shared artifacts directory) on one PostgreSQL database."""
    d = tmp_path_factory.mktemp("replicas")
    DATABASES[d] = new_database(postgres_cluster)
    return d


@pytest.fixture(scope="module")
def replicas(shared: Path, executor: list[str]) -> Iterator[list[Server]]:
    servers = [Server(shared, executor).start() for _ in range(2)]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.fixture(scope="module")
def key(replicas: list[Server]) -> str:
    return cli(replicas[0].data_dir, "keys", "create", "--workspace", "replicated")


@pytest.fixture(scope="module")
def dataset(replicas: list[Server], key: str) -> str:
    return cli(replicas[0].data_dir, "datasets", "create-demo", "navigation", "--workspace",
               "replicated", "--samples", "300", "--seed", "3")


def train(c: httpx.Client, dataset: str, robot: str, epochs: int, **config: Any
          ) -> dict[str, Any]:
    body = {"dataset_id": dataset, "robot_id": robot, "task": "navigation",
            "config": {"epochs": epochs, **config}}
    r = c.post("/v1/models/train", json=body)
    for _ in range(20):  # 503 "busy" (a row lock held past the wait) asks for a retry
        if r.status_code != 503:
            break
        time.sleep(float(r.headers.get("Retry-After", "1")))
        r = c.post("/v1/models/train", json=body)
    assert r.status_code == 202, r.text
    accepted: dict[str, Any] = r.json()
    return accepted


def runs_of(c: httpx.Client, model_id: str) -> list[dict[str, Any]]:
    r = c.get(f"/v1/models/{model_id}/runs")
    assert r.status_code == 200, r.text
    runs: list[dict[str, Any]] = r.json()["data"]
    return runs


def test_trains_on_both_replicas_complete_once_and_list_alike(
        replicas: list[Server], key: str, dataset: str) -> None:
    a, b = (s.client(key) for s in replicas)
    with a, b:
        accepted = [train((a, b)[i % 2], dataset, "rob_rep_both", 2) for i in range(4)]
        assert len({x["model_id"] for x in accepted}) == 1
        model_id = accepted[0]["model_id"]
        done = [wait_run((b, a)[i % 2], model_id, x["run_id"]) for i, x in enumerate(accepted)]
        assert [r["status"] for r in done] == ["complete"] * 4, done
        assert sorted(r["model_version"] for r in done) == ["v1", "v2", "v3", "v4"]
        # each trained exactly once: one "running" line in its log, never re-queued
        for r in done:
            run = a.get(f"/v1/models/{model_id}/runs/{r['run_id']}").json()
            started = [line for line in run["logs"] if " running: " in f" {line}"]
            assert len(started) == 1 and not any("re-queued" in line for line in run["logs"]), \
                run["logs"]
        assert runs_of(a, model_id) == runs_of(b, model_id)
        # a download link signed by one replica is accepted by the other
        a.post(f"/v1/models/{model_id}/promote", json={"version": "v1"}).raise_for_status()
        link = a.post(f"/v1/models/{model_id}/export", json={"version": "v1", "format": "onnx"})
        assert link.status_code == 200, link.text
        url = link.json()["download_url"]
        path = url[url.index("/downloads/"):]
        got = httpx.get(replicas[1].url + path, timeout=60)
        assert got.status_code == 200 and len(got.content) > 0, got.text[:300]


def test_a_cancel_through_the_other_replica_stops_the_run(
        replicas: list[Server], key: str, dataset: str) -> None:
    a, b = (s.client(key) for s in replicas)
    with a, b:
        long = train(a, dataset, "rob_rep_cancel", 1000, batch_size=4)
        model_id, run_id = long["model_id"], long["run_id"]
        run = wait_run(b, model_id, run_id, timeout=120, until=("running", *FINAL))
        assert run["status"] == "running", run
        r = b.post(f"/v1/models/{model_id}/runs/{run_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        # whichever replica trains it sees the cancel and frees its worker: a next run
        # trains on both replicas' single worker slots and completes
        after = [train(c, dataset, "rob_rep_cancel", 1) for c in (a, b)]
        for x in after:
            assert wait_run(a, model_id, x["run_id"])["status"] == "complete"
        assert a.get(f"/v1/models/{model_id}/runs/{run_id}").json()["status"] == "cancelled"


def test_a_replica_killed_with_9_loses_nothing(
        replicas: list[Server], key: str, dataset: str, executor: list[str]) -> None:
    victim, survivor = replicas
    with victim.client(key) as v, survivor.client(key) as s:
        # enough runs that both replicas train some when the victim dies
        accepted = [train((v, s)[i % 2], dataset, "rob_rep_kill", 150, batch_size=16)
                    for i in range(4)]
        model_id = accepted[0]["model_id"]
        ids = [x["run_id"] for x in accepted]
        deadline = time.monotonic() + 120
        store = store_of(victim.data_dir)
        try:
            while time.monotonic() < deadline:
                owners = {r["owner"] for r in (store.get_run(i) for i in ids)
                          if r is not None and r["status"] == "running"}
                if len(owners) == 2:  # both replicas train one
                    break
                time.sleep(0.2)
            assert len(owners) == 2, owners
        finally:
            store.close()
        victim.stop(signal.SIGKILL)
        # the survivor re-queues the victim's run and trains every one to the end
        done = [wait_run(s, model_id, i, timeout=300) for i in ids]
        assert [r["status"] for r in done] == ["complete"] * 4, done
        versions = sorted(int(r["model_version"][1:]) for r in runs_of(s, model_id))
        assert versions == list(range(1, len(versions) + 1)), versions
        logs = [s.get(f"/v1/models/{model_id}/runs/{i}").json()["logs"] for i in ids]
        requeued = [lg for lg in logs if any("re-queued" in line for line in lg)]
        assert len(requeued) == 1, logs  # the victim's run: re-queued once, then complete
    replicas[0] = Server(victim.data_dir, executor).start()  # for the next tests


def test_concurrent_trains_over_both_replicas_get_contiguous_versions(
        replicas: list[Server], dataset: str) -> None:
    key = cli(replicas[0].data_dir, "keys", "create", "--workspace", "replicated")
    clients = [s.client(key) for s in replicas]
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            accepted = list(pool.map(
                lambda i: train(clients[i % 2], dataset, "rob_rep_many", 1), range(50)))
        assert len({x["model_id"] for x in accepted}) == 1, "one model, made once"
        model_id = accepted[0]["model_id"]
        for c in clients:
            versions = sorted(int(r["model_version"][1:]) for r in runs_of(c, model_id))
            assert versions == list(range(1, 51)), versions
        assert all(x["position_in_queue"] >= 1 for x in accepted)
        # with the queue held still (claims wait on the runs table; reads go on), both
        # replicas show the same queue positions: 1, 2, ... in submission order
        import psycopg

        with psycopg.connect(DATABASES[replicas[0].data_dir], autocommit=True) as pg:
            pg.execute("BEGIN")
            pg.execute("LOCK TABLE runs IN EXCLUSIVE MODE")
            seen = [{r["run_id"]: r["position_in_queue"] for r in runs_of(c, model_id)
                     if r["status"] == "queued"} for c in clients]
            pg.execute("ROLLBACK")
        assert seen[0] == seen[1] and seen[0], seen
        positions = sorted(seen[0].values())
        assert positions == list(range(1, len(positions) + 1)), positions
        # delete them rather than train 50 runs; both replicas agree it is gone
        assert clients[1].delete(f"/v1/models/{model_id}").status_code == 200
        for c in clients:
            assert c.get(f"/v1/models/{model_id}").status_code == 404
    finally:
        for c in clients:
            c.close()


def _epochs_since(logs: list[str], marker: str) -> list[int]:
    """The epoch numbers of the log lines after the last line containing `marker`."""
    start = max(i for i, line in enumerate(logs) if marker in line)
    return [int(m.group(1)) for line in logs[start:] if (m := re.match(r"epoch (\d+)/", line))]


def test_a_stalled_replica_never_writes_over_the_one_that_took_its_run_over(
        replicas: list[Server], key: str, dataset: str, executor: list[str]) -> None:
    """A replica stopped (SIGSTOP) past the 20 s lease. With Ray its task trains on: the other
    replica re-queues the run and trains it again, and the stalled attempt's writes are refused
    (its progress would interleave); locally the other replica sees the worker process still
    training on this host and leaves the run to it."""
    stalled, other = replicas
    assert stalled.proc is not None
    with stalled.client(key) as st, other.client(key) as o:
        store = store_of(stalled.data_dir)
        try:
            replica_id = store.conn.execute("SELECT id FROM replicas WHERE pid=?",
                                            (stalled.proc.pid,)).fetchone()["id"]
            # Minutes of training each (cancelled at the end): longer than the lease on any machine.
            accepted = [train(c, dataset, "rob_rep_stall", 1000, batch_size=1) for c in (st, o)]
            model_id = accepted[0]["model_id"]

            def stalled_run() -> dict[str, Any] | None:
                runs = [store.get_run(x["run_id"]) for x in accepted]
                return next((r for r in runs if r is not None and r["owner"] == replica_id
                             and r["progress"]), None)

            deadline = time.monotonic() + 120
            while (mine := stalled_run()) is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert mine is not None, ("the replica to stall never trained one of the runs",
                                      replica_id, [store.get_run(x["run_id"]) for x in accepted])
            run_id = mine["id"]
            os.kill(stalled.proc.pid, signal.SIGSTOP)
            try:
                if "ray" in executor:
                    deadline = time.monotonic() + 90
                    while time.monotonic() < deadline:
                        now_run = store.get_run(run_id)
                        assert now_run is not None
                        if now_run["owner"] not in (None, replica_id) and now_run["progress"]:
                            break
                        time.sleep(0.2)
                    assert now_run["interruptions"] == 1 and now_run["owner"] != replica_id, now_run
                else:
                    time.sleep(25.0)  # past the lease: the other replica looks, and leaves it
                    now_run = store.get_run(run_id)
                    assert now_run is not None and now_run["owner"] == replica_id, now_run
                    assert now_run["interruptions"] == 0 and now_run["status"] == "running", now_run
            finally:
                os.kill(stalled.proc.pid, signal.SIGCONT)
            # Both attempts (with Ray) go on for a while; only the current one writes.
            def logs() -> list[str]:
                return [row["line"] for row in store.run_logs(run_id)]

            claimed = "running: worker process starting"
            seen = len(_epochs_since(logs(), claimed))
            deadline = time.monotonic() + 60
            while len(_epochs_since(logs(), claimed)) < seen + 5 and time.monotonic() < deadline:
                time.sleep(0.2)
            epochs = _epochs_since(logs(), claimed)
            assert len(epochs) >= seen + 5 and epochs == list(range(1, len(epochs) + 1)), logs()[-40:]
            requeued = [line for line in logs() if "re-queued" in line]
            assert len(requeued) == (1 if "ray" in executor else 0), logs()
            # Both replicas answer, and their worker slots are free again once the long runs end.
            for x in accepted:
                r = o.post(f"/v1/models/{model_id}/runs/{x['run_id']}/cancel")
                assert r.status_code == 200, r.text
            after = [train(c, dataset, "rob_rep_stall", 1) for c in (st, o)]
            assert [wait_run(o, model_id, x["run_id"])["status"] for x in after] == ["complete"] * 2
        finally:
            store.close()
