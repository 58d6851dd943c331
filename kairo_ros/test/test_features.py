"""The features description parser: the documented defaults parse, bad keys are named."""

import json

import pytest
from onnx_models import DEFAULT_FEATURES, features, metadata_for

from kairo_ros.api import KairoError
from kairo_ros.features import (
    META_FEATURES,
    FeaturesError,
    features_from_metadata,
    parse_features,
)


@pytest.mark.parametrize("task", sorted(DEFAULT_FEATURES))
def test_default_wiring_parses(task: str) -> None:
    parsed = parse_features(json.dumps(DEFAULT_FEATURES[task]))
    assert parsed.task == task
    assert parsed.primary.name == DEFAULT_FEATURES[task]["inputs"][0]["name"]
    assert [e.topic for e in parsed.outputs] == [e["topic"] for e in DEFAULT_FEATURES[task]["outputs"]]


def test_manipulation_details() -> None:
    parsed = parse_features(features("manipulation"))
    target = parsed.inputs[1]
    assert target.fields == ("point.x", "point.y") and target.shape == (2,) and target.size == 2
    assert parsed.graph_output_names() == ("joint_commands",)
    assert parsed.tolerance == 0.05


def test_detection_details() -> None:
    parsed = parse_features(features("object_detection"))
    assert parsed.is_detection and parsed.classes == ("circle", "square", "triangle")
    assert parsed.primary.is_image and parsed.primary.encoding == "rgb8" and parsed.primary.shape == (3, 32, 32)
    assert parsed.graph_output_names() == ("scores", "boxes")


def test_normalisation_is_read_and_checked() -> None:
    doc = features("manipulation")
    doc["inputs"][0]["normalise"] = {"mean": [0, 0.5, 1], "std": [1, 2, 3]}
    assert parse_features(doc).inputs[0].normalisation.std == (1.0, 2.0, 3.0)  # type: ignore[union-attr]
    doc["inputs"][0]["normalise"] = {"mean": [0, 0], "std": [1, 1]}
    with pytest.raises(FeaturesError, match=r"^features\.inputs\[0\]\.normalise\.mean: has 2 values; the entry has 3"):
        parse_features(doc)


@pytest.mark.parametrize(("mutate", "key"), [
    (lambda d: d.pop("task"), r"features\.task"),
    (lambda d: d.update(task="juggling"), r"features\.task"),
    (lambda d: d.update(schema="kairo.features/9"), r"features\.schema"),
    (lambda d: d.update(inputs=[]), r"features\.inputs"),
    (lambda d: d["inputs"][1].pop("type"), r"features\.inputs\[1\]\.type"),
    (lambda d: d["inputs"][1].update(type="geometry_msgs/PointStamped"), r"features\.inputs\[1\]\.type"),
    (lambda d: d["inputs"][0].update(shape=[0]), r"features\.inputs\[0\]\.shape"),
    (lambda d: d["inputs"][0].update(shape="3"), r"features\.inputs\[0\]\.shape"),
    (lambda d: d["inputs"][0].update(name="Joint Positions"), r"features\.inputs\[0\]\.name"),
    (lambda d: d["inputs"][0].update(topic="joint_states"), r"features\.inputs\[0\]\.topic"),
    (lambda d: d["inputs"][0].update(fields=[]), r"features\.inputs\[0\]\.fields"),
    (lambda d: d["inputs"][0].update(fields=["position[0]"]), r"features\.inputs\[0\]\.fields"),
    (lambda d: d["outputs"][0].update(name="target"), r"features: names must be unique; repeated: target"),
    (lambda d: d.update(tolerance=-1), r"features\.tolerance"),
    (lambda d: d["inputs"][0].update(encoding="rgb8"), r"features\.inputs\[0\]\.encoding"),
])
def test_bad_documents_name_the_key(mutate, key: str) -> None:  # type: ignore[no-untyped-def]
    doc = features("manipulation")
    mutate(doc)
    with pytest.raises(FeaturesError, match=f"^{key}") as info:
        parse_features(doc)
    assert isinstance(info.value, KairoError) and info.value.code == "bad_features"


def test_detection_rules() -> None:
    doc = features("object_detection")
    doc["classes"] = ["only_one"]
    with pytest.raises(FeaturesError, match=r"^features\.classes"):
        parse_features(doc)
    doc = features("object_detection")
    doc["inputs"][0]["shape"] = [4, 32, 32]
    with pytest.raises(FeaturesError, match=r"^features\.inputs\[0\]\.shape"):
        parse_features(doc)
    doc = features("object_detection")
    doc["inputs"][0]["encoding"] = "yuv422"
    with pytest.raises(FeaturesError, match=r"^features\.inputs\[0\]\.encoding"):
        parse_features(doc)


def test_not_json() -> None:
    with pytest.raises(FeaturesError, match="^features: is not valid JSON"):
        parse_features("{inputs: nope")


def test_from_metadata() -> None:
    doc = features("navigation")
    meta = metadata_for(doc, "mdl_a", "v3")
    assert features_from_metadata(meta).primary.name == "scan"
    with pytest.raises(FeaturesError, match=r"^kairo\.features: the ONNX file has no features description"):
        features_from_metadata({k: v for k, v in meta.items() if k != META_FEATURES})
    with pytest.raises(FeaturesError, match=r"^kairo\.task"):
        features_from_metadata({**meta, "kairo.task": "manipulation"})
