"""The envelope: per-value min and max of the training split, in the exported ONNX metadata.

Trained through the real server on small demo datasets; the ONNX file (and
the one inside the ros2-pkg export) is read back with onnx and onnxruntime
and parsed with kairo_features, as the robot does.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import Server, cli, wait_run
from kairo_backend.training.datasets import load_arrays
from kairo_backend.training.demo import make_demo
from kairo_backend.training.trainer import split_rows, with_envelope
from kairo_features.schema import Features, features_from_metadata, parse_features
from kairo_features.tasks import default_features

SAMPLES = 300
SEED = 11
TASKS = ("manipulation", "navigation")


@pytest.fixture(scope="module")
def envelope_models(api: httpx.Client, server: Server) -> dict[str, dict[str, Any]]:
    """{task: {model_id, dataset_id}} of a short training on a small demo dataset."""
    accepted = {}
    for task in TASKS:
        dataset_id = cli(server.data_dir, "datasets", "create-demo", task, "--workspace", "acme",
                         "--samples", str(SAMPLES), "--seed", str(SEED))
        r = api.post("/v1/models/train", json={
            "dataset_id": dataset_id, "robot_id": "rob_envelope", "task": task,
            "name": f"{task}-envelope", "config": {"epochs": 2, "batch_size": 64}})
        assert r.status_code == 202, r.text
        accepted[task] = {"dataset_id": dataset_id, **r.json()}
    for accepted_run in accepted.values():
        run = wait_run(api, accepted_run["model_id"], accepted_run["run_id"])
        assert run["status"] == "complete", run.get("error")
    return accepted


def _download(api: httpx.Client, model_id: str, fmt: str) -> bytes:
    exp = api.post(f"/v1/models/{model_id}/export", json={"format": fmt, "version": "v1"})
    assert exp.status_code == 200, exp.text
    blob = httpx.get(exp.json()["download_url"], timeout=30)
    assert blob.status_code == 200
    return blob.content


def _assert_envelope_is_training_range(features: Features, arrays: dict[str, np.ndarray]) -> None:
    train_rows, val_rows = split_rows(len(next(iter(arrays.values()))))
    for entry in features.entries:
        values = arrays[entry.name].astype(np.float32).reshape(len(arrays[entry.name]), -1)
        assert entry.range is not None, entry.name
        assert len(entry.range.low) == entry.size == values.shape[1]
        # float32 both sides: the bounds are exactly the values seen
        np.testing.assert_array_equal(np.float32(entry.range.low), values[train_rows].min(axis=0))
        np.testing.assert_array_equal(np.float32(entry.range.high), values[train_rows].max(axis=0))
    # the validation split lies (somewhere) outside: the envelope is the training split's, not all rows'
    outside = []
    for entry in features.entries:
        assert entry.range is not None
        val = arrays[entry.name].astype(np.float32).reshape(len(arrays[entry.name]), -1)[val_rows]
        outside.append(np.any((val > np.float32(entry.range.high)) | (val < np.float32(entry.range.low))))
    assert any(outside)


@pytest.mark.parametrize("task", TASKS)
def test_exported_onnx_carries_the_training_envelope(api: httpx.Client, server: Server,
                                                     envelope_models: dict[str, dict[str, Any]],
                                                     task: str) -> None:
    model = envelope_models[task]
    blob = _download(api, model["model_id"], "onnx")
    from_onnx = features_from_metadata({p.key: p.value for p in onnx.load_from_string(blob).metadata_props})
    from_runtime = features_from_metadata(
        ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map)
    assert from_onnx == from_runtime
    stored = load_arrays((server.data_dir / "datasets" / f"{model['dataset_id']}.npz").read_bytes())
    regenerated, _ = make_demo(task, SAMPLES, SEED)
    assert set(stored) == set(regenerated)
    for name, values in regenerated.items():
        np.testing.assert_array_equal(stored[name], values)
    _assert_envelope_is_training_range(from_onnx, stored)
    # the wiring is the dataset's: only the envelope was added
    dataset_features = parse_features(api.get(f"/v1/datasets/{model['dataset_id']}").json()["features"])
    assert from_onnx.wiring_key() == dataset_features.wiring_key()


def test_ros2_pkg_export_carries_the_same_envelope(api: httpx.Client,
                                                   envelope_models: dict[str, dict[str, Any]]) -> None:
    model_id = envelope_models["manipulation"]["model_id"]
    onnx_features = features_from_metadata(
        {p.key: p.value for p in onnx.load_from_string(_download(api, model_id, "onnx")).metadata_props})
    with tarfile.open(fileobj=io.BytesIO(_download(api, model_id, "ros2-pkg")), mode="r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/models/model.onnx"))
        extracted = tar.extractfile(member)
        assert extracted is not None
        packaged = onnx.load_from_string(extracted.read())
    packaged_features = features_from_metadata({p.key: p.value for p in packaged.metadata_props})
    assert packaged_features == onnx_features
    assert all(e.range is not None for e in packaged_features.entries)


def test_envelope_replaces_a_stated_range_and_skips_images() -> None:
    arrays, features = make_demo("object_detection", 20, 3)
    enveloped = parse_features(with_envelope(features, arrays, np.arange(16)))
    assert enveloped.inputs[0].range is None and enveloped.outputs[0].range is None
    doc = default_features("navigation")
    doc["inputs"][0]["range"] = {"min": [0.0] * 64, "max": [0.1] * 64}
    scans = np.linspace(0.05, 6.0, 64 * 4, dtype=np.float32).reshape(4, 64)
    nav = with_envelope(doc, {"scan": scans, "cmd_vel": np.zeros((4, 2), np.float32)}, np.array([0, 2]))
    assert doc["inputs"][0]["range"]["max"] == [0.1] * 64  # the caller's document is left alone
    parsed = parse_features(nav)
    assert parsed.inputs[0].range is not None
    assert parsed.inputs[0].range.low == tuple(float(v) for v in scans[0])
    assert parsed.inputs[0].range.high == tuple(float(v) for v in scans[2])
    assert parsed.outputs[0].range is not None and parsed.outputs[0].range.high == (0.0, 0.0)
