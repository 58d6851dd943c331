"""The features description (`kairo.features/1`, see docs/features.md), defined once.

Used to validate uploaded datasets, to size the networks, and as ONNX metadata.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from kairo_backend.errors import ValidationFailed

SCHEMA = "kairo.features/1"
TASKS = ("manipulation", "navigation", "object_detection")
DETECTION_TYPE = "kairo_interfaces/msg/Detection2DArray"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPE = re.compile(r"^[A-Za-z0-9_]+/msg/[A-Za-z0-9_]+$")

# Defaults per task (docs/features.md, "Default wiring per task").
NAV_BEAMS = 64
IMAGE_SHAPE = (3, 32, 32)
SHAPE_CLASSES = ["circle", "square", "triangle"]


def default_features(task: str) -> dict[str, Any]:
    if task == "manipulation":
        return {
            "schema": SCHEMA,
            "task": task,
            "inputs": [
                {"name": "joint_positions", "topic": "/joint_states",
                 "type": "sensor_msgs/msg/JointState", "fields": ["position"], "shape": [3]},
                {"name": "target", "topic": "/target_point",
                 "type": "geometry_msgs/msg/PointStamped",
                 "fields": ["point.x", "point.y"], "shape": [2]},
            ],
            "outputs": [
                {"name": "joint_commands", "topic": "/arm_controller/commands",
                 "type": "std_msgs/msg/Float64MultiArray", "fields": ["data"], "shape": [3]},
            ],
            "tolerance": 0.05,
        }
    if task == "navigation":
        return {
            "schema": SCHEMA,
            "task": task,
            "inputs": [
                {"name": "scan", "topic": "/scan", "type": "sensor_msgs/msg/LaserScan",
                 "fields": ["ranges"], "shape": [NAV_BEAMS]},
            ],
            "outputs": [
                {"name": "cmd_vel", "topic": "/cmd_vel", "type": "geometry_msgs/msg/Twist",
                 "fields": ["linear.x", "angular.z"], "shape": [2]},
            ],
            "tolerance": 0.1,
        }
    if task == "object_detection":
        return {
            "schema": SCHEMA,
            "task": task,
            "inputs": [
                {"name": "image", "topic": "/camera/image_raw", "type": "sensor_msgs/msg/Image",
                 "fields": ["data"], "shape": list(IMAGE_SHAPE), "encoding": "rgb8"},
            ],
            "outputs": [
                {"name": "detections", "topic": "/detections", "type": DETECTION_TYPE,
                 "fields": [], "shape": [len(SHAPE_CLASSES) + 4]},
            ],
            "classes": list(SHAPE_CLASSES),
        }
    raise ValidationFailed(f"task: unknown task {task!r}; expected one of {', '.join(TASKS)}")


def is_detection(features: dict[str, Any]) -> bool:
    return features["task"] == "object_detection"


def size_of(entry: dict[str, Any]) -> int:
    n = 1
    for d in entry["shape"]:
        n *= int(d)
    return n


def _check_entry(where: str, entry: Any, *, output: bool) -> None:
    if not isinstance(entry, dict):
        raise ValidationFailed(f"features.{where}: must be an object")
    for key in ("name", "topic", "type", "fields", "shape"):
        if key not in entry:
            raise ValidationFailed(f"features.{where}.{key}: field required")
    if not isinstance(entry["name"], str) or not _NAME.match(entry["name"]):
        raise ValidationFailed(f"features.{where}.name: must match [a-z][a-z0-9_]*")
    if not isinstance(entry["topic"], str) or not entry["topic"].startswith("/"):
        raise ValidationFailed(f"features.{where}.topic: must be an absolute topic name")
    if not isinstance(entry["type"], str) or not _TYPE.match(entry["type"]):
        raise ValidationFailed(f"features.{where}.type: must look like pkg/msg/Name")
    fields = entry["fields"]
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        raise ValidationFailed(f"features.{where}.fields: must be a list of dotted paths")
    if not fields and not (output and entry["type"] == DETECTION_TYPE):
        raise ValidationFailed(f"features.{where}.fields: must not be empty")
    shape = entry["shape"]
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ValidationFailed(f"features.{where}.shape: must be a non-empty list of ints > 0")
    if size_of(entry) > 1_000_000:
        raise ValidationFailed(f"features.{where}.shape: too large")


def validate_features(doc: Any, task: str | None = None) -> dict[str, Any]:
    """Check a features document; return a normalised deep copy."""
    if not isinstance(doc, dict):
        raise ValidationFailed("features: must be a JSON object")
    doc = copy.deepcopy(doc)
    if doc.get("schema", SCHEMA) != SCHEMA:
        raise ValidationFailed(f"features.schema: must be {SCHEMA!r}")
    doc["schema"] = SCHEMA
    if doc.get("task") not in TASKS:
        raise ValidationFailed(f"features.task: must be one of {', '.join(TASKS)}")
    if task is not None and doc["task"] != task:
        raise ValidationFailed(f"features.task: is {doc['task']!r} but {task!r} was asked")
    for side in ("inputs", "outputs"):
        entries = doc.get(side)
        if not isinstance(entries, list) or not entries:
            raise ValidationFailed(f"features.{side}: must be a non-empty list")
        for i, e in enumerate(entries):
            _check_entry(f"{side}[{i}]", e, output=side == "outputs")
    names = [e["name"] for e in doc["inputs"] + doc["outputs"]]
    if len(set(names)) != len(names):
        raise ValidationFailed("features: input and output names must be unique")
    if is_detection(doc):
        classes = doc.get("classes")
        if (not isinstance(classes, list) or len(classes) < 2
                or not all(isinstance(c, str) for c in classes)):
            raise ValidationFailed("features.classes: detection needs a list of >= 2 class names")
        if len(doc["inputs"]) != 1 or len(doc["inputs"][0]["shape"]) != 3:
            raise ValidationFailed("features.inputs: detection takes one image input [C, H, W]")
        if len(doc["outputs"]) != 1 or doc["outputs"][0]["type"] != DETECTION_TYPE:
            raise ValidationFailed(
                f"features.outputs: detection has one output entry of type {DETECTION_TYPE}")
        doc.pop("tolerance", None)
    else:
        tol = doc.get("tolerance")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol <= 0:
            raise ValidationFailed("features.tolerance: regression tasks need a number > 0")
        doc["tolerance"] = float(tol)
    return doc


def dataset_array_names(features: dict[str, Any]) -> list[str]:
    """Names of the arrays an `.npz` dataset must hold for these features."""
    names = [e["name"] for e in features["inputs"]]
    if is_detection(features):
        return names + ["labels", "boxes"]
    return names + [e["name"] for e in features["outputs"]]
