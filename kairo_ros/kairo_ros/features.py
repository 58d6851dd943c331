"""The features description (`kairo.features/1`, docs/features.md) as frozen dataclasses.

The backend writes the description into every exported ONNX file; this
module reads it back and checks it, so that the inference node can build its
subscriptions and publishers from it and check a model before it serves.
Every error names the offending key (e.g. `features.inputs[1].shape`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kairo_ros.api.errors import KairoError

SCHEMA = "kairo.features/1"
TASKS = ("manipulation", "navigation", "object_detection")
IMAGE_TYPE = "sensor_msgs/msg/Image"
DETECTION_TYPE = "kairo_interfaces/msg/Detection2DArray"
IMAGE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
# The two graph outputs a detection model has instead of one per output entry.
DETECTION_GRAPH_OUTPUTS = ("scores", "boxes")

# ONNX metadata keys written by the backend.
META_SCHEMA = "kairo.schema"
META_MODEL_ID = "kairo.model_id"
META_MODEL_VERSION = "kairo.model_version"
META_TASK = "kairo.task"
META_FEATURES = "kairo.features"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/msg/[A-Za-z][A-Za-z0-9_]*$")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
_TOPIC = re.compile(r"^/[A-Za-z0-9_~{}/]*$")


class FeaturesError(KairoError, ValueError):
    """A features description is missing, malformed or inconsistent.

    The message starts with the offending key, e.g. `features.inputs[0].shape: ...`.
    """

    code = "bad_features"


@dataclass(frozen=True)
class Normalisation:
    """Per-value mean and std (informational: the graph applies them itself)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class FeatureEntry:
    """One model input or output and the ROS topic, type and fields behind it."""

    name: str
    topic: str
    msg_type: str
    fields: tuple[str, ...]
    shape: tuple[int, ...]
    encoding: str | None = None
    normalisation: Normalisation | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def is_image(self) -> bool:
        return self.msg_type == IMAGE_TYPE

    @property
    def is_detection(self) -> bool:
        return self.msg_type == DETECTION_TYPE


@dataclass(frozen=True)
class Features:
    """A checked `kairo.features/1` document."""

    task: str
    inputs: tuple[FeatureEntry, ...]
    outputs: tuple[FeatureEntry, ...]
    tolerance: float | None = None
    classes: tuple[str, ...] = ()

    @property
    def primary(self) -> FeatureEntry:
        """The input whose messages trigger a prediction."""
        return self.inputs[0]

    @property
    def is_detection(self) -> bool:
        return self.task == "object_detection"

    def graph_output_names(self) -> tuple[str, ...]:
        """The ONNX output names this description implies, in order."""
        if self.is_detection:
            return DETECTION_GRAPH_OUTPUTS
        return tuple(e.name for e in self.outputs)

    def wiring_key(self) -> tuple[Any, ...]:
        """What must stay equal for a new model to be swapped in without rewiring."""
        def key(e: FeatureEntry) -> tuple[Any, ...]:
            return (e.name, e.topic, e.msg_type, e.fields, e.shape, e.encoding)
        return (self.task, tuple(map(key, self.inputs)), tuple(map(key, self.outputs)), self.classes)


def _fail(where: str, problem: str) -> FeaturesError:
    return FeaturesError(f"{where}: {problem}")


