"""The one features parser: the documented defaults parse and round-trip, every bad key is named."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from kairo_features.schema import (
    META_FEATURES,
    META_SCHEMA,
    META_TASK,
    SCHEMA,
    FeaturesError,
    features_from_metadata,
    parse_features,
)
from kairo_features.tasks import IMAGE_SHAPE, NAV_BEAMS, TASKS, default_features


@pytest.mark.parametrize("task", TASKS)
def test_default_features_parse_and_round_trip(task: str) -> None:
    doc = default_features(task)
    parsed = parse_features(json.dumps(doc))
    assert parsed.task == task and parsed.trigger.name == doc["inputs"][0]["name"]
    assert parsed.to_document() == doc  # the defaults are already normalised
    assert parse_features(parsed.to_document()) == parsed
    assert parse_features(json.dumps(doc).encode()) == parsed


def test_default_features_are_fresh_copies() -> None:
    default_features("manipulation")["inputs"].clear()
    assert len(default_features("manipulation")["inputs"]) == 2


def test_manipulation_details() -> None:
    parsed = parse_features(default_features("manipulation"))
    target = parsed.inputs[1]
    assert target.fields == ("point.x", "point.y") and target.shape == (2,) and target.size == 2
    assert parsed.graph_output_names() == ("joint_commands",)
    assert parsed.tolerance == 0.05 and parsed.input_size == 5 and parsed.output_size == 3
    assert parsed.entry("target") is target and parsed.primary is parsed.trigger
    assert parsed.dataset_arrays() == {"joint_positions": (3,), "target": (2,), "joint_commands": (3,)}
    with pytest.raises(KeyError, match="no input or output named 'nope'"):
        parsed.entry("nope")


def test_navigation_and_detection_details() -> None:
    nav = parse_features(default_features("navigation"))
    assert nav.trigger.shape == (NAV_BEAMS,) and nav.outputs[0].fields == ("linear.x", "angular.z")
    det = parse_features(default_features("object_detection"))
    assert det.is_detection and det.classes == ("circle", "square", "triangle", "cross") and det.tolerance is None
    assert det.trigger.is_image and det.trigger.encoding == "rgb8" and det.trigger.shape == IMAGE_SHAPE
    assert det.outputs[0].is_detection and det.output_size == 8
    assert det.graph_output_names() == ("detections",)
    assert det.dataset_arrays() == {"image": IMAGE_SHAPE, "labels": (-1,), "boxes": (-1, 4)}
    assert det.max_detections == 20 and det.score_threshold == 0.3
    assert parse_features(det.to_document()) == det


def test_normalisation_round_trips_and_is_checked() -> None:
    doc = default_features("manipulation")
    doc["inputs"][0]["normalise"] = {"mean": [0, 0.5, 1], "std": [1, 2, 3]}
    doc["outputs"][0]["denormalise"] = {"mean": [0, 0, 0], "std": [1, 1, 1]}
    parsed = parse_features(doc)
    assert parsed.inputs[0].normalisation is not None and parsed.inputs[0].normalisation.std == (1.0, 2.0, 3.0)
    assert parse_features(parsed.to_document()) == parsed
    assert parsed.to_document()["outputs"][0]["denormalise"] == {"mean": [0.0] * 3, "std": [1.0] * 3}
    doc["inputs"][0]["normalise"] = {"mean": [0, 0], "std": [1, 1]}
    with pytest.raises(FeaturesError, match=r"^features\.inputs\[0\]\.normalise\.mean: has 2 values; the entry has 3"):
        parse_features(doc)
    doc["inputs"][0]["normalise"] = {"mean": [0, 0, 0], "std": [1, 0, 1]}
    with pytest.raises(FeaturesError, match=r"^features\.inputs\[0\]\.normalise\.std: every std must be > 0"):
        parse_features(doc)


def test_tolerance_is_normalised_and_dropped_for_detection() -> None:
    doc = default_features("navigation")
    doc["tolerance"] = 1
    assert parse_features(doc).to_document()["tolerance"] == 1.0
    det = default_features("object_detection")
    det["tolerance"] = 0.5
    assert "tolerance" not in parse_features(det).to_document()


def test_schema_key_may_be_left_out_and_task_may_be_required() -> None:
    doc = default_features("navigation")
    del doc["schema"]
    assert parse_features(doc).to_document()["schema"] == SCHEMA
    with pytest.raises(FeaturesError, match=r"^features\.task: is 'navigation' but 'manipulation' was asked"):
        parse_features(doc, task="manipulation")


Mutation = Callable[[dict[str, Any]], Any]

# Each bad document and the key its error must start with: both former
# parsers' checks (kairo_ros and kairo_backend), merged.
BAD_MANIPULATION: list[tuple[Mutation, str]] = [
    (lambda d: d.pop("task"), r"features\.task: required key is missing"),
    (lambda d: d.update(task="juggling"), r"features\.task"),
    (lambda d: d.update(task=["navigation"]), r"features\.task"),
    (lambda d: d.update(schema="kairo.features/9"), r"features\.schema"),
    (lambda d: d.update(inputs=[]), r"features\.inputs: must be a non-empty list"),
    (lambda d: d.update(outputs={}), r"features\.outputs: must be a non-empty list"),
    (lambda d: d.update(inputs=["x"]), r"features\.inputs\[0\]: must be an object"),
    (lambda d: d["inputs"][1].pop("type"), r"features\.inputs\[1\]\.type"),
    (lambda d: d["inputs"][1].update(type="geometry_msgs/PointStamped"), r"features\.inputs\[1\]\.type"),
    (lambda d: d["inputs"][1].update(type="1geometry/msg/Point"), r"features\.inputs\[1\]\.type"),
    (lambda d: d["inputs"][0].update(shape=[0]), r"features\.inputs\[0\]\.shape"),
    (lambda d: d["inputs"][0].update(shape="3"), r"features\.inputs\[0\]\.shape"),
    (lambda d: d["inputs"][0].update(shape=[]), r"features\.inputs\[0\]\.shape"),
    (lambda d: d["inputs"][0].update(shape=[True]), r"features\.inputs\[0\]\.shape"),
    (lambda d: d["inputs"][0].update(shape=[1001, 1000]), r"features\.inputs\[0\]\.shape: .* over the limit"),
    (lambda d: d["inputs"][0].update(name="Joint Positions"), r"features\.inputs\[0\]\.name"),
    (lambda d: d["inputs"][0].update(fields=[]), r"features\.inputs\[0\]\.fields"),
    (lambda d: d["inputs"][0].update(fields=["position[0]"]), r"features\.inputs\[0\]\.fields"),
    (lambda d: d["inputs"][0].update(fields=[""]), r"features\.inputs\[0\]\.fields"),
    (lambda d: d["inputs"][0].update(fields="position"), r"features\.inputs\[0\]\.fields"),
    (lambda d: d["outputs"][0].update(name="target"), r"features: names must be unique; repeated: target"),
    (lambda d: d.update(tolerance=-1), r"features\.tolerance"),
    (lambda d: d.update(tolerance=float("nan")), r"features\.tolerance"),
    (lambda d: d.update(tolerance=True), r"features\.tolerance"),
    (lambda d: d.pop("tolerance"), r"features\.tolerance: required key is missing"),
    (lambda d: d.update(classes=["a", "b"]), r"features\.classes: only object_detection"),
    (lambda d: d.update(max_detections=5), r"features\.max_detections: only object_detection"),
    (lambda d: d["inputs"][0].update(encoding="rgb8"), r"features\.inputs\[0\]\.encoding"),
    (lambda d: d["inputs"][0].update(normalize={"mean": [0], "std": [1]}),
     r"features\.inputs\[0\]\.normalize: unknown key"),
    (lambda d: d["outputs"][0].update(normalise={"mean": [0], "std": [1]}),
     r"features\.outputs\[0\]\.normalise: unknown key"),
    (lambda d: d.update(tolerence=0.1), r"features\.tolerence: unknown key"),
    (lambda d: d["outputs"][0].update(type="kairo_interfaces/msg/Detection2DArray", fields=[]),
     r"features\.outputs\[0\]\.type: .* is for object_detection only"),
]

# Topic names: the backend took anything starting with '/', kairo_ros a looser
# pattern than ROS 2 allows; both now take only fully qualified ROS 2 names.
BAD_TOPICS = ["joint_states", "/", "/joint_states/", "//joint_states", "/a//b", "/1joint", "/joint states",
              "/~/joint_states", "/{ns}/joint_states", "/joint-states", "/a/2b", ""]


@pytest.mark.parametrize(("mutate", "key"), BAD_MANIPULATION)
def test_bad_documents_name_the_key(mutate: Mutation, key: str) -> None:
    doc = default_features("manipulation")
    mutate(doc)
    with pytest.raises(FeaturesError, match=f"^{key}") as info:
        parse_features(doc)
    assert isinstance(info.value, ValueError) and info.value.code == "bad_features"


@pytest.mark.parametrize("topic", BAD_TOPICS)
def test_topics_must_be_fully_qualified_ros_names(topic: str) -> None:
    doc = default_features("manipulation")
    doc["inputs"][1]["topic"] = topic
    with pytest.raises(FeaturesError, match=r"^features\.inputs\[1\]\.topic: .* must be an absolute topic name"):
        parse_features(doc)


@pytest.mark.parametrize("topic", ["/scan", "/robot_1/front/scan", "/_hidden", "/A/B_c9"])
def test_good_topics(topic: str) -> None:
    doc = default_features("navigation")
    doc["inputs"][0]["topic"] = topic
    assert parse_features(doc).trigger.topic == topic


BAD_DETECTION: list[tuple[Mutation, str]] = [
    (lambda d: d.update(classes=["only_one"]), r"features\.classes"),
    (lambda d: d.update(classes=["a", ""]), r"features\.classes"),
    (lambda d: d.update(classes=["a", "b", "a"]), r"features\.classes: class names must be unique; repeated: a"),
    (lambda d: d.pop("classes"), r"features\.classes: required key is missing"),
    (lambda d: d.update(max_detections=0), r"features\.max_detections: 0 must be an integer in 1\.\.1000"),
    (lambda d: d.update(max_detections=2.5), r"features\.max_detections"),
    (lambda d: d.update(score_threshold=1.0), r"features\.score_threshold: 1\.0 must be a number in \[0, 1\)"),
    (lambda d: d["inputs"][0].update(shape=[4, 32, 32]), r"features\.inputs\[0\]\.shape"),
    (lambda d: d["inputs"][0].update(shape=[3, 32]), r"features\.inputs\[0\]\.shape"),
    (lambda d: d["inputs"][0].update(encoding="yuv422"), r"features\.inputs\[0\]\.encoding"),
    (lambda d: d["inputs"][0].update(encoding="bgr8"), r"features\.inputs\[0\]\.encoding"),
    (lambda d: d["inputs"][0].update(encoding="mono8"), r"features\.inputs\[0\]\.encoding: 'mono8': a model with 3"),
    (lambda d: d["inputs"][0].update(fields=["data", "step"]), r"features\.inputs\[0\]\.fields"),
    (lambda d: d["inputs"][0].update(type="sensor_msgs/msg/LaserScan", fields=["ranges"], encoding=None),
     r"features\.inputs: detection takes exactly one sensor_msgs/msg/Image input"),
    (lambda d: d["inputs"].append(dict(d["inputs"][0], name="image2")), r"features\.inputs: detection takes"),
    (lambda d: d["outputs"][0].update(type="std_msgs/msg/Float64MultiArray", fields=["data"]), r"features\.outputs"),
    (lambda d: d["outputs"][0].update(fields=["detections"]), r"features\.outputs\[0\]\.fields"),
    (lambda d: d["outputs"][0].update(shape=[6]), r"features\.outputs\[0\]\.shape: must be \[8\]"),
    (lambda d: d["inputs"][0].update(name="boxes"), r"features\.inputs\[0\]\.name: 'boxes' is taken"),
]


@pytest.mark.parametrize(("mutate", "key"), BAD_DETECTION)
def test_detection_rules(mutate: Mutation, key: str) -> None:
    doc = default_features("object_detection")
    mutate(doc)
    with pytest.raises(FeaturesError, match=f"^{key}"):
        parse_features(doc)


def test_mono_image_input() -> None:
    doc = default_features("object_detection")
    doc["inputs"][0].update(shape=[1, 24, 40])
    del doc["inputs"][0]["encoding"]
    entry = parse_features(doc).trigger
    assert entry.encoding == "mono8" and entry.shape == (1, 24, 40)


def test_image_as_regression_input_gets_the_image_rules() -> None:
    doc = default_features("navigation")
    doc["inputs"][0] = {"name": "camera", "topic": "/camera/image_raw", "type": "sensor_msgs/msg/Image",
                        "fields": ["data"], "shape": [3, 8, 8]}
    assert parse_features(doc).trigger.encoding == "rgb8"
    doc["inputs"][0]["shape"] = [192]
    with pytest.raises(FeaturesError, match=r"^features\.inputs\[0\]\.shape: an image input has shape \[C, H, W\]"):
        parse_features(doc)


@pytest.mark.parametrize("text", ["{inputs: nope", b"\xff\xfe", "[1, 2]", '"features"', "null"])
def test_not_a_json_object(text: str | bytes) -> None:
    with pytest.raises(FeaturesError, match="^features: (is not valid JSON|must be a JSON object)"):
        parse_features(text)


def test_from_metadata() -> None:
    doc = default_features("navigation")
    meta = {META_SCHEMA: SCHEMA, "kairo.model_id": "mdl_a", "kairo.model_version": "v3",
            META_TASK: "navigation", META_FEATURES: json.dumps(doc)}
    assert features_from_metadata(meta).primary.name == "scan"
    with pytest.raises(FeaturesError, match=r"^kairo\.features: the ONNX file has no features description"):
        features_from_metadata({k: v for k, v in meta.items() if k != META_FEATURES})
    with pytest.raises(FeaturesError, match=r"^kairo\.task"):
        features_from_metadata({**meta, META_TASK: "manipulation"})
    with pytest.raises(FeaturesError, match=r"^kairo\.schema: 'kairo\.features/2' is not supported"):
        features_from_metadata({**meta, META_SCHEMA: "kairo.features/2"})
    with pytest.raises(FeaturesError, match=r"^features: is not valid JSON"):
        features_from_metadata({**meta, META_FEATURES: "{"})


def test_unknown_task_default() -> None:
    with pytest.raises(FeaturesError, match="task: unknown task 'juggling'; expected one of manipulation"):
        default_features("juggling")


def test_the_schema_imports_no_numpy() -> None:
    """ros2 launch reads the parameter tables, which import the schema: it must stay light."""
    import subprocess
    import sys

    code = ("import sys, kairo_features, kairo_features.schema, kairo_features.tasks; "
            "print(sorted(m for m in ('numpy', 'rclpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_range_round_trips_on_inputs_and_outputs() -> None:
    doc = default_features("manipulation")
    doc["inputs"][0]["range"] = {"min": [-1, -2, -3], "max": [1, 2.5, -3]}
    doc["outputs"][0]["range"] = {"min": [0, 0, 0], "max": [0.5, 0.5, 0.5]}
    parsed = parse_features(doc)
    joint = parsed.inputs[0].range
    assert joint is not None and joint.low == (-1.0, -2.0, -3.0) and joint.high == (1.0, 2.5, -3.0)
    assert parsed.inputs[1].range is None
    assert parsed.outputs[0].range is not None and parsed.outputs[0].range.high == (0.5, 0.5, 0.5)
    assert parse_features(parsed.to_document()) == parsed
    assert parsed.to_document()["inputs"][0]["range"] == {"min": [-1.0, -2.0, -3.0], "max": [1.0, 2.5, -3.0]}
    assert "range" not in parsed.to_document()["inputs"][1]
    # The envelope is not wiring: a retrained model with another range swaps in.
    assert parsed.wiring_key() == parse_features(default_features("manipulation")).wiring_key()


@pytest.mark.parametrize(("bad_range", "match"), [
    ({"min": [0, 0], "max": [1, 1, 1]}, r"range\.min: has 2 values; the entry has 3"),
    ({"min": [0, 0, 0], "max": [1, 1]}, r"range\.max: has 2 values; the entry has 3"),
    ({"min": [0, float("nan"), 0], "max": [1, 1, 1]}, r"range\.min: must be a list of finite numbers"),
    ({"min": [0, 0, 0], "max": [1, float("inf"), 1]}, r"range\.max: must be a list of finite numbers"),
    ({"min": [0, 2, 0], "max": [1, 1, 1]}, r"range\.min: value 1 is 2\.0, above its max 1\.0"),
    ({"min": [0, 0, 0]}, r"range\.max: required key is missing"),
    ({"min": [0, 0, 0], "max": [1, 1, 1], "mean": [0, 0, 0]}, r"range\.mean: unknown key"),
    ([0, 1], r"range: must be an object \{min: \[\.\.\.\], max: \[\.\.\.\]\}"),
    ({"min": "abc", "max": [1, 1, 1]}, r"range\.min: must be a list of finite numbers"),
])
def test_bad_range_is_named(bad_range: Any, match: str) -> None:
    doc = default_features("manipulation")
    doc["outputs"][0]["range"] = bad_range
    with pytest.raises(FeaturesError, match=r"^features\.outputs\[0\]\." + match):
        parse_features(doc)


def test_vision_msgs_detection_type_is_a_detection_output() -> None:
    doc = default_features("object_detection")
    doc["outputs"][0]["type"] = "vision_msgs/msg/Detection2DArray"
    parsed = parse_features(doc)
    assert parsed.outputs[0].is_detection and parsed.outputs[0].msg_type == "vision_msgs/msg/Detection2DArray"
    assert parse_features(parsed.to_document()) == parsed
    nav = default_features("navigation")
    nav["outputs"][0].update(type="vision_msgs/msg/Detection2DArray", fields=[])
    with pytest.raises(FeaturesError, match=r"^features\.outputs\[0\]\.type: vision_msgs/msg/Detection2DArray "
                                            r"is for object_detection only"):
        parse_features(nav)
    doc["outputs"][0]["fields"] = ["detections"]
    with pytest.raises(FeaturesError, match=r"^features\.outputs\[0\]\.fields: a vision_msgs/msg/Detection2DArray "
                                            r"output is written whole"):
        parse_features(doc)
