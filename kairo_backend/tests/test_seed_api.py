"""The seed's requests replayed against the real server: same keys and types."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import TARGETS, Server, has_shape, wait_run
from kairo_backend.training.datasets import load_arrays
from kairo_backend.training.export import rows_apart
from kairo_backend.training.nets import load_wrapper

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
NUM = (int, float)

SEED_MODEL = {"id": str, "name": str, "task": str, "status": str, "active_version": str,
              "accuracy": NUM, "robot_id": str, "created_at": str}
SEED_TRAIN = {"model_id": str, "run_id": str, "status": str, "position_in_queue": int,
              "estimated_duration_s": int}
SEED_RUN = {"run_id": str, "model_id": str, "status": str, "started_at": str,
            "completed_at": str, "duration_s": NUM, "metrics": dict, "model_version": str,
            "artifact_size_mb": NUM}
SEED_METRICS = {"final_loss": NUM, "val_loss": NUM, "accuracy": NUM, "val_accuracy": NUM,
                "epochs_run": int, "inference_latency_p99_ms": NUM}
SEED_EXPORT = {"download_url": str, "expires_at": str, "format": str, "size_mb": NUM}

@pytest.mark.parametrize("task", list(TARGETS))
def test_demo_trains_to_documented_accuracy(trained: dict[str, Any], task: str) -> None:
    run = trained[task]
    assert run["status"] == "complete", run["error"]
    has_shape(run, SEED_RUN)
    has_shape(run["metrics"], SEED_METRICS)
    assert run["metrics"]["val_accuracy"] >= TARGETS[task][1]
    assert run["metrics"]["epochs_run"] == TARGETS[task][0]["epochs"]
    assert ISO.match(run["started_at"]) and ISO.match(run["completed_at"])
    assert run["model_version"] == "v1"
    assert any(line.split(" ", 1)[1].startswith("epoch 1/") for line in run["logs"])


def test_seed_requests_replayed(api: httpx.Client, trained: dict[str, Any], server: Server,
                                key: str) -> None:
    run = trained["manipulation"]
    mid = run["model_id"]
    models = api.get("/v1/models").json()
    assert set(models) >= {"data", "total"} and models["total"] == len(models["data"]) >= 3
    promoted = api.post(f"/v1/models/{mid}/promote", json={"version": "v1"})
    assert promoted.status_code == 200
    assert promoted.json()["promotions"][-1]["to"] == "v1"
    model = next(m for m in api.get("/v1/models").json()["data"] if m["id"] == mid)
    has_shape(model, SEED_MODEL)
    assert model["status"] == "active" and model["active_version"] == "v1"
    assert ISO.match(model["created_at"]) and model["id"].startswith("mdl_")
    assert api.get(f"/v1/models/{mid}").json()["metrics"] == run["metrics"]
    runs = api.get(f"/v1/models/{mid}/runs").json()
    assert runs["total"] == 1 and runs["data"][0]["run_id"] == run["run_id"]
    has_shape(api.get(f"/v1/models/{mid}/runs/{run['run_id']}").json(), SEED_RUN)
    exp = api.post(f"/v1/models/{mid}/export", json={"format": "onnx", "version": "v1"})
    assert exp.status_code == 200, exp.text
    has_shape(exp.json(), SEED_EXPORT)
    assert exp.json()["download_url"].startswith(server.url + "/downloads/")

    if shutil.which("curl"):  # the seed's curl lines, host replaced, nothing else
        out = subprocess.run(["curl", "-s", f"{server.url}/v1/models", "-H",
                              f"Authorization: Bearer {key}"], capture_output=True, text=True,
                             check=True, timeout=30)
        listed = next(m for m in json.loads(out.stdout)["data"] if m["id"] == mid)  # the one promoted above
        has_shape(listed, SEED_MODEL)
        out = subprocess.run(["curl", "-s", "-X", "POST", f"{server.url}/v1/models/{mid}/export",
                              "-H", f"Authorization: Bearer {key}", "-H",
                              "Content-Type: application/json", "-d",
                              '{ "format": "onnx", "version": "v1" }'],
                             capture_output=True, text=True, check=True, timeout=30)
        has_shape(json.loads(out.stdout), SEED_EXPORT)


@pytest.mark.parametrize("task", list(TARGETS))
def test_onnx_matches_torch_and_carries_wiring(api: httpx.Client, server: Server,
                                               trained: dict[str, Any], demo: dict[str, str],
                                               task: str) -> None:
    run = trained[task]
    mid = run["model_id"]
    exp = api.post(f"/v1/models/{mid}/export", json={"format": "onnx", "version": "v1"}).json()
    blob = httpx.get(exp["download_url"], timeout=30)
    assert blob.status_code == 200
    import hashlib

    assert hashlib.sha256(blob.content).hexdigest() == exp["sha256"]
    proto = onnx.load_from_string(blob.content)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["kairo.schema"] == "kairo.features/1"
    assert meta["kairo.model_id"] == mid and meta["kairo.model_version"] == "v1"
    assert meta["kairo.task"] == task
    features = json.loads(meta["kairo.features"])
    for entry in features["inputs"] + features["outputs"]:
        entry.pop("range", None)  # the training envelope, the one addition (test_envelope.py)
    assert features == api.get(f"/v1/datasets/{demo[task]}").json()["features"]
    sess = ort.InferenceSession(blob.content, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [e["name"] for e in features["inputs"]]
    for i in sess.get_inputs():
        assert i.type == "tensor(float)" and not isinstance(i.shape[0], int)
    ds = api.get(f"/v1/datasets/{demo[task]}").json()
    assert ds["samples"] > 0
    arrays = load_arrays((server.data_dir / "datasets" / f"{demo[task]}.npz").read_bytes())
    # images are stored uint8; the graph takes RGB in [0, 1]
    scale = {np.dtype(np.uint8): 1 / 255}
    feeds = {e["name"]: arrays[e["name"]][:64].astype(np.float32)
             * np.float32(scale.get(arrays[e["name"]].dtype, 1.0)) for e in features["inputs"]}
    got = sess.run(None, feeds)
    wrapper = load_wrapper(str(server.data_dir / "artifacts" / mid / "v1" / "model.pt"))
    with torch.no_grad():
        ref = wrapper(*[torch.from_numpy(v) for v in feeds.values()])
    refs = list(ref) if isinstance(ref, tuple) else [ref]
    for g, r in zip(got, refs, strict=True):
        if task == "object_detection":  # rows scored alike may swap places in the top-K
            assert rows_apart(g, r.numpy()) <= 1e-4
        else:
            assert np.abs(g - r.numpy()).max() <= 1e-4
    # a tampered link is refused
    for bad in (exp["download_url"].replace("sig=", "sig=0"),
                exp["download_url"].replace("expires=", "expires=x"),
                exp["download_url"].replace("expires=", "expires=1"),
                exp["download_url"].split("?")[0]):
        r = httpx.get(bad, timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_new_version_rename_promote_history_and_cancel(api: httpx.Client,
                                                       trained: dict[str, Any],
                                                       demo: dict[str, str]) -> None:
    mid = trained["navigation"]["model_id"]
    body = {"dataset_id": demo["navigation"], "robot_id": "rob_a1b2c3d4", "task": "navigation",
            "name": "nav-renamed", "config": {"epochs": 1000, "batch_size": 8}}
    r = api.post("/v1/models/train", json=body)
    assert r.status_code == 202 and r.json()["model_id"] == mid
    run_id = r.json()["run_id"]
    model = api.get(f"/v1/models/{mid}").json()
    assert model["name"] == "nav-renamed" and [v["version"] for v in model["versions"]] == \
        ["v1", "v2"]
    refused = api.post(f"/v1/models/{mid}/promote", json={"version": "v2"})
    assert refused.status_code == 409 and "not complete" in refused.json()["error"]["message"]
    running = wait_run(api, mid, run_id, until=("running", "complete", "failed"), timeout=60)
    assert running["status"] == "running"
    cancelled = api.post(f"/v1/models/{mid}/runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.post(f"/v1/models/{mid}/runs/{run_id}/cancel").status_code == 409
    assert api.post(f"/v1/models/{mid}/promote", json={"version": "v1"}).status_code == 200
    model = api.get(f"/v1/models/{mid}").json()
    assert model["active_version"] == "v1" and model["promotions"][-1]["from"] is None


def test_delete_removes_everything(api: httpx.Client, server: Server,
                                   demo: dict[str, str]) -> None:
    r = api.post("/v1/models/train", json={"dataset_id": demo["navigation"],
                                           "robot_id": "rob_deleteme", "task": "navigation",
                                           "config": {"epochs": 2}})
    mid, rid = r.json()["model_id"], r.json()["run_id"]
    assert wait_run(api, mid, rid)["status"] == "complete"
    assert (server.data_dir / "artifacts" / mid / "v1" / "model.onnx").is_file()
    r2 = api.post("/v1/models/train", json={"dataset_id": demo["navigation"],
                                            "robot_id": "rob_deleteme", "task": "navigation",
                                            "config": {"epochs": 500}})
    assert api.delete(f"/v1/models/{mid}").status_code == 200
    assert api.get(f"/v1/models/{mid}").status_code == 404
    assert api.get(f"/v1/models/{mid}/runs/{r2.json()['run_id']}").status_code == 404
    assert not (server.data_dir / "artifacts" / mid).exists()
    assert all(m["id"] != mid for m in api.get("/v1/models").json()["data"])