def _require(doc: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in doc:
        raise _fail(f"{where}.{key}", "required key is missing")
    return doc[key]


def _numbers(value: Any, where: str, length: int) -> tuple[float, ...]:
    if (not isinstance(value, Sequence) or isinstance(value, str)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise _fail(where, "must be a list of numbers")
    if len(value) != length:
        raise _fail(where, f"has {len(value)} values; the entry has {length}")
    return tuple(float(v) for v in value)


def _normalisation(value: Any, where: str, length: int) -> Normalisation | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(where, "must be an object {mean: [...], std: [...]}")
    mean = _numbers(_require(value, "mean", where), f"{where}.mean", length)
    std = _numbers(_require(value, "std", where), f"{where}.std", length)
    return Normalisation(mean, std)


def _entry(doc: Any, where: str, *, output: bool) -> FeatureEntry:
    if not isinstance(doc, Mapping):
        raise _fail(where, "must be an object")
    name = _require(doc, "name", where)
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(f"{where}.name", f"{name!r} must match [a-z][a-z0-9_]*")
    topic = _require(doc, "topic", where)
    if not isinstance(topic, str) or not _TOPIC.match(topic) or "//" in topic:
        raise _fail(f"{where}.topic", f"{topic!r} must be an absolute topic name like /joint_states")
    msg_type = _require(doc, "type", where)
    if not isinstance(msg_type, str) or not _TYPE.match(msg_type):
        raise _fail(f"{where}.type", f"{msg_type!r} must look like pkg/msg/Name")
    fields = _require(doc, "fields", where)
    if not isinstance(fields, list) or not all(isinstance(f, str) and _FIELD.match(f) for f in fields):
        raise _fail(f"{where}.fields", "must be a list of dotted field paths like point.x")
    detection = output and msg_type == DETECTION_TYPE
    if not fields and not detection:
        raise _fail(f"{where}.fields", "must name at least one field")
    shape = _require(doc, "shape", where)
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise _fail(f"{where}.shape", "must be a non-empty list of positive integers")
    encoding = doc.get("encoding")
    if msg_type == IMAGE_TYPE and not output:
        if fields != ["data"]:
            raise _fail(f"{where}.fields", 'an image input reads ["data"]')
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise _fail(f"{where}.shape", "an image input has shape [C, H, W] with C 1 or 3")
        encoding = encoding or "rgb8"
        if encoding not in ("rgb8", "mono8"):
            raise _fail(f"{where}.encoding", f"{encoding!r}: a model takes rgb8 or mono8 images")
    elif encoding is not None:
        raise _fail(f"{where}.encoding", f"only {IMAGE_TYPE} inputs have an encoding")
    size = math.prod(shape)
    norm_key = "denormalise" if output else "normalise"
    return FeatureEntry(name=name, topic=topic, msg_type=msg_type, fields=tuple(fields), shape=tuple(shape),
                        encoding=encoding, normalisation=_normalisation(doc.get(norm_key), f"{where}.{norm_key}", size))


def parse_features(doc: str | bytes | Mapping[str, Any]) -> Features:
    """Check a features description (JSON text or a decoded object) and return it."""
    if isinstance(doc, str | bytes):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise _fail("features", f"is not valid JSON ({exc})") from exc
    if not isinstance(doc, Mapping):
        raise _fail("features", "must be a JSON object")
    schema = doc.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise _fail("features.schema", f"{schema!r} is not supported; this node reads {SCHEMA!r}")
    task = _require(doc, "task", "features")
    if task not in TASKS:
        raise _fail("features.task", f"{task!r} must be one of {', '.join(TASKS)}")
    sides: dict[str, tuple[FeatureEntry, ...]] = {}
    for side in ("inputs", "outputs"):
        entries = _require(doc, side, "features")
        if not isinstance(entries, list) or not entries:
            raise _fail(f"features.{side}", "must be a non-empty list")
        sides[side] = tuple(_entry(e, f"features.{side}[{i}]", output=side == "outputs")
                            for i, e in enumerate(entries))
    names = [e.name for e in sides["inputs"] + sides["outputs"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail("features", f"names must be unique; repeated: {', '.join(duplicates)}")
    for i, entry in enumerate(sides["outputs"]):
        if entry.is_detection and task != "object_detection":
            raise _fail(f"features.outputs[{i}].type", f"{DETECTION_TYPE} is for object_detection only")
    classes: tuple[str, ...] = ()
    tolerance: float | None = None
    if task == "object_detection":
        raw_classes = _require(doc, "classes", "features")
        if (not isinstance(raw_classes, list) or len(raw_classes) < 2
                or not all(isinstance(c, str) and c for c in raw_classes)):
            raise _fail("features.classes", "detection needs a list of at least two class names")
        classes = tuple(raw_classes)
        if len(sides["inputs"]) != 1 or not sides["inputs"][0].is_image:
            raise _fail("features.inputs", f"detection takes exactly one {IMAGE_TYPE} input")
        if len(sides["outputs"]) != 1 or not sides["outputs"][0].is_detection:
            raise _fail("features.outputs", f"detection has exactly one output of type {DETECTION_TYPE}")
    else:
        raw_tolerance = doc.get("tolerance")
        if raw_tolerance is not None:
            if isinstance(raw_tolerance, bool) or not isinstance(raw_tolerance, int | float) or raw_tolerance <= 0:
                raise _fail("features.tolerance", "must be a number > 0")
            tolerance = float(raw_tolerance)
    return Features(task=task, inputs=sides["inputs"], outputs=sides["outputs"], tolerance=tolerance, classes=classes)


def features_from_metadata(metadata: Mapping[str, str]) -> Features:
    """The features description stored in an ONNX file's metadata."""
    if META_FEATURES not in metadata:
        raise _fail(META_FEATURES, "the ONNX file has no features description in its metadata; "
                                   "export the model from a Kairo backend, which writes it")
    schema = metadata.get(META_SCHEMA, SCHEMA)
    if schema != SCHEMA:
        raise _fail(META_SCHEMA, f"{schema!r} is not supported; this node reads {SCHEMA!r}")
    features = parse_features(metadata[META_FEATURES])
    task = metadata.get(META_TASK)
    if task is not None and task != features.task:
        raise _fail(META_TASK, f"{task!r} disagrees with the description's task {features.task!r}")
    return features
