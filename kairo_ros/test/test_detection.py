"""Object detection as a camera user meets it: any frame size in, vision_msgs-shaped detections out.

- The message shape: kairo_interfaces' Detection2DArray has exactly the field paths of
  vision_msgs/Detection2DArray, compared recursively against vision_msgs' public definitions
  (written out below) by rosidl introspection of our classes.
- A kairo_inference process over real DDS, serving a detector built with onnx.helper that
  really finds solid-coloured boxes (onnx_models.colour_detector), answers 640x480 rgb8 and
  bgr8 frames (and a 1280x720 one, letterboxed with bands) with every drawn box: its class,
  IoU >= 0.5 in the frame's own pixels, the frame's header.
"""

from __future__ import annotations

import array
import pathlib
from typing import Any

import numpy as np
import pytest
from inference_helpers import RELIABLE, Collector, publish_until, start_inference, wait_matched
from onnx_models import colour_detector, colour_features, draw_boxes
from sensor_msgs.msg import Image

from kairo_interfaces.msg import Detection2DArray
from kairo_ros.inference.wiring import import_message_type

# vision_msgs 4.x (ROS 2 Humble to Rolling), the fields of each message as its public definition
# lists them (docs.ros.org/en/jazzy/p/vision_msgs, "Message Definitions"), comments left out.
VISION_MSGS = {
    "Detection2DArray": """
        std_msgs/Header header
        Detection2D[] detections""",
    "Detection2D": """
        std_msgs/Header header
        ObjectHypothesisWithPose[] results
        BoundingBox2D bbox
        string id""",
    "ObjectHypothesisWithPose": """
        ObjectHypothesis hypothesis
        geometry_msgs/PoseWithCovariance pose""",
    "ObjectHypothesis": """
        string class_id
        float64 score""",
    "BoundingBox2D": """
        Pose2D center
        float64 size_x
        float64 size_y""",
    "Pose2D": """
        Point2D position
        float64 theta""",
    "Point2D": """
        float64 x
        float64 y""",
}
# .msg primitive names as rosidl introspection spells them
_PRIMITIVES = {"float64": "double", "float32": "float", "string": "string"}


def reference_paths(name: str = "Detection2DArray", prefix: str = "") -> dict[str, str]:
    """Every field path of a vision_msgs message -> its type; other packages' types are leaves."""
    paths: dict[str, str] = {}
    for line in VISION_MSGS[name].strip().splitlines():
        type_name, field = line.split()
        sequence = type_name.endswith("[]")
        base = type_name.removesuffix("[]")
        path = f"{prefix}{field}{'[]' if sequence else ''}"
        if base in VISION_MSGS:
            paths[path] = "message"
            paths.update(reference_paths(base, path + "."))
        else:
            paths[path] = _PRIMITIVES.get(base, base)
    return paths


def introspected_paths(cls: type, prefix: str = "") -> dict[str, str]:
    """The same, read from a generated message class by rosidl introspection."""
    paths: dict[str, str] = {}
    package = cls.__module__.split(".")[0]
    for field, type_str in cls.get_fields_and_field_types().items():  # type: ignore[attr-defined]
        sequence = type_str.startswith("sequence<")
        base = type_str[len("sequence<"):-1] if sequence else type_str
        path = f"{prefix}{field}{'[]' if sequence else ''}"
        if base.startswith(f"{package}/"):
            paths[path] = "message"
            paths.update(introspected_paths(import_message_type(base), path + "."))
        else:
            paths[path] = base
    return paths


def test_detection_messages_have_vision_msgs_field_paths() -> None:
    reference = reference_paths()
    assert "detections[].results[].hypothesis.class_id" in reference  # the reference is read as meant
    assert reference["detections[].bbox.center.position.x"] == "double"
    assert introspected_paths(Detection2DArray) == reference


