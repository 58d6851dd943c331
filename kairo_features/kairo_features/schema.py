"""The features description (`kairo.features/1`, docs/features.md): its one parser and checks.

The backend checks a document when a dataset is created and writes it into
every exported ONNX file; the robot reads it back from there to wire the
inference node; the recorder and the importer align messages by it. All of
them parse it here, so a document one accepts the others accept. Every error
names the offending key (e.g. `features.inputs[1].shape`) and says what to do.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA = "kairo.features/1"
TASKS = ("manipulation", "navigation", "object_detection")
DETECTION_TASK = "object_detection"
IMAGE_TYPE = "sensor_msgs/msg/Image"
DETECTION_TYPE = "kairo_interfaces/msg/Detection2DArray"
# The node writes detections by introspection (field paths), so vision_msgs' type, whose paths
# kairo_interfaces mirrors, serves as well where vision_msgs is installed.
DETECTION_TYPES = (DETECTION_TYPE, "vision_msgs/msg/Detection2DArray")
# Encodings an image message may arrive in (the reader converts them) ...
IMAGE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "rgb16", "bgr16", "rgba16", "bgra16", "mono16",
                   "yuv422", "yuv422_yuy2")
# ... and the one a model takes, by its channel count C of [C, H, W].
MODEL_ENCODINGS = {3: "rgb8", 1: "mono8"}
# The one graph output a detection model has instead of one per output entry:
# [batch, max_detections, DETECTION_ROW] rows (x1, y1, x2, y2, score, class index)
# in model-input pixels, best first, rows past the real detections scored 0;
# and the dataset arrays that hold its truth.
DETECTION_GRAPH_OUTPUTS = ("detections",)
DETECTION_ROW = 6
DETECTION_ARRAYS = ("labels", "boxes")
BOX_SIZE = 4  # center_x, center_y, size_x, size_y in pixels
# A per-sample dimension of this value in `Features.dataset_arrays` takes any
# length, the same in every array that has it (detection: objects per image,
# padded with label -1).
ANY_LENGTH = -1
# Detection defaults and bounds: rows in the graph's output, and the score below
# which the node drops a row.
DEFAULT_MAX_DETECTIONS = 20
MAX_DETECTIONS_LIMIT = 1000
DEFAULT_SCORE_THRESHOLD = 0.3
MAX_ENTRY_SIZE = 1_000_000  # values per input or output and sample

# ONNX metadata keys written by the backend.
META_SCHEMA = "kairo.schema"
META_MODEL_ID = "kairo.model_id"
META_MODEL_VERSION = "kairo.model_version"
META_TASK = "kairo.task"
META_FEATURES = "kairo.features"

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/msg/[A-Za-z][A-Za-z0-9_]*$")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
# A fully qualified ROS 2 topic name: tokens of letters, digits and '_', none
# starting with a digit, no '//', no trailing '/', no '~' or '{}' substitutions.
_TOPIC = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)+$")
_DOC_KEYS = frozenset({"schema", "task", "inputs", "outputs", "tolerance", "classes", "max_detections",
                       "score_threshold"})
_ENTRY_KEYS = frozenset({"name", "topic", "type", "fields", "shape", "encoding", "range"})


class FeaturesError(ValueError):
    """A features description is missing, malformed or inconsistent.

    The message starts with the offending key, e.g. `features.inputs[0].shape: ...`.
    """

    code = "bad_features"


@dataclass(frozen=True)
class Normalisation:
    """Per-value mean and std (informational: the graph applies them itself)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_document(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class Range:
    """Per-value envelope: the lowest and highest value seen in the training data.

    Written by the backend at training; the inference node guards against
    values outside it (docs/features.md, "Envelope").
    """

    low: tuple[float, ...]
    high: tuple[float, ...]

    def to_document(self) -> dict[str, list[float]]:
        return {"min": list(self.low), "max": list(self.high)}


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
    is_output: bool = False
    range: Range | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def is_image(self) -> bool:
        return self.msg_type == IMAGE_TYPE and not self.is_output

    @property
    def is_detection(self) -> bool:
        return self.msg_type in DETECTION_TYPES and self.is_output

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "topic": self.topic, "type": self.msg_type,
                               "fields": list(self.fields), "shape": list(self.shape)}
        if self.encoding is not None:
            doc["encoding"] = self.encoding
        if self.normalisation is not None:
            doc["denormalise" if self.is_output else "normalise"] = self.normalisation.to_document()
        if self.range is not None:
            doc["range"] = self.range.to_document()
        return doc


