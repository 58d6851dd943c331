"""Alignment of messages into samples, on hand-built sequences and against a direct reading of the rules."""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kairo_features.alignment import Aligner, Sample
from kairo_features.fields import entry_reader
from kairo_features.schema import Features, parse_features
from kairo_features.tasks import IMAGE_SHAPE, default_features

MANIPULATION = parse_features(default_features("manipulation"))  # joint_positions (trigger), target -> joint_commands
J, T, C = "joint_positions", "target", "joint_commands"


def v(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def run(features: Features, messages: list[tuple[str, int, Any]], **kwargs: Any) -> tuple[list[Sample], Aligner]:
    aligner = Aligner(features, **kwargs)
    samples: list[Sample] = []
    for name, stamp, values in messages:
        if values is None:
            samples += aligner.add_unreadable(name, stamp)
        else:
            samples += aligner.add(name, stamp, values)
    samples += aligner.finish()
    return samples, aligner


def as_lists(samples: list[Sample]) -> list[tuple[int, dict[str, list[float]]]]:
    return [(s.stamp_ns, {k: a.tolist() for k, a in s.values.items()}) for s in samples]


def test_one_sample_per_trigger() -> None:
    samples, aligner = run(MANIPULATION, [
        (T, 0, v(1, 2)),
        (J, 10, v(0, 0, 1)), (C, 12, v(5, 5, 5)),
        (J, 20, v(0, 0, 2)), (C, 25, v(6, 6, 6)),
    ])
    assert as_lists(samples) == [
        (10, {J: [0, 0, 1], T: [1, 2], C: [5, 5, 5]}),
        (20, {J: [0, 0, 2], T: [1, 2], C: [6, 6, 6]}),
    ]
    assert list(samples[0].values) == [J, T, C]  # the features' order
    assert aligner.samples == 2 and not aligner.dropped and not aligner.late


def test_other_inputs_take_their_latest_value_at_or_before_the_trigger() -> None:
    samples, _ = run(MANIPULATION, [
        (T, 5, v(1, 1)), (T, 10, v(2, 2)), (J, 10, v(0, 0, 0)), (T, 11, v(3, 3)), (C, 12, v(1, 1, 1)),
    ])
    assert [s.values[T].tolist() for s in samples] == [[2, 2]]


def test_outputs_take_the_first_message_from_the_trigger_to_the_next() -> None:
    samples, aligner = run(MANIPULATION, [
        (T, 0, v(0, 0)),
        (C, 5, v(9, 9, 9)),                      # before any trigger: unused
        (J, 10, v(1, 1, 1)), (C, 10, v(1, 0, 0)), (C, 11, v(2, 0, 0)),   # same stamp as its trigger: taken
        (J, 20, v(2, 2, 2)), (C, 30, v(3, 0, 0)),  # the next trigger's stamp belongs to the next sample
        (J, 30, v(3, 3, 3)),
    ])
    assert [(s.stamp_ns, s.values[C].tolist()) for s in samples] == [(10, [1, 0, 0]), (30, [3, 0, 0])]
    assert aligner.dropped == Counter({"missing_output:joint_commands": 1})  # the trigger at 20 got none


def test_samples_come_out_as_soon_as_they_are_complete() -> None:
    aligner = Aligner(MANIPULATION, max_delay_ns=0)
    assert aligner.add(T, 0, v(1, 2)) == []
    assert aligner.add(J, 10, v(0, 0, 1)) == []
    assert aligner.add(C, 12, v(5, 5, 5)) == []   # waits: another message could still have stamp 12
    [sample] = aligner.add(J, 13, v(0, 0, 2))
    assert sample.stamp_ns == 10 and sample.values[C].tolist() == [5, 5, 5]
    assert aligner.finish() == [] and aligner.dropped == Counter({"missing_output:joint_commands": 1})
    with pytest.raises(RuntimeError, match="has finished"):
        aligner.add(J, 20, v(0, 0, 0))


@pytest.mark.parametrize(("messages", "reason"), [
    ([(J, 10, v(0, 0, 0)), (C, 11, v(0, 0, 0))], "missing_input:target"),
    ([(T, 0, v(0, 0)), (J, 10, v(0, 0, 0)), (J, 20, v(0, 0, 0)), (C, 21, v(0, 0, 0))],
     "missing_output:joint_commands"),
    ([(T, 0, v(0, np.nan)), (J, 10, v(0, 0, 0)), (C, 11, v(0, 0, 0))], "non_finite:target"),
    ([(T, 0, v(0, 0)), (J, 10, v(0, 0, 0)), (C, 11, v(0, np.inf, 0))], "non_finite:joint_commands"),
    ([(T, 0, None), (J, 10, v(0, 0, 0)), (C, 11, v(0, 0, 0))], "unreadable:target"),
    ([(T, 0, v(0, 0)), (J, 10, None), (C, 11, v(0, 0, 0))], "unreadable:joint_positions"),
    ([(T, 0, v(0, 0)), (J, 10, v(0, 0, 0)), (C, 11, None), (C, 12, v(0, 0, 0))], "unreadable:joint_commands"),
    ([(T, 0, v(0, 0)), (J, 10, v(0, 0, 0)), (J, 10, v(1, 1, 1)), (C, 11, v(0, 0, 0))], "duplicate_trigger"),
])
def test_incomplete_samples_are_dropped_and_counted(messages: list[tuple[str, int, Any]], reason: str) -> None:
    samples, aligner = run(MANIPULATION, messages)
    assert aligner.dropped == Counter({reason: 1})
    assert aligner.samples == len(samples) == (1 if reason in ("missing_output:joint_commands", "duplicate_trigger")
                                               else 0)


def test_a_later_good_message_replaces_an_unreadable_input() -> None:
    samples, aligner = run(MANIPULATION, [
        (T, 0, None), (J, 10, v(0, 0, 0)), (C, 11, v(0, 0, 0)),
        (T, 15, v(4, 4)), (J, 20, v(0, 0, 0)), (C, 21, v(0, 0, 0)),
    ])
    assert [s.stamp_ns for s in samples] == [20] and aligner.dropped == Counter({"unreadable:target": 1})


def test_messages_out_of_order_within_the_delay_are_aligned_by_stamp() -> None:
    in_order = [(T, 0, v(1, 1)), (J, 10, v(1, 0, 0)), (C, 12, v(1, 1, 1)), (J, 20, v(2, 0, 0)), (C, 20, v(2, 2, 2))]
    shuffled = [in_order[i] for i in (1, 0, 3, 2, 4)]
    expected, _ = run(MANIPULATION, in_order)
    samples, aligner = run(MANIPULATION, shuffled, max_delay_ns=15)
    assert as_lists(samples) == as_lists(expected) and len(samples) == 2 and not aligner.late


def test_messages_later_than_the_delay_are_counted_not_used() -> None:
    samples, aligner = run(MANIPULATION, [
        (T, 0, v(1, 1)), (J, 10, v(1, 0, 0)), (J, 40, v(2, 0, 0)), (T, 50, v(2, 2)),
        (C, 12, v(1, 1, 1)),   # after its window closed (the newest stamp was 50, the delay 5)
        (C, 41, v(2, 2, 2)),
    ], max_delay_ns=5)
    assert [s.stamp_ns for s in samples] == [40]
    assert aligner.late == Counter({C: 1}) and aligner.dropped == Counter({"missing_output:joint_commands": 1})


def test_names_and_topics() -> None:
    aligner = Aligner(MANIPULATION, topics={T: "/robot1/target"})
    assert aligner.entry_name("/joint_states") == J and aligner.entry_name("/robot1/target") == T
    assert aligner.entry_name(C) == C
    with pytest.raises(ValueError, match="'/target_point' is neither an input or output name nor one of their topics"):
        aligner.entry_name("/target_point")
    with pytest.raises(ValueError, match=r"^target: got 3 values; the entry takes 2 \(shape \[2\]\)"):
        aligner.add(T, 0, v(1, 2, 3))
    with pytest.raises(ValueError, match="max_delay_ns"):
        Aligner(MANIPULATION, max_delay_ns=-1)


def test_a_topic_feeding_two_entries_needs_entry_names() -> None:
    doc = default_features("manipulation")
    doc["inputs"].append({"name": "joint_velocities", "topic": "/joint_states", "type": "sensor_msgs/msg/JointState",
                          "fields": ["velocity"], "shape": [3]})
    aligner = Aligner(parse_features(doc))
    with pytest.raises(ValueError, match="topic /joint_states feeds joint_positions, joint_velocities: add their "
                                         "values by entry name"):
        aligner.add("/joint_states", 0, v(0, 0, 0))
    samples = [*aligner.add("joint_velocities", 0, v(1, 1, 1)), *aligner.add(T, 0, v(0, 0)),
               *aligner.add(J, 0, v(0, 0, 0)), *aligner.add(C, 1, v(1, 2, 3)), *aligner.finish()]
    assert [list(s.values) for s in samples] == [[J, T, "joint_velocities", C]]


def test_every_output_is_needed() -> None:
    doc = default_features("navigation")
    doc["outputs"].append({"name": "stop", "topic": "/stop", "type": "std_msgs/msg/Bool", "fields": ["data"],
                           "shape": [1]})
    samples, aligner = run(parse_features(doc), [
        ("scan", 0, np.zeros(64)), ("cmd_vel", 1, v(1, 2)), ("stop", 2, v(1)),
        ("scan", 10, np.ones(64)), ("cmd_vel", 11, v(3, 4)),
        ("scan", 20, np.ones(64)), ("stop", 21, v(0)),
    ])
    assert as_lists(samples) == [(0, {"scan": [0.0] * 64, "cmd_vel": [1, 2], "stop": [1]})]
    assert aligner.dropped == Counter({"missing_output:stop": 1, "missing_output:cmd_vel": 1})


def test_detection_outputs_become_labels_and_boxes() -> None:
    features = parse_features(default_features("object_detection"))
    image = np.full(IMAGE_SHAPE, 7, np.float32)
    samples, _ = run(features, [("image", 0, image), ("detections", 0, v(2, 16, 15, 4, 5))])
    [sample] = samples
    assert list(sample.values) == ["image", "labels", "boxes"]
    assert sample.values["labels"].dtype == np.int64 and sample.values["labels"].tolist() == [2]
    assert sample.values["boxes"].tolist() == [[16, 15, 4, 5]] and np.shares_memory(sample.values["image"], image)
    # every detection of a message, and none
    samples, _ = run(features, [("image", 0, image), ("detections", 0, v(2, 16, 15, 4, 5, 0, 1, 2, 3, 4)),
                                ("image", 10, image), ("detections", 10, np.zeros((0, 5), np.float32))])
    assert [s.values["labels"].tolist() for s in samples] == [[2, 0], []]
    assert samples[0].values["boxes"].tolist() == [[16, 15, 4, 5], [1, 2, 3, 4]]
    assert samples[1].values["boxes"].shape == (0, 4)
    aligner = Aligner(features)
    with pytest.raises(ValueError, match=r"detections: a detection output takes rows of \[label, center_x"):
        aligner.add("detections", 0, v(1, 2, 3))


def test_memory_is_bounded_by_the_delay_not_the_stream() -> None:
    aligner = Aligner(MANIPULATION, max_delay_ns=50)
    aligner.add(T, 0, v(0, 0))
    emitted = 0
    for i in range(1, 5001):
        emitted += len(aligner.add(J, i * 10, v(i, 0, 0)))
        emitted += len(aligner.add(C, i * 10 + 1, v(i, i, i)))
        assert len(aligner._heap) <= 12  # messages within 50 ns of the newest
    emitted += len(aligner.finish())
    assert emitted == aligner.samples == 5000 and not aligner.dropped


def reference(features: Features, messages: list[tuple[str, int, Any]]) -> tuple[list[Sample], Counter[str]]:
    """The rules read directly, on the whole stream at once (stable sorts keep arrival order for equal stamps)."""
    def of(name: str) -> list[tuple[int, Any]]:
        return sorted(((s, x) for n, s, x in messages if n == name), key=lambda m: m[0])
    triggers = of(features.trigger.name)
    samples: list[Sample] = []
    dropped: Counter[str] = Counter()
    for k, (stamp, value) in enumerate(triggers):
        taken = {features.trigger.name: value}
        end = triggers[k + 1][0] if k + 1 < len(triggers) else None
        reason = None
        for entry in features.inputs[1:]:
            before = [x for s, x in of(entry.name) if s <= stamp]
            if not before:
                reason = reason or f"missing_input:{entry.name}"
            else:
                taken[entry.name] = before[-1]
        for entry in features.outputs:
            window = [x for s, x in of(entry.name) if s >= stamp and (end is None or s < end)]
            if not window:
                reason = reason or f"missing_output:{entry.name}"
            else:
                taken[entry.name] = window[0]
        for entry in features.entries:
            if reason is None and taken[entry.name] is None:
                reason = f"unreadable:{entry.name}"
            if reason is None and not np.isfinite(taken[entry.name]).all():
                reason = f"non_finite:{entry.name}"
        if reason:
            dropped[reason] += 1
        else:
            samples.append(Sample(stamp, {e.name: taken[e.name] for e in features.entries}))
    return samples, dropped


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_follow_the_rules(seed: int) -> None:
    rng = random.Random(seed)
    trigger_stamps = sorted(rng.sample(range(0, 400), rng.randint(1, 30)))
    messages: list[tuple[str, int, Any]] = [(J, s, v(rng.random(), 0, 0)) for s in trigger_stamps]
    for name, size in ((T, 2), (C, 3)):
        for _ in range(rng.randint(0, 40)):
            values = v(*(rng.random() for _ in range(size)))
            if rng.random() < 0.05:
                values[0] = np.nan
            messages.append((name, rng.randrange(0, 420), None if rng.random() < 0.05 else values))
    delay = rng.choice([0, 5, 30])
    # Arrival order: stamp plus a jitter under the delay (ties keep a random order).
    rng.shuffle(messages)
    messages.sort(key=lambda m: m[1] + (rng.random() * delay if delay else 0))
    samples, aligner = run(MANIPULATION, messages, max_delay_ns=delay)
    expected, dropped = reference(MANIPULATION, messages)
    assert as_lists(samples) == as_lists(expected)
    # a trigger stamp is unique here, so the reference never sees a duplicate trigger
    assert aligner.dropped == dropped and not aligner.late
    assert aligner.samples + sum(aligner.dropped.values()) == len(trigger_stamps)


def test_boxes_of_a_letterboxed_camera_image_are_mapped_as_the_image() -> None:
    """A recording's 640x480 camera: the image is fitted into 160x120 (scale 1/4), so are its boxes; a
    1280x960 one whose width pads (scale 1/8 then centred) moves them by the padding too."""
    features = parse_features(default_features("object_detection"))
    read_image = entry_reader(features.entry("image"))
    for width, height in ((640, 480), (1280, 720)):
        pixels = np.zeros((height, width, 3), np.uint8)
        camera = SimpleNamespace(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3,
                                 data=pixels.tobytes())
        fitted = read_image(camera)
        assert isinstance(fitted, tuple)
        letterbox = fitted[1]
        samples, _ = run(features, [("image", 0, fitted), ("detections", 0, v(1, 320, 240, 64, 32))])
        [sample] = samples
        assert sample.values["image"].shape == IMAGE_SHAPE
        scale = min(160 / width, 120 / height)
        expected = [320 * letterbox.scale_x + letterbox.pad_x, 240 * letterbox.scale_y + letterbox.pad_y,
                    64 * letterbox.scale_x, 32 * letterbox.scale_y]
        np.testing.assert_allclose(sample.values["boxes"], [expected], rtol=1e-5)
        np.testing.assert_allclose([letterbox.scale_x, letterbox.scale_y], [scale, scale], rtol=0.02)
    assert (letterbox.pad_x, letterbox.pad_y) != (0, 0), "the 16:9 camera is padded"