# --- served over DDS --------------------------------------------------------------------------------
def frame_message(pixels_rgb: np.ndarray, encoding: str, stamp: int) -> Image:
    """An Image of RGB pixels sent as `encoding` (rgb8 or bgr8), rows padded as some drivers do."""
    pixels = pixels_rgb if encoding == "rgb8" else pixels_rgb[:, :, ::-1]
    height, width, _ = pixels.shape
    step = width * 3 + 32
    rows = np.zeros((height, step), np.uint8)
    rows[:, :width * 3] = pixels.reshape(height, -1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=step,
                data=array.array("B", rows.tobytes()))
    msg.header.stamp.sec = stamp
    msg.header.frame_id = "camera_optical"
    return msg


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def corners(detection: Any) -> tuple[float, float, float, float]:
    centre, box = detection.bbox.center.position, detection.bbox
    return (centre.x - box.size_x / 2, centre.y - box.size_y / 2, centre.x + box.size_x / 2, centre.y + box.size_y / 2)


# (encoding, height, width, drawn boxes (colour class, x1, y1, x2, y2) in the frame's pixels)
FRAMES: list[tuple[str, int, int, list[tuple[str, tuple[int, int, int, int]]]]] = [
    ("rgb8", 480, 640, [("red", (40, 60, 200, 220)), ("blue", (380, 100, 600, 300)), ("green", (250, 330, 330, 470))]),
    ("bgr8", 480, 640, [("red", (500, 20, 630, 150)), ("blue", (20, 300, 180, 460))]),
    ("bgr8", 480, 640, [("green", (100, 100, 540, 380))]),
    ("rgb8", 480, 640, []),  # nothing to find: an empty array, still with the frame's header
    ("bgr8", 720, 1280, [("blue", (100, 200, 420, 560)), ("green", (900, 0, 1200, 720))]),  # letterboxed
]


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return colour_detector(colour_features(), tmp_path_factory.mktemp("detector") / "colours.onnx")


def test_camera_frames_come_back_as_detections_in_their_own_pixels(  # type: ignore[no-untyped-def]
        processes, ros, detector: pathlib.Path) -> None:
    node = start_inference(processes, ros, f"model_path:={detector}", "input_qos:=reliable")
    detections = Collector(ros, Detection2DArray, "/detections")
    camera = ros.node.create_publisher(Image, "/camera/image_raw", RELIABLE)
    wait_matched(camera)
    # The camera's match says nothing of /detections reaching our reader (volatile): an empty frame
    # (stamp 1, still answered with an empty array) until one answer arrives; assertions read stamps >= 100.
    warm_up = frame_message(draw_boxes(480, 640, []), "rgb8", 1)
    publish_until(lambda: camera.publish(warm_up), lambda: bool(detections.snapshot()), 30, "a warm-up answer")
    sent = []
    for index, (encoding, height, width, boxes) in enumerate(FRAMES):
        stamp = 100 + index
        camera.publish(frame_message(draw_boxes(height, width, boxes), encoding, stamp))
        sent.append((stamp, boxes))
    for stamp, boxes in sent:
        answer = detections.wait_for(lambda m, s=stamp: m.header.stamp.sec == s, 30, f"the detections of frame {stamp}")
        assert answer.header.frame_id == "camera_optical"
        found = {d.results[0].hypothesis.class_id: d for d in answer.detections}
        assert sorted(found) == sorted(colour for colour, _ in boxes), f"frame {stamp}"
        for colour, drawn in boxes:
            detection = found[colour]
            assert iou(corners(detection), drawn) >= 0.5, (stamp, colour, corners(detection), drawn)
            assert detection.header.stamp.sec == stamp and detection.header.frame_id == "camera_optical"
            assert detection.results[0].hypothesis.score == pytest.approx(0.9)
            assert len(detection.results) == 1 and detection.id == ""
    assert node.alive