@dataclass(frozen=True)
class Features:
    """A checked `kairo.features/1` document."""

    task: str
    inputs: tuple[FeatureEntry, ...]
    outputs: tuple[FeatureEntry, ...]
    tolerance: float | None = None
    classes: tuple[str, ...] = ()
    max_detections: int | None = None  # detection only
    score_threshold: float | None = None  # detection only

    @property
    def trigger(self) -> FeatureEntry:
        """The input whose messages trigger a prediction (and a sample when recording)."""
        return self.inputs[0]

    @property
    def primary(self) -> FeatureEntry:
        """The trigger, by the name the inference node knows it."""
        return self.inputs[0]

    @property
    def entries(self) -> tuple[FeatureEntry, ...]:
        return self.inputs + self.outputs

    @property
    def is_detection(self) -> bool:
        return self.task == DETECTION_TASK

    @property
    def input_size(self) -> int:
        """Values per sample over all inputs."""
        return sum(e.size for e in self.inputs)

    @property
    def output_size(self) -> int:
        """Values per sample over all outputs (detection: class scores and one box)."""
        if self.is_detection:
            return len(self.classes) + BOX_SIZE
        return sum(e.size for e in self.outputs)

    def entry(self, name: str) -> FeatureEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"no input or output named {name!r}; it has {', '.join(e.name for e in self.entries)}")

    def graph_output_names(self) -> tuple[str, ...]:
        """The ONNX output names this description implies, in order."""
        if self.is_detection:
            return DETECTION_GRAPH_OUTPUTS
        return tuple(e.name for e in self.outputs)

    def dataset_arrays(self) -> dict[str, tuple[int, ...]]:
        """The arrays a dataset holds for these features and each one's per-sample shape.

        One array per input and per output; detection holds `labels` [M] (class
        index, -1 pads) and `boxes` [M, 4] instead of the detection output, M
        (ANY_LENGTH here) the most objects an image of the dataset holds.
        """
        arrays = {e.name: e.shape for e in self.inputs}
        if self.is_detection:
            arrays.update(labels=(ANY_LENGTH,), boxes=(ANY_LENGTH, BOX_SIZE))
        else:
            arrays.update((e.name, e.shape) for e in self.outputs)
        return arrays

    def wiring_key(self) -> tuple[Any, ...]:
        """What must stay equal for a new model to be swapped in without rewiring."""
        def key(e: FeatureEntry) -> tuple[Any, ...]:
            return (e.name, e.topic, e.msg_type, e.fields, e.shape, e.encoding)
        return (self.task, tuple(map(key, self.inputs)), tuple(map(key, self.outputs)), self.classes)

    def to_document(self) -> dict[str, Any]:
        """The normalised JSON document; `parse_features(f.to_document()) == f`."""
        doc: dict[str, Any] = {"schema": SCHEMA, "task": self.task,
                               "inputs": [e.to_document() for e in self.inputs],
                               "outputs": [e.to_document() for e in self.outputs]}
        if self.tolerance is not None:
            doc["tolerance"] = self.tolerance
        if self.is_detection:
            doc["classes"] = list(self.classes)
            doc["max_detections"] = self.max_detections
            doc["score_threshold"] = self.score_threshold
        return doc


def _fail(where: str, problem: str) -> FeaturesError:
    return FeaturesError(f"{where}: {problem}")


