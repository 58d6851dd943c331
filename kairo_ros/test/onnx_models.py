"""Small ONNX models built with onnx.helper, carrying the backend's metadata keys.

For the tests that need a model without training one: linear maps with
fixed random weights, wired by a features description as docs/features.md
defines it. Graph rules as the backend's exports: float32 inputs
[batch, *shape], one output per entry (detection: `scores`, `boxes`).
"""

from __future__ import annotations

import copy
import json
import math
import pathlib
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from kairo_features.schema import SCHEMA
from kairo_features.tasks import TASKS, default_features

# The documented default wiring of each task (kairo_features, docs/features.md).
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {task: default_features(task) for task in TASKS}


def features(task: str) -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_FEATURES[task])


def _save(graph: onnx.GraphProto, path: pathlib.Path, metadata: dict[str, str]) -> pathlib.Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kairo_tests")
    model.ir_version = 8
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def metadata_for(doc: dict[str, Any], model_id: str, version: str) -> dict[str, str]:
    return {"kairo.schema": SCHEMA, "kairo.model_id": model_id, "kairo.model_version": version,
            "kairo.task": doc["task"], "kairo.features": json.dumps(doc, sort_keys=True)}


def linear_model(doc: dict[str, Any], path: pathlib.Path, *, model_id: str = "mdl_test", version: str = "v1",
                 seed: int = 0, graph_shapes: dict[str, list[int]] | None = None,
                 metadata: dict[str, str] | None = None) -> pathlib.Path:
    """Outputs = concat(flattened inputs) @ W + b, per output entry (detection: scores and boxes).

    `graph_shapes` overrides the per-sample shape of named graph inputs, to
    build a model whose graph disagrees with its own description.
    """
    rng = np.random.default_rng(seed)
    graph_shapes = graph_shapes or {}
    inputs, nodes, inits, flat_names = [], [], [], []
    for entry in doc["inputs"]:
        shape = graph_shapes.get(entry["name"], entry["shape"])
        inputs.append(helper.make_tensor_value_info(entry["name"], TensorProto.FLOAT, ["batch", *shape]))
        flat = f"{entry['name']}_flat"
        nodes.append(helper.make_node("Flatten", [entry["name"]], [flat], axis=1))
        flat_names.append(flat)
    n_in = sum(math.prod(graph_shapes.get(e["name"], e["shape"])) for e in doc["inputs"])
    nodes.append(helper.make_node("Concat", flat_names, ["x"], axis=1))
    # Small weights on 0..255 pixel inputs keep the softmax away from saturation.
    scale = 1.0 / n_in

    def dense(name: str, n_out: int) -> str:
        inits.append(numpy_helper.from_array(rng.normal(0, scale, (n_in, n_out)).astype(np.float32), f"{name}_w"))
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, (n_out,)).astype(np.float32), f"{name}_b"))
        nodes.append(helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_mm"]))
        nodes.append(helper.make_node("Add", [f"{name}_mm", f"{name}_b"], [f"{name}_lin"]))
        return f"{name}_lin"

    outputs = []
    if doc["task"] == "object_detection":
        n_classes = len(doc["classes"])
        nodes.append(helper.make_node("Softmax", [dense("cls", n_classes)], ["scores"], axis=1))
        _, height, width = doc["inputs"][0]["shape"]
        inits.append(numpy_helper.from_array(np.array([width, height, width, height], np.float32), "box_scale"))
        nodes.append(helper.make_node("Sigmoid", [dense("box", 4)], ["box_unit"]))
        nodes.append(helper.make_node("Mul", ["box_unit", "box_scale"], ["boxes"]))
        outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_classes]),
                   helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 4])]
    else:
        for entry in doc["outputs"]:
            out_shape = np.array([-1, *entry["shape"]], dtype=np.int64)
            inits.append(numpy_helper.from_array(out_shape, f"{entry['name']}_shape"))
            nodes.append(helper.make_node("Reshape", [dense(entry["name"], math.prod(entry["shape"])),
                                                      f"{entry['name']}_shape"], [entry["name"]]))
            outputs.append(helper.make_tensor_value_info(entry["name"], TensorProto.FLOAT,
                                                         ["batch", *entry["shape"]]))
    graph = helper.make_graph(nodes, "kairo_test_model", inputs, outputs, inits)
    return _save(graph, path, metadata if metadata is not None else metadata_for(doc, model_id, version))


def with_ranges(doc: dict[str, Any], ranges: dict[str, tuple[list[float], list[float]]]) -> dict[str, Any]:
    """A copy of `doc` whose named entries carry an envelope (`range: {min, max}`), as the backend records it."""
    doc = copy.deepcopy(doc)
    for entry in doc["inputs"] + doc["outputs"]:
        if entry["name"] in ranges:
            low, high = ranges[entry["name"]]
            entry["range"] = {"min": list(low), "max": list(high)}
    return doc


def sqrt_model(doc: dict[str, Any], path: pathlib.Path, *, model_id: str = "mdl_sqrt",
               version: str = "v1") -> pathlib.Path:
    """Each output = Sqrt of the first values of the first input: NaN whenever one of those is negative.

    A graph that yields NaN for some inputs, as a badly trained or badly exported model may.
    """
    first = doc["inputs"][0]
    inputs = [helper.make_tensor_value_info(e["name"], TensorProto.FLOAT, ["batch", *e["shape"]])
              for e in doc["inputs"]]
    nodes = [helper.make_node("Flatten", [first["name"]], ["x"], axis=1)]
    inits, outputs = [], []
    for index, entry in enumerate(doc["outputs"]):
        size = math.prod(entry["shape"])
        for name, values in ((f"s{index}_starts", [0]), (f"s{index}_ends", [size]), (f"s{index}_axes", [1]),
                             (f"s{index}_shape", [-1, *entry["shape"]])):
            inits.append(numpy_helper.from_array(np.array(values, np.int64), name))
        nodes.append(helper.make_node("Slice", ["x", f"s{index}_starts", f"s{index}_ends", f"s{index}_axes"],
                                      [f"s{index}_x"]))
        nodes.append(helper.make_node("Sqrt", [f"s{index}_x"], [f"s{index}_root"]))
        nodes.append(helper.make_node("Reshape", [f"s{index}_root", f"s{index}_shape"], [entry["name"]]))
        outputs.append(helper.make_tensor_value_info(entry["name"], TensorProto.FLOAT, ["batch", *entry["shape"]]))
    graph = helper.make_graph(nodes, "kairo_test_sqrt_model", inputs, outputs, inits)
    return _save(graph, path, metadata_for(doc, model_id, version))