# --- a detector trained by the real backend ----------------------------------------------------------
def test_a_detector_trained_by_the_backend_finds_the_demo_objects_in_640x480_frames(  # type: ignore[no-untyped-def]
        processes, ros, backend, tmp_path: pathlib.Path) -> None:
    """The demo renderer's images (objects with known boxes) scaled 4x to 640x480, sent as rgb8 and bgr8:
    the node publishes exactly the reference onnxruntime's rows for the letterboxed frame, mapped into
    the frame's pixels, and those find the drawn objects."""
    from inference_helpers import download_model, predictions, reference_session

    from conftest import train_model
    from kairo_backend.training.demo_detection import render_detection
    from kairo_features.fields import ImageReader
    from kairo_features.schema import features_from_metadata

    model = train_model(backend, "object_detection", epochs=TRAINED_EPOCHS)
    path = download_model(backend, model.model_id, model.version, tmp_path / "detector.onnx")
    reference = reference_session(path)
    features = features_from_metadata(reference.get_modelmeta().custom_metadata_map)
    node = start_inference(processes, ros, f"model_path:={path}", "input_qos:=reliable")
    detections = Collector(ros, Detection2DArray, "/detections")
    answers = predictions(ros)
    camera = ros.node.create_publisher(Image, features.inputs[0].topic, RELIABLE)
    wait_matched(camera)
    # As above: an empty frame (stamp 1) until both outputs reach us; the frames below are read by stamp.
    warm_up = frame_message(np.zeros((480, 640, 3), np.uint8), "rgb8", 1)
    publish_until(lambda: camera.publish(warm_up), lambda: bool(detections.snapshot() and answers.snapshot()),
                  30, "warm-up answers on /detections and ~/prediction")
    demo = render_detection(TRAINED_FRAMES, np.random.default_rng(2026))
    reader = ImageReader(features.inputs[0].shape)
    hits = drawn = 0
    for index in range(TRAINED_FRAMES):
        frame = demo["image"][index].transpose(1, 2, 0).repeat(4, axis=0).repeat(4, axis=1)  # 160x120 -> 640x480
        msg = frame_message(frame, "rgb8" if index % 2 else "bgr8", 200 + index)
        camera.publish(msg)
        chw, letterbox = reader.read_letterboxed(frame_message(frame, "rgb8", 0))
        rows = reference.run(None, {features.inputs[0].name: chw[None]})[0][0]
        kept = rows[(rows[:, 4] >= features.score_threshold) & (rows[:, 4] > 0)]
        expected = letterbox.to_original(kept[:, :4])
        prediction = answers.wait_for(lambda m, s=200 + index: m.header.stamp.sec == s, 30, f"frame {200 + index}")
        np.testing.assert_allclose(np.array(prediction.data), rows.reshape(-1), rtol=1e-4, atol=1e-4)
        answer = detections.wait_for(lambda m, s=200 + index: m.header.stamp.sec == s, 30, f"frame {200 + index}")
        assert len(answer.detections) == len(kept)
        for detection, row, box in zip(answer.detections, kept, expected, strict=True):
            assert detection.results[0].hypothesis.class_id == features.classes[int(row[5])]
            assert detection.results[0].hypothesis.score == pytest.approx(float(row[4]), abs=1e-5)
            assert corners(detection) == pytest.approx(tuple(box), abs=1e-3)
        for label, (cx, cy, w, h) in zip(demo["labels"][index], demo["boxes"][index], strict=True):
            if label < 0:
                continue
            drawn += 1
            truth = (4 * (cx - w / 2), 4 * (cy - h / 2), 4 * (cx + w / 2), 4 * (cy + h / 2))
            hits += any(d.results[0].hypothesis.class_id == features.classes[label] and iou(corners(d), truth) >= 0.5
                        for d in answer.detections)
    assert drawn > 0 and hits / drawn >= TRAINED_MIN_RECALL, f"found {hits} of {drawn} drawn objects"
    assert node.alive


# The short run the test trains, the frames it sends, and the share of drawn objects it must find there.
TRAINED_EPOCHS = 8
TRAINED_FRAMES = 8
TRAINED_MIN_RECALL = 0.5
