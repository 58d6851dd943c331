"""ONNX export with the features description as metadata, parity and latency checks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from kairo_backend.training.nets import ExportWrapper
from kairo_features.schema import META_FEATURES, META_MODEL_ID, META_MODEL_VERSION, META_SCHEMA, META_TASK, SCHEMA

OPSET = 17


def export_onnx(wrapper: ExportWrapper, path: Path, *, model_id: str, version: str) -> None:
    features = wrapper.features
    wrapper = wrapper.cpu().eval()
    example = tuple(torch.zeros([1, *e["shape"]], dtype=torch.float32)
                    for e in features["inputs"])
    in_names = [e["name"] for e in features["inputs"]]
    out_names = wrapper.output_names()
    axes = {n: {0: "batch"} for n in in_names + out_names}
    torch.onnx.export(wrapper, example, str(path), input_names=in_names,
                      output_names=out_names, dynamic_axes=axes, opset_version=OPSET,
                      dynamo=False)
    proto = onnx.load(str(path))
    meta = {
        META_SCHEMA: SCHEMA,
        META_MODEL_ID: model_id,
        META_MODEL_VERSION: version,
        META_TASK: features["task"],
        META_FEATURES: json.dumps(features, sort_keys=True),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "kairo_backend"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def parity(wrapper: ExportWrapper, path: Path, raw_inputs: list[np.ndarray],
           n: int = 256) -> float:
    """Max absolute difference between torch and onnxruntime on raw samples."""
    sess = session(path)
    feeds = {e["name"]: r[:n].astype(np.float32)
             for e, r in zip(wrapper.features["inputs"], raw_inputs, strict=True)}
    got = sess.run(None, feeds)
    wrapper = wrapper.cpu().eval()
    with torch.no_grad():
        ref: Any = wrapper(*[torch.from_numpy(v) for v in feeds.values()])
    refs = list(ref) if isinstance(ref, tuple) else [ref]
    if wrapper.detection:
        return rows_apart(got[0], refs[0].numpy())
    return max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, refs, strict=True))


def rows_apart(a: np.ndarray, b: np.ndarray, tie: float = 1e-4) -> float:
    """How far two runtimes' detections [N, K, 6] are apart: the largest score difference
    (each image's scores are sorted), and the distance from each row of b to the nearest
    row of a in the same image. Rows scored alike may come out of TopK in either order,
    and a row tied (within `tie`) with the K-th best may be swapped for another: neither
    is a difference."""
    worst = float(np.abs(a[:, :, 4] - b[:, :, 4]).max()) if a.size else 0.0
    for rows_a, rows_b in zip(a, b, strict=True):
        kept = rows_b[rows_b[:, 4] > rows_b[:, 4].min() + tie]
        if len(kept):
            apart = np.abs(rows_a[:, None, :] - kept[None, :, :]).max(axis=2)  # [K_a, kept]
            worst = max(worst, float(apart.min(axis=0).max()))
    return worst


def latency_p99_ms(path: Path, features: dict[str, Any], runs: int = 200) -> float:
    """p99 of single-sample inference with onnxruntime, after a warm-up."""
    sess = session(path)
    rng = np.random.default_rng(0)
    feeds = {e["name"]: rng.random([1, *e["shape"]], dtype=np.float32)
             for e in features["inputs"]}
    for _ in range(10):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.percentile(times, 99))

