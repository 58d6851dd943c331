"""Small ONNX models built with onnx.helper, carrying the backend's metadata keys.

For the tests that need a model without training one: linear maps with
fixed random weights, wired by a features description as docs/features.md
defines it. Graph rules as the backend's exports: float32 inputs
[batch, *shape], one output per entry (detection: `detections`
[batch, max_detections, 6] rows x1, y1, x2, y2, score, class_index).
`colour_detector` is a detector that really finds things: solid-coloured
boxes, one class per colour, for the tests that check boxes end to end.
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

from kairo_features.schema import DEFAULT_MAX_DETECTIONS, SCHEMA
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
        # rows of sigmoids scaled to the input (x1 y1 x2 y2), a score in 0..1 and a class index
        rows, name = doc.get("max_detections", DEFAULT_MAX_DETECTIONS), doc["outputs"][0]["name"]
        _, height, width = doc["inputs"][0]["shape"]
        scale = np.tile(np.array([width, height, width, height, 1, len(doc["classes"]) - 1], np.float32), rows)
        inits.append(numpy_helper.from_array(scale, "row_scale"))
        inits.append(numpy_helper.from_array(np.array([-1, rows, 6], np.int64), "row_shape"))
        nodes.append(helper.make_node("Sigmoid", [dense("rows", rows * 6)], ["row_unit"]))
        nodes.append(helper.make_node("Mul", ["row_unit", "row_scale"], ["row_flat"]))
        nodes.append(helper.make_node("Reshape", ["row_flat", "row_shape"], [name]))
        outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", rows, 6])]
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


# The colour detector's classes and their RGB colours (values 0..1).
COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0), "yellow": (1.0, 1.0, 0.0)}


def colour_features(topic: str = "/camera/image_raw", shape: tuple[int, int, int] = (3, 120, 160),
                    score_threshold: float = 0.3) -> dict[str, Any]:
    """The default detection wiring with the colour classes, one detection row per class."""
    doc = features("object_detection")
    doc["inputs"][0].update(topic=topic, shape=list(shape))
    doc["classes"] = list(COLOURS)
    doc["max_detections"] = len(COLOURS)
    doc["score_threshold"] = score_threshold
    return doc


def colour_detector(doc: dict[str, Any], path: pathlib.Path, *, score: float = 0.9, tolerance: float = 0.25,
                    model_id: str = "mdl_colours", version: str = "v1") -> pathlib.Path:
    """Finds one solid box per colour class: the bounding box of the pixels within `tolerance` of the
    class's colour on every channel, scored `score` when there are any and 0 when none (rows sorted by
    score, best first, as the backend's detectors give them). Boxes in model-input pixels, x2/y2 exclusive.

    Built from plain ONNX operators (Abs, ReduceMax, ArgMax with select_last_index, TopK, Gather).
    """
    classes = doc["classes"]
    colours = np.array([COLOURS[c] for c in classes], np.float32).reshape(1, len(classes), 3, 1, 1)
    n = len(classes)
    inits = [numpy_helper.from_array(colours, "colours"),
             numpy_helper.from_array(np.array([tolerance], np.float32), "tolerance"),
             numpy_helper.from_array(np.array([score], np.float32), "score"),
             numpy_helper.from_array(np.array([n], np.int64), "k"),
             numpy_helper.from_array(np.arange(n, dtype=np.float32).reshape(1, n), "class_index"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1"),
             numpy_helper.from_array(np.array([-1], np.int64), "last")]
    name = doc["inputs"][0]["name"]
    out = doc["outputs"][0]["name"]
    nodes = [
        helper.make_node("Unsqueeze", [name, "axis1"], ["image5"]),                # [b, 1, 3, H, W]
        helper.make_node("Sub", ["image5", "colours"], ["diff"]),                   # [b, n, 3, H, W]
        helper.make_node("Abs", ["diff"], ["distance"]),
        helper.make_node("ReduceMax", ["distance"], ["worst"], axes=[2], keepdims=0),  # [b, n, H, W]
        helper.make_node("Less", ["worst", "tolerance"], ["hit"]),
        helper.make_node("Cast", ["hit"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["mask"], ["columns"], axes=[2], keepdims=0),   # [b, n, W]
        helper.make_node("ReduceMax", ["mask"], ["rows"], axes=[3], keepdims=0),      # [b, n, H]
        helper.make_node("ReduceMax", ["columns"], ["present"], axes=[2], keepdims=0),  # [b, n]
    ]
    for coord, profile, last in (("x1", "columns", 0), ("x2", "columns", 1), ("y1", "rows", 0), ("y2", "rows", 1)):
        nodes.append(helper.make_node("ArgMax", [profile], [f"{coord}_i"], axis=2, keepdims=0, select_last_index=last))
        nodes.append(helper.make_node("Cast", [f"{coord}_i"], [f"{coord}_f"], to=TensorProto.FLOAT))
        edge = f"{coord}_f"
        if last:  # the last hit pixel's far edge
            nodes.append(helper.make_node("Add", [f"{coord}_f", "one_f"], [f"{coord}_e"]))
            edge = f"{coord}_e"
        nodes.append(helper.make_node("Unsqueeze", [edge, "last"], [f"{coord}_c"]))
    inits.append(numpy_helper.from_array(np.array([1.0], np.float32), "one_f"))
    nodes += [
        helper.make_node("Mul", ["present", "score"], ["scores"]),
        helper.make_node("Unsqueeze", ["scores", "last"], ["score_c"]),
        helper.make_node("Unsqueeze", ["class_index", "last"], ["class_c"]),
        helper.make_node("Shape", ["score_c"], ["class_shape"]),
        helper.make_node("Expand", ["class_c", "class_shape"], ["class_b"]),
        helper.make_node("Concat", ["x1_c", "y1_c", "x2_c", "y2_c", "score_c", "class_b"], ["unsorted"], axis=2),
        helper.make_node("TopK", ["scores", "k"], ["_top", "order"], axis=1, largest=1, sorted=1),  # [b, n]
        helper.make_node("Unsqueeze", ["order", "last"], ["order3"]),
        helper.make_node("Shape", ["unsorted"], ["row_dims"]),
        helper.make_node("Expand", ["order3", "row_dims"], ["order_rows"]),
        helper.make_node("GatherElements", ["unsorted", "order_rows"], [out], axis=1),
    ]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *doc["inputs"][0]["shape"]])]
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", n, 6])]
    graph = helper.make_graph(nodes, "kairo_colour_detector", inputs, outputs, inits)
    return _save(graph, path, metadata_for(doc, model_id, version))


def draw_boxes(height: int, width: int, boxes: list[tuple[str, tuple[int, int, int, int]]],
               background: float = 0.2) -> np.ndarray:
    """An HxWx3 uint8 RGB frame: a dark background and each (colour class, (x1, y1, x2, y2)) box filled."""
    frame = np.full((height, width, 3), round(background * 255), np.uint8)
    for colour, (x1, y1, x2, y2) in boxes:
        frame[y1:y2, x1:x2] = np.array(COLOURS[colour]) * 255
    return frame
