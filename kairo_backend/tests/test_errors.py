"""Bad input gets its 4xx with a code and a message; nothing stored is touched."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import Server
from kairo_backend.training.demo import make_demo


def snapshot(api: httpx.Client) -> Any:
    """What a rejected request must not change (run statuses may move on their own)."""
    models = [(m["id"], m["name"], m["active_version"], [v["version"] for v in m["versions"]])
              for m in api.get("/v1/models").json()["data"]]
    return models, api.get("/v1/datasets").json()


def err(r: httpx.Response, status: int, code: str, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert "Traceback" not in r.text
    for w in words:
        assert w in body["error"]["message"], body


def npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.fixture()
def unchanged(api: httpx.Client, demo: dict[str, str]) -> Any:
    before = snapshot(api)
    yield
    assert snapshot(api) == before


def train_body(demo: dict[str, str], **over: Any) -> dict[str, Any]:
    body = {"dataset_id": demo["manipulation"], "robot_id": "rob_err", "task": "manipulation",
            "config": {"epochs": 1}}
    body.update(over)
    return body


@pytest.mark.usefixtures("unchanged")
def test_train_rejections(api: httpx.Client, demo: dict[str, str], other_key: str,
                          server: Server) -> None:
    err(api.post("/v1/models/train", json=train_body(demo, task="juggling")), 422,
        "validation_error", "task")
    err(api.post("/v1/models/train", json=train_body(demo, dataset_id="ds_nope")), 404,
        "not_found", "ds_nope")
    err(api.post("/v1/models/train", json=train_body(demo, dataset_id=demo["navigation"])),
        422, "validation_error", "dataset_id")
    for epochs in (-1, 1001, 10**9):
        err(api.post("/v1/models/train", json=train_body(demo, config={"epochs": epochs})),
            422, "validation_error", "config.epochs")
    err(api.post("/v1/models/train", json=train_body(demo, config={"epochz": 3})), 422,
        "validation_error", "config.epochz")
    err(api.post("/v1/models/train", json=train_body(demo, architecture="transformer")), 422,
        "validation_error", "architecture")
    err(api.post("/v1/models/train", json=train_body(demo, architecture="cnn")), 422,
        "validation_error", "architecture")
    err(api.post("/v1/models/train", json=train_body(demo, robot_id="robot 1")), 422,
        "validation_error", "robot_id")
    body = train_body(demo)
    del body["robot_id"]
    err(api.post("/v1/models/train", json=body), 422, "validation_error", "robot_id")
    err(api.post("/v1/models/train", content=b'{"dataset_id": ',
                 headers={"Content-Type": "application/json"}), 400, "invalid_request", "JSON")
    # Messages in the API's words: characters (not pydantic's "items"), the header a body needs.
    err(api.post("/v1/models/train", json=train_body(demo, name="n" * 201)), 422,
        "validation_error", "name: at most 200 characters, not 201")
    err(api.post("/v1/models/train", content=json.dumps(train_body(demo)).encode(),
                 headers={"Content-Type": "text/plain"}), 422, "validation_error",
        "body: send a JSON object, with the header 'Content-Type: application/json'")
    with server.client(None) as anon:
        err(anon.post("/v1/models/train", json=train_body(demo)), 401, "unauthorized")
        err(anon.get("/v1/models"), 401, "unauthorized")
    with server.client("kai_live_wrong") as bad:
        err(bad.get("/v1/models"), 401, "unauthorized")
    with server.client(other_key) as other:  # another workspace's dataset
        err(other.post("/v1/models/train", json=train_body(demo)), 404, "not_found")
    err(api.get("/v1/models/mdl_missing"), 404, "not_found")
    err(api.get("/v1/nothing-here"), 404, "not_found")


@pytest.mark.usefixtures("unchanged")
def test_upload_rejections(api: httpx.Client, demo: dict[str, str]) -> None:
    arrays, features = make_demo("navigation", 50)
    good = npz(arrays)
    feat = json.dumps(features)

    def up(data: bytes, f: str = feat) -> httpx.Response:
        return api.post("/v1/datasets", files={"file": ("d.npz", data)},
                        data={"features": f, "name": "x"})

    err(up(b"garbage"), 422, "validation_error", "npz")
    err(up(good, "{not json"), 422, "validation_error", "features")
    wrong = dict(arrays, scan=arrays["scan"][:, :10])
    err(up(npz(wrong)), 422, "validation_error", "scan")
    bad_features = dict(features, task="cooking")
    err(up(good, json.dumps(bad_features)), 422, "validation_error", "features.task")
    big = npz({"scan": np.zeros((20000, 64), np.float32), "cmd_vel": np.zeros((20000, 2))})
    err(up(big), 413, "payload_too_large")
    err(api.post("/v1/datasets", json={"x": 1}), 400, "invalid_request", "multipart")


def test_upload_roundtrip_and_isolation(api: httpx.Client, server: Server,
                                        other_key: str, demo: dict[str, str]) -> None:
    arrays, features = make_demo("navigation", 40, seed=9)
    r = api.post("/v1/datasets", files={"file": ("d.npz", npz(arrays))},
                 data={"features": json.dumps(features), "name": "uploaded-nav"})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["id"].startswith("ds_") and ds["samples"] == 40 and ds["task"] == "navigation"
    assert api.get(f"/v1/datasets/{ds['id']}").json()["name"] == "uploaded-nav"
    with server.client(other_key) as other:
        assert other.get(f"/v1/datasets/{ds['id']}").status_code == 404
        assert other.get("/v1/datasets").json() == {"data": [], "total": 0}
        assert other.get("/v1/models").json() == {"data": [], "total": 0}
        mine = api.get("/v1/models").json()["data"]
        for m in mine:
            assert other.get(f"/v1/models/{m['id']}").status_code == 404
            assert other.delete(f"/v1/models/{m['id']}").status_code == 404
            assert other.post(f"/v1/models/{m['id']}/export",
                              json={"format": "onnx"}).status_code == 404
    assert api.get("/v1/models").json()["data"] == mine


def test_export_rejections(api: httpx.Client, trained: dict[str, Any]) -> None:
    mid = trained["object_detection"]["model_id"]
    err(api.post(f"/v1/models/{mid}/export", json={"format": "ros2-pkg", "version": "v99"}),
        404, "not_found")
    err(api.post(f"/v1/models/{mid}/export", json={"format": "zip"}), 422, "validation_error")
    err(api.post(f"/v1/models/{mid}/export", json={"format": "onnx", "version": "v99"}), 404,
        "not_found")
    err(api.post(f"/v1/models/{mid}/promote", json={"version": "v99"}), 404, "not_found")
