"""A detection model's rows -> a Detection2DArray, written by field paths (vision_msgs' shape).

The graph's one output is [1, max_detections, 6]: rows (x1, y1, x2, y2,
score, class_index) in model-input pixels, best first, non-maximum
suppression already done (docs/features.md). Each row scoring at least the
threshold (and above 0: unused rows score 0) becomes one Detection2D:

    header                               the image's
    results[0].hypothesis.class_id       the features' classes[class_index]
    results[0].hypothesis.score          the row's score
    bbox.center.position.x, .y; size_x, size_y
                                         the box in the ORIGINAL image's pixels
                                         (the reader's letterbox, undone)

The message classes are found by introspection from the output's type
(`detections`' element type, then `results`' ...), never imported by name,
so `kairo_interfaces/msg/Detection2DArray` and `vision_msgs/msg/Detection2DArray`
both work, and any type with these field paths.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from kairo_features.fields import Letterbox
from kairo_features.schema import DETECTION_ROW, FeatureEntry
from kairo_ros.inference.errors import WiringError

# The field paths written, by the message they are on, and the ROS type each must have.
ARRAY_FIELDS = {"header": "std_msgs/Header", "detections": "sequence<>"}
DETECTION_FIELDS = {"header": "std_msgs/Header", "results": "sequence<>", "bbox": "message", "id": "string"}
HYPOTHESIS_WITH_POSE_FIELDS = {"hypothesis": "message", "pose": "message"}
HYPOTHESIS_FIELDS = {"class_id": "string", "score": "double"}
BOX_FIELDS = {"center": "message", "size_x": "double", "size_y": "double"}
POSE_FIELDS = {"position": "message", "theta": "double"}
POINT_FIELDS = {"x": "double", "y": "double"}


class LetterboxSource(Protocol):
    """What the writer needs of the image reader: the letterbox of the image read last."""

    letterbox: Letterbox | None


def _fields_of(cls: type) -> dict[str, str]:
    return cls.get_fields_and_field_types()  # type: ignore[attr-defined,no-any-return]


def _element_class(cls: type, field: str) -> type:
    """The message class of a message field or of a sequence field's elements, by introspection."""
    type_str = _fields_of(cls)[field]
    if type_str.startswith("sequence<"):
        type_str = type_str[len("sequence<"):].split(",")[0].rstrip(">")
    from kairo_ros.inference.wiring import import_message_type  # wiring imports this module

    return import_message_type(type_str)


def _check(cls: type, wanted: dict[str, str], where: str) -> None:
    fields = _fields_of(cls)
    for name, kind in wanted.items():
        actual = fields.get(name)
        fits = actual is not None and (
            actual.startswith("sequence<") if kind == "sequence<>"
            else "/" in actual if kind == "message"
            else actual == kind)
        if not fits:
            raise WiringError(f"{where}: {cls.__name__} needs a field {name!r} of type {kind.rstrip('<>')} "
                              f"(vision_msgs' Detection2DArray shape); it has {actual or 'none'}")


class DetectionWriter:
    """Writes a detection model's rows into a Detection2DArray-shaped message (see the module)."""

    def __init__(self, entry: FeatureEntry, msg_cls: type, classes: tuple[str, ...], score_threshold: float,
                 image: LetterboxSource) -> None:
        where = f"output {entry.name!r} ({entry.msg_type})"
        self.entry = entry
        self.msg_cls = msg_cls
        self.classes = classes
        self.score_threshold = score_threshold
        self._image = image
        _check(msg_cls, ARRAY_FIELDS, where)
        self._detection_cls = _element_class(msg_cls, "detections")
        _check(self._detection_cls, DETECTION_FIELDS, where)
        self._result_cls = _element_class(self._detection_cls, "results")
        _check(self._result_cls, HYPOTHESIS_WITH_POSE_FIELDS, where)
        _check(_element_class(self._result_cls, "hypothesis"), HYPOTHESIS_FIELDS, where)
        box_cls = _element_class(self._detection_cls, "bbox")
        _check(box_cls, BOX_FIELDS, where)
        pose_cls = _element_class(box_cls, "center")
        _check(pose_cls, POSE_FIELDS, where)
        _check(_element_class(pose_cls, "position"), POINT_FIELDS, where)

    def select(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes [n, 4] x1 y1 x2 y2 in the original image's pixels, scores [n], class indexes [n]) of
        the rows that are published: score >= the threshold and > 0, a known class, a box of positive size."""
        rows = rows.reshape(-1, DETECTION_ROW)
        scores = rows[:, 4]
        classes = np.rint(rows[:, 5])
        keep = ((scores >= self.score_threshold) & (scores > 0) & (classes >= 0) & (classes < len(self.classes))
                & (rows[:, 2] > rows[:, 0]) & (rows[:, 3] > rows[:, 1]))
        kept = rows[keep]
        letterbox = self._image.letterbox
        boxes = letterbox.to_original(kept[:, :4]) if letterbox is not None else kept[:, :4].astype(np.float64)
        return boxes, kept[:, 4].astype(np.float64), classes[keep].astype(np.int64)

    def write(self, rows: np.ndarray, header: Any = None) -> Any:
        """One message for one image's rows [max_detections, 6]; `header` is the image's."""
        boxes, scores, class_indexes = self.select(rows)
        msg = self.msg_cls()
        if header is not None:
            msg.header = header
        detections = []
        names = self.classes
        for (x1, y1, x2, y2), score, index in zip(boxes.tolist(), scores.tolist(), class_indexes.tolist(),
                                                  strict=True):
            detection = self._detection_cls()
            if header is not None:
                detection.header = header
            result = self._result_cls()
            result.hypothesis.class_id = names[index]
            result.hypothesis.score = score
            detection.results = [result]
            detection.bbox.center.position.x = (x1 + x2) / 2
            detection.bbox.center.position.y = (y1 + y2) / 2
            detection.bbox.size_x = x2 - x1
            detection.bbox.size_y = y2 - y1
            detections.append(detection)
        msg.detections = detections
        return msg