def _require(doc: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in doc:
        raise _fail(f"{where}.{key}", "required key is missing")
    return doc[key]


def _no_unknown_keys(doc: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in known)
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", f"unknown key; {where} takes {', '.join(sorted(known))} "
                                             f"(check the spelling against docs/features.md)")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: Any, where: str, length: int) -> tuple[float, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not all(map(_is_number, value)):
        raise _fail(where, "must be a list of finite numbers")
    if len(value) != length:
        raise _fail(where, f"has {len(value)} values; the entry has {length}")
    return tuple(float(v) for v in value)


def _normalisation(value: Any, where: str, length: int) -> Normalisation | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(where, "must be an object {mean: [...], std: [...]}")
    _no_unknown_keys(value, frozenset({"mean", "std"}), where)
    mean = _numbers(_require(value, "mean", where), f"{where}.mean", length)
    std = _numbers(_require(value, "std", where), f"{where}.std", length)
    if not all(s > 0 for s in std):
        raise _fail(f"{where}.std", "every std must be > 0")
    return Normalisation(mean, std)


def _range(value: Any, where: str, length: int) -> Range | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(where, "must be an object {min: [...], max: [...]}")
    _no_unknown_keys(value, frozenset({"min", "max"}), where)
    low = _numbers(_require(value, "min", where), f"{where}.min", length)
    high = _numbers(_require(value, "max", where), f"{where}.max", length)
    inverted = [i for i, (lo, hi) in enumerate(zip(low, high, strict=True)) if lo > hi]
    if inverted:
        i = inverted[0]
        raise _fail(f"{where}.min", f"value {i} is {low[i]}, above its max {high[i]}; every min must be <= its max")
    return Range(low, high)


def _entry(doc: Any, where: str, *, output: bool) -> FeatureEntry:
    if not isinstance(doc, Mapping):
        raise _fail(where, "must be an object")
    norm_key = "denormalise" if output else "normalise"
    _no_unknown_keys(doc, _ENTRY_KEYS | {norm_key}, where)
    name = _require(doc, "name", where)
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(f"{where}.name", f"{name!r} must match [a-z][a-z0-9_]*")
    topic = _require(doc, "topic", where)
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise _fail(f"{where}.topic", f"{topic!r} must be an absolute topic name like /joint_states "
                                      f"(tokens of letters, digits and _, not starting with a digit)")
    msg_type = _require(doc, "type", where)
    if not isinstance(msg_type, str) or not _TYPE.match(msg_type):
        raise _fail(f"{where}.type", f"{msg_type!r} must look like pkg/msg/Name")
    fields = _require(doc, "fields", where)
    if not isinstance(fields, list) or not all(isinstance(f, str) and _FIELD.match(f) for f in fields):
        raise _fail(f"{where}.fields", "must be a list of dotted field paths like point.x")
    detection = output and msg_type in DETECTION_TYPES
    if detection and fields:
        raise _fail(f"{where}.fields", f"a {msg_type} output is written whole: its fields are []")
    if not fields and not detection:
        raise _fail(f"{where}.fields", "must name at least one field")
    shape = _require(doc, "shape", where)
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise _fail(f"{where}.shape", "must be a non-empty list of positive integers")
    size = math.prod(shape)
    if size > MAX_ENTRY_SIZE:
        raise _fail(f"{where}.shape", f"{shape} holds {size} values, over the limit of {MAX_ENTRY_SIZE}")
    encoding = doc.get("encoding")
    if msg_type == IMAGE_TYPE and not output:
        if fields != ["data"]:
            raise _fail(f"{where}.fields", 'an image input reads ["data"]')
        if len(shape) != 3 or shape[0] not in MODEL_ENCODINGS:
            raise _fail(f"{where}.shape", "an image input has shape [C, H, W] with C 3 (rgb8) or 1 (mono8)")
        wanted = MODEL_ENCODINGS[shape[0]]
        encoding = wanted if encoding is None else encoding
        if encoding != wanted:
            raise _fail(f"{where}.encoding", f"{encoding!r}: a model with {shape[0]} channel(s) takes {wanted} "
                                             f"images (messages in {', '.join(IMAGE_ENCODINGS)} are converted)")
    elif encoding is not None:
        raise _fail(f"{where}.encoding", f"only {IMAGE_TYPE} inputs have an encoding")
    return FeatureEntry(name=name, topic=topic, msg_type=msg_type, fields=tuple(fields), shape=tuple(shape),
                        encoding=encoding, normalisation=_normalisation(doc.get(norm_key), f"{where}.{norm_key}", size),
                        is_output=output, range=_range(doc.get("range"), f"{where}.range", size))


def _decode(doc: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(doc, str | bytes):
        try:
            doc = json.loads(doc)
        except ValueError as exc:  # also UnicodeDecodeError and a lone surrogate
            raise _fail("features", f"is not valid JSON ({exc})") from exc
    if not isinstance(doc, Mapping):
        raise _fail("features", "must be a JSON object")
    return doc


def parse_features(doc: str | bytes | Mapping[str, Any], *, task: str | None = None) -> Features:
    """Check a features description (JSON text or a decoded object) and return it.

    `task`, when given, is the task the caller asked for; the document must agree.
    """
    doc = _decode(doc)
    _no_unknown_keys(doc, _DOC_KEYS, "features")
    schema = doc.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise _fail("features.schema", f"{schema!r} is not supported; this version reads {SCHEMA!r}")
    doc_task = _require(doc, "task", "features")
    if not isinstance(doc_task, str) or doc_task not in TASKS:
        raise _fail("features.task", f"{doc_task!r} must be one of {', '.join(TASKS)}")
    if task is not None and doc_task != task:
        raise _fail("features.task", f"is {doc_task!r} but {task!r} was asked")
    sides: dict[str, tuple[FeatureEntry, ...]] = {}
    for side in ("inputs", "outputs"):
        entries = _require(doc, side, "features")
        if not isinstance(entries, list) or not entries:
            raise _fail(f"features.{side}", "must be a non-empty list")
        sides[side] = tuple(_entry(e, f"features.{side}[{i}]", output=side == "outputs")
                            for i, e in enumerate(entries))
    inputs, outputs = sides["inputs"], sides["outputs"]
    names = [e.name for e in inputs + outputs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail("features", f"names must be unique; repeated: {', '.join(duplicates)}")
    classes: tuple[str, ...] = ()
    tolerance: float | None = None
    max_detections: int | None = None
    score_threshold: float | None = None
    if doc_task == DETECTION_TASK:
        classes = _classes(_require(doc, "classes", "features"))
        max_detections, score_threshold = _detection_limits(doc)
        if len(inputs) != 1 or not inputs[0].is_image:
            raise _fail("features.inputs", f"detection takes exactly one {IMAGE_TYPE} input")
        if len(outputs) != 1 or not outputs[0].is_detection:
            raise _fail("features.outputs", f"detection has exactly one output of type "
                                            f"{' or '.join(DETECTION_TYPES)}")
        if outputs[0].shape != (len(classes) + BOX_SIZE,):
            raise _fail("features.outputs[0].shape", f"must be [{len(classes) + BOX_SIZE}]: one score per class "
                                                     f"({len(classes)}) and a box ({BOX_SIZE})")
        taken = sorted(set(DETECTION_ARRAYS + DETECTION_GRAPH_OUTPUTS))
        if inputs[0].name in taken:
            raise _fail("features.inputs[0].name", f"{inputs[0].name!r} is taken by the detection outputs "
                                                   f"({', '.join(taken)})")
        # tolerance is a regression measure: a detection document's is ignored.
    else:
        for key in ("classes", "max_detections", "score_threshold"):
            if key in doc:
                raise _fail(f"features.{key}", f"only object_detection has {key}")
        for i, entry in enumerate(outputs):
            if entry.is_detection:
                raise _fail(f"features.outputs[{i}].type", f"{entry.msg_type} is for object_detection only")
        raw_tolerance = _require(doc, "tolerance", "features")
        if not _is_number(raw_tolerance) or raw_tolerance <= 0:
            raise _fail("features.tolerance", "regression tasks need a number > 0 (the accuracy threshold, "
                                              "in output units)")
        tolerance = float(raw_tolerance)
    return Features(task=doc_task, inputs=inputs, outputs=outputs, tolerance=tolerance, classes=classes,
                    max_detections=max_detections, score_threshold=score_threshold)


def _detection_limits(doc: Mapping[str, Any]) -> tuple[int, float]:
    """(max_detections, score_threshold) of a detection document, defaults when absent."""
    count = doc.get("max_detections", DEFAULT_MAX_DETECTIONS)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_DETECTIONS_LIMIT:
        raise _fail("features.max_detections", f"{count!r} must be an integer in 1..{MAX_DETECTIONS_LIMIT} "
                                               "(rows of the graph's detections output)")
    threshold = doc.get("score_threshold", DEFAULT_SCORE_THRESHOLD)
    if not _is_number(threshold) or not 0 <= threshold < 1:
        raise _fail("features.score_threshold", f"{threshold!r} must be a number in [0, 1) (the node drops "
                                                "detections scored below it)")
    return count, float(threshold)


def _classes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) and c for c in value):
        raise _fail("features.classes", "detection needs a list of at least two class names")
    repeated = sorted({c for c in value if value.count(c) > 1})
    if repeated:
        raise _fail("features.classes", f"class names must be unique; repeated: {', '.join(repeated)}")
    return tuple(value)


def features_from_metadata(metadata: Mapping[str, str]) -> Features:
    """The features description stored in an ONNX file's metadata."""
    if META_FEATURES not in metadata:
        raise _fail(META_FEATURES, "the ONNX file has no features description in its metadata; "
                                   "export the model from a Kairo backend, which writes it")
    schema = metadata.get(META_SCHEMA, SCHEMA)
    if schema != SCHEMA:
        raise _fail(META_SCHEMA, f"{schema!r} is not supported; this version reads {SCHEMA!r}")
    features = parse_features(metadata[META_FEATURES])
    task = metadata.get(META_TASK)
    if task is not None and task != features.task:
        raise _fail(META_TASK, f"{task!r} disagrees with the description's task {features.task!r}")
    return features
