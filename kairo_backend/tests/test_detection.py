"""Object detection: the demo generator, the detector's targets and decode, and a model
trained by the real backend (the session's `trained` run) read back with onnxruntime."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import TARGETS, Server
from kairo_backend.errors import ValidationFailed
from kairo_backend.training.datasets import check_arrays
from kairo_backend.training.demo import make_demo
from kairo_backend.training.demo_detection import MAX_OBJECTS, MAX_SIZE, MIN_SIZE, render_detection, shape_mask
from kairo_backend.training.detection import STRIDE, build_targets, decode
from kairo_backend.training.detection_metrics import corners, iou_matrix
from kairo_features.tasks import IMAGE_SHAPE, SHAPE_CLASSES


def test_demo_is_deterministic_by_seed() -> None:
    a = render_detection(12, np.random.default_rng(5))
    b = render_detection(12, np.random.default_rng(5))
    c = render_detection(12, np.random.default_rng(6))
    for name in ("image", "labels", "boxes"):
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["image"], c["image"])
    arrays, features = make_demo("object_detection", 12, seed=5)
    np.testing.assert_array_equal(arrays["image"], a["image"])
    assert features["classes"] == list(SHAPE_CLASSES) and len(SHAPE_CLASSES) >= 4
    assert features["max_detections"] == 20 and features["score_threshold"] == 0.3


def test_demo_counts_classes_and_boxes() -> None:
    n = 300
    d = render_detection(n, np.random.default_rng(1))
    assert d["image"].shape == (n, *IMAGE_SHAPE) and d["image"].dtype == np.uint8
    assert d["labels"].shape == (n, MAX_OBJECTS) and d["boxes"].shape == (n, MAX_OBJECTS, 4)
    real = d["labels"] >= 0
    counts = real.sum(axis=1)
    # objects fill the first slots; every count 0..6 occurs; -1 pads with zero boxes
    assert np.all(real[:, :-1] | ~real[:, 1:])
    assert set(counts.tolist()) == set(range(MAX_OBJECTS + 1))
    assert np.all(d["boxes"][~real] == 0)
    per_class = np.bincount(d["labels"][real], minlength=len(SHAPE_CLASSES))
    assert len(per_class) == len(SHAPE_CLASSES) and per_class.min() > 0.15 * real.sum()
    boxes = d["boxes"][real]
    _, h, w = IMAGE_SHAPE
    assert boxes[:, 2].min() >= MIN_SIZE and boxes[:, 2].max() <= MAX_SIZE
    assert boxes[:, 2].max() / boxes[:, 2].min() > 3  # different scales
    x1y1x2y2 = corners(boxes)
    assert x1y1x2y2[:, :2].min() >= 0 and x1y1x2y2[:, 2].max() <= w and x1y1x2y2[:, 3].max() <= h
    # objects overlap in some images
    overlapping = 0
    for i in range(n):
        b = corners(d["boxes"][i][real[i]])
        iou = iou_matrix(b, b)
        overlapping += int(np.any(iou[~np.eye(len(b), dtype=bool)] > 0))
    assert overlapping > n // 10


def test_dataset_checks_name_what_is_wrong() -> None:
    arrays, features = make_demo("object_detection", 12, seed=1)
    assert check_arrays(arrays, features) == 12
    floats = {**arrays, "image": arrays["image"].astype(np.float32) / 255}
    assert check_arrays(floats, features) == 12

    def refused(change: dict[str, np.ndarray], match: str) -> None:
        with pytest.raises(ValidationFailed, match=match):
            check_arrays({**arrays, **change}, features)

    refused({"image": arrays["image"].astype(np.float32)}, r"float images hold values in \[0, 1\]")
    refused({"image": arrays["image"].astype(np.int64)}, "images are uint8")
    refused({"boxes": arrays["boxes"][:, :5]}, "labels and boxes disagree on objects per image")
    refused({"labels": arrays["labels"][:, 0]}, r"file\.labels: per-sample shape \[\] does not match")
    labels = arrays["labels"].copy()
    labels[0, 0] = 4
    refused({"labels": labels}, r"integers in 0\.\.3 \(-1 pads")
    boxes = arrays["boxes"].copy()
    boxes[arrays["labels"] >= 0] = 0
    refused({"boxes": boxes}, "size_x and size_y must be > 0")


@pytest.mark.parametrize("label", range(len(SHAPE_CLASSES)))
def test_each_shape_fills_its_tight_box(label: int) -> None:
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float32) + 0.5
    mask = shape_mask(label, 80.0, 60.0, 30.0, xx, yy)
    rows, cols = np.nonzero(mask)
    # pixel centres inside a 30 px box centred at (80, 60): 65..95 by 45..75
    assert cols.min() + 0.5 >= 65 and cols.max() + 0.5 <= 95 and cols.max() - cols.min() >= 28
    assert rows.min() + 0.5 >= 45 and rows.max() + 0.5 <= 75 and rows.max() - rows.min() >= 28


def test_decode_keeps_local_peaks_best_first() -> None:
    n_classes, h, w, k = 3, 30, 40, 5
    heat = torch.full((1, n_classes, h, w), -9.0)
    heat[0, 1, 10, 20] = 3.0   # a peak ...
    heat[0, 1, 10, 21] = 2.0   # ... and its lower neighbour: suppressed
    heat[0, 2, 25, 5] = 1.0    # another class, another place
    log_size = torch.zeros((1, 2, h, w))
    log_size[0, :, 10, 20] = torch.log(torch.tensor([8.0, 4.0]))  # cells: 32 x 16 px
    offset = torch.zeros((1, 2, h, w))
    offset[0, :, 10, 20] = torch.tensor([0.25, 0.5])
    rows = decode(heat, log_size, offset, k)[0].numpy()
    assert rows.shape == (k, 6)
    cx, cy = (20 + 0.25) * STRIDE, (10 + 0.5) * STRIDE
    np.testing.assert_allclose(rows[0], [cx - 16, cy - 8, cx + 16, cy + 8, 1 / (1 + np.exp(-3)), 1],
                               rtol=1e-5)
    np.testing.assert_allclose(rows[1, 4:], [1 / (1 + np.exp(-1)), 2], rtol=1e-5)
    # every cell that is not a local maximum scores exactly 0; scores never increase
    assert np.all(np.diff(rows[:, 4]) <= 0) and rows[2, 4] == pytest.approx(1 / (1 + np.exp(9)))
    # neighbours that both saturate the sigmoid (1.0 in float32) still give one detection
    heat[0, 0, 3, 3], heat[0, 0, 3, 4] = 40.0, 41.0
    rows = decode(heat, log_size, offset, k)[0].numpy()
    assert rows[0, 4] == 1.0 and rows[0, 5] == 0 and rows[1, 4] < 1.0


def test_targets_decode_back_to_the_boxes() -> None:
    d = render_detection(6, np.random.default_rng(3))
    t = build_targets(d["labels"], d["boxes"], len(SHAPE_CLASSES), 30, 40)
    assert t["heat"].max() == 1.0 and int(t["mask"].sum()) == int((d["labels"] >= 0).sum())
    logits = torch.logit(torch.from_numpy(t["heat"]).clamp(1e-6, 1 - 1e-6))
    log_size = np.zeros((6, 2, 30 * 40), np.float32)
    offset = np.zeros((6, 2, 30 * 40), np.float32)
    for i in range(6):
        for j in np.nonzero(t["mask"][i])[0]:
            log_size[i, :, t["cell"][i, j]] = t["log_size"][i, j]
            offset[i, :, t["cell"][i, j]] = t["offset"][i, j]
    rows = decode(logits, torch.from_numpy(log_size).reshape(6, 2, 30, 40),
                  torch.from_numpy(offset).reshape(6, 2, 30, 40), 20).numpy()
    for i in range(6):
        real = d["labels"][i] >= 0
        found = rows[i][rows[i, :, 4] > 0.99]
        assert len(found) == real.sum()
        if real.any():
            iou = iou_matrix(corners(d["boxes"][i][real]), found[:, :4])
            assert np.all(iou.max(axis=1) > 0.999)
            assert sorted(found[:, 5].tolist()) == sorted(d["labels"][i][real].tolist())


# --- a model trained by the real backend ------------------------------------------


@pytest.fixture(scope="module")
def detector(api: httpx.Client, server: Server, trained: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    run = trained["object_detection"]
    assert run["status"] == "complete", run["error"]
    exp = api.post(f"/v1/models/{run['model_id']}/export", json={"format": "onnx", "version": "v1"})
    assert exp.status_code == 200, exp.text
    blob = httpx.get(exp.json()["download_url"], timeout=30)
    assert blob.status_code == 200
    return run, blob.content


def test_exported_graph_has_the_contract_io(detector: tuple[dict[str, Any], bytes]) -> None:
    _, model = detector
    proto = onnx.load_from_string(model)
    features = json.loads({p.key: p.value for p in proto.metadata_props}["kairo.features"])
    assert features["classes"] == list(SHAPE_CLASSES)
    assert features["max_detections"] == 20 and features["score_threshold"] == 0.3
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    [inp] = sess.get_inputs()
    [out] = sess.get_outputs()
    assert inp.name == "image" and inp.type == "tensor(float)" and inp.shape[1:] == [3, 120, 160]
    assert out.name == "detections" and out.type == "tensor(float)" and out.shape[1:] == [20, 6]
    # batch 1, as the node runs it; batch 3 too (the graph's batch axis is free)
    images = render_detection(3, np.random.default_rng(99))["image"].astype(np.float32) / 255
    [one] = sess.run(None, {"image": images[:1]})
    [three] = sess.run(None, {"image": images})
    assert one.shape == (1, 20, 6) and three.shape == (3, 20, 6)
    np.testing.assert_allclose(three[:1], one, atol=1e-4)
    assert np.all(np.diff(three[:, :, 4], axis=1) <= 0)  # best first
    assert np.all((three[:, :, 4] >= 0) & (three[:, :, 4] <= 1))
    classes = three[:, :, 5]
    assert np.array_equal(classes, np.round(classes)) and classes.min() >= 0 and classes.max() < 4


def test_detections_find_the_drawn_objects(detector: tuple[dict[str, Any], bytes]) -> None:
    """Images the model never saw (another seed): the objects drawn at least 16 px wide are
    found, by class, with IoU >= 0.5, above the score threshold (the short test run finds
    most, not all: its val mAP@0.5 is about 0.9)."""
    _, model = detector
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    d = render_detection(16, np.random.default_rng(2026))
    [rows] = sess.run(None, {"image": d["image"].astype(np.float32) / 255})
    wanted = found = 0
    for i in range(len(rows)):
        kept = rows[i][rows[i, :, 4] >= 0.3]
        for label, box in zip(d["labels"][i], d["boxes"][i], strict=True):
            if label < 0 or box[2] < 16:
                continue
            wanted += 1
            same = kept[kept[:, 5] == label]
            if len(same) and iou_matrix(corners(box[None]), same[:, :4]).max() >= 0.5:
                found += 1
    assert wanted >= 20
    assert found >= 0.85 * wanted, f"{found} of {wanted} objects found"  # 33 of 35 here


def test_run_metrics_are_map(detector: tuple[dict[str, Any], bytes]) -> None:
    run, _ = detector
    metrics = run["metrics"]
    assert TARGETS["object_detection"][1] <= metrics["val_accuracy"] <= 1.0
    assert 0.0 < metrics["accuracy"] <= 1.0
    [line] = [ln for ln in run["logs"] if "mAP@0.5:0.95" in ln]
    val_coco = float(line.rsplit(",", 1)[1].split()[0])
    assert 0.0 < val_coco < metrics["val_accuracy"]
