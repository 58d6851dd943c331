"""Stored artifacts on a real server: corrupted or empty model files are refused
(export, download, promote) and marked on the version; deleting a model while
it is being exported leaves no file of it and answers no 5xx; deleting a model
removes its runs' log files."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server, wait_run

TRIALS = 3
EXPORTS = 20


def train_short(api: httpx.Client, dataset_id: str, robot_id: str) -> dict[str, Any]:
    r = api.post("/v1/models/train", json={"dataset_id": dataset_id, "robot_id": robot_id,
                                           "task": "navigation", "config": {"epochs": 1}})
    assert r.status_code == 202, r.text
    return dict(r.json())


def wait_complete(api: httpx.Client, accepted: dict[str, Any]) -> dict[str, Any]:
    run = wait_run(api, accepted["model_id"], accepted["run_id"])
    assert run["status"] == "complete", run
    return run


def files_of(data_dir: Path, model_id: str, run_ids: list[str]) -> list[Path]:
    """Every file or directory left in the data dir for the model."""
    found = [p for p in data_dir.rglob("*") if model_id in p.name]
    found += [p for r in run_ids for p in data_dir.rglob(f"*{r}*")]
    return found


@pytest.fixture(scope="module")
def model(api: httpx.Client, demo: dict[str, str]) -> dict[str, Any]:
    """One complete navigation model with v1 active."""
    accepted = train_short(api, demo["navigation"], "rob_artifacts")
    wait_complete(api, accepted)
    assert api.post(f"/v1/models/{accepted['model_id']}/promote",
                    json={"version": "v1"}).status_code == 200
    return accepted


def refused(r: httpx.Response) -> str:
    assert r.status_code == 409, (r.status_code, r.text)
    error = r.json()["error"]
    assert error["code"] == "artifact_corrupted", error
    return str(error["message"])


@pytest.mark.parametrize("damage", ["flip 16 bytes", "empty"])
def test_corrupted_artifact_is_refused_and_marked(api: httpx.Client, server: Server,
                                                  model: dict[str, Any], damage: str) -> None:
    model_id = model["model_id"]
    onnx = server.data_dir / "artifacts" / model_id / "v1" / "model.onnx"
    good = onnx.read_bytes()
    links = {fmt: api.post(f"/v1/models/{model_id}/export", json={"format": fmt}).json()
             for fmt in ("onnx", "ros2-pkg")}
    for link in links.values():
        assert httpx.get(link["download_url"]).status_code == 200
    if damage == "empty":
        onnx.write_bytes(b"")
    else:
        bad = bytearray(good)
        at = len(bad) // 2
        bad[at:at + 16] = bytes(b ^ 0xFF for b in bad[at:at + 16])
        onnx.write_bytes(bytes(bad))
    try:
        for fmt in ("onnx", "ros2-pkg"):
            message = refused(api.post(f"/v1/models/{model_id}/export", json={"format": fmt}))
            assert "train the version again" in message
            assert ("empty" in message) == (damage == "empty"), message
        # a link handed out before the damage no longer serves the bad bytes
        refused(httpx.get(links["onnx"]["download_url"]))
        refused(api.post(f"/v1/models/{model_id}/promote", json={"version": "v1"}))
        version = api.get(f"/v1/models/{model_id}").json()["versions"][0]
        assert version["artifact_error"], version
    finally:
        onnx.write_bytes(good)
    # the good file is served again, and the mark is cleared
    exported = api.post(f"/v1/models/{model_id}/export", json={"format": "onnx"})
    assert exported.status_code == 200, exported.text
    assert httpx.get(exported.json()["download_url"]).content == good
    assert api.get(f"/v1/models/{model_id}").json()["versions"][0]["artifact_error"] is None


def test_corrupted_package_archive_is_not_served(api: httpx.Client, server: Server,
                                                 model: dict[str, Any]) -> None:
    model_id = model["model_id"]
    link = api.post(f"/v1/models/{model_id}/export", json={"format": "ros2-pkg"}).json()
    archive = server.data_dir / "artifacts" / model_id / "v1" / "ros2_pkg.tar.gz"
    data = archive.read_bytes()
    archive.write_bytes(data[:-16] + bytes(16))
    try:
        refused(httpx.get(link["download_url"]))
    finally:
        archive.write_bytes(data)
    assert httpx.get(link["download_url"]).content == data


def race_one(server: Server, key: str, api: httpx.Client, model_id: str) -> dict[str, Any]:
    """EXPORTS ros2-pkg exports at once, and a delete among them; their answers."""
    start = threading.Barrier(EXPORTS + 1)
    answers: list[int] = []
    links: list[str] = []
    lock = threading.Lock()

    def export() -> None:
        with server.client(key) as c:
            start.wait()
            r = c.post(f"/v1/models/{model_id}/export",
                       json={"format": "ros2-pkg", "version": "v1"})
        with lock:
            answers.append(r.status_code)
            if r.status_code == 200:
                links.append(r.json()["download_url"])

    threads = [threading.Thread(target=export) for _ in range(EXPORTS)]
    for t in threads:
        t.start()
    start.wait()
    time.sleep(random.uniform(0.0, 0.05))
    deleted = api.delete(f"/v1/models/{model_id}")
    for t in threads:
        t.join(timeout=120)
    downloads = [httpx.get(url).status_code for url in links]
    return {"delete": deleted.status_code, "exports": answers, "downloads": downloads}


def test_delete_during_exports_leaves_nothing(api: httpx.Client, server: Server, key: str,
                                              demo: dict[str, str]) -> None:
    accepted = [train_short(api, demo["navigation"], f"rob_race{i}") for i in range(TRIALS)]
    runs = [wait_complete(api, a) for a in accepted]
    for a, run in zip(accepted, runs, strict=True):
        model_id = a["model_id"]
        assert (server.data_dir / "logs" / f"{run['run_id']}.log").is_file()
        outcome = race_one(server, key, api, model_id)
        print(f"{model_id}: exports {sorted(outcome['exports'])}, downloads after the "
              f"delete {outcome['downloads']}")
        assert outcome["delete"] == 200
        assert len(outcome["exports"]) == EXPORTS
        assert set(outcome["exports"]) <= {200, 404}, outcome
        assert set(outcome["downloads"]) <= {404}, outcome
        left = files_of(server.data_dir, model_id, [run["run_id"]])
        assert not left, f"left behind after deleting {model_id}: {left}"
        assert api.get(f"/v1/models/{model_id}").status_code == 404
