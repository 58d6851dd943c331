"""Action `record` (RecordDataset): record a features description's topics into a rosbag2 directory.

The bag is what `ros2 bag record` writes: a directory with metadata.yaml and
one MCAP file, every message stored as the serialized CDR it arrived in
(raw subscriptions: no round trip through Python objects), under its topic
and type as on the wire, with each type's message definition and hash
taken from the installed interface files. `rosbags` writes the format.

Each goal runs on its own executor thread, which also spins a private node
holding the goal's subscriptions: the manager's shared executor never sees
the message stream, and the thread that receives a message also writes it.
To report aligned samples live, each message is deserialized once and fed
to kairo_features' Aligner, the same rules the backend's import applies.

Duration, sample count or cancel end the recording; the bag is then closed
(metadata.yaml written, MCAP summary and footer) and kept. A goal that
cannot be recorded (unknown task, bad features document, a type that is not
installed, an output directory that cannot be written) ends with
success=false and a message saying what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import CallbackGroup
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.interfaces import (
    Nodetype,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.errors import WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from kairo_features import Features, FeaturesError, parse_features
from kairo_features.alignment import Aligner
from kairo_features.fields import entry_reader
from kairo_features.tasks import TASKS, default_features
from kairo_interfaces.action import RecordDataset
from kairo_ros.api import KairoError
from kairo_ros.inference.errors import ConfigError, WiringError
from kairo_ros.inference.wiring import import_message_type, parse_topic_remaps
from kairo_ros.manager.backend import BackendLink
from kairo_ros.manager.goal_action import GoalSlotAction
from kairo_ros.manager.params import ManagerParams

DEFAULT_RECORD_DIR = "~/.kairo/recordings"
# rosbag2 metadata version 8 (Jazzy's): `ros2 bag info` and `ros2 bag play` of Jazzy and later read it.
BAG_VERSION: Literal[8] = 8
FEATURES_METADATA_KEY = "kairo.features"  # the recorded features document, in metadata.yaml's custom_data
_FEEDBACK_PERIOD_S = 0.5
UPLOAD_TIMEOUT_S = 600.0  # the whole upload of one recording; API calls otherwise take request_timeout_s
_SPIN_TIMEOUT_S = 0.05
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class RecordError(Exception):
    """A goal that cannot be recorded; the message says what to do."""


@dataclass(frozen=True)
class TopicPlan:
    topic: str
    msg_type: str
    msg_cls: type
    entries: tuple[str, ...]  # the features entries this topic feeds


@dataclass(frozen=True)
class RecordPlan:
    features: Features      # with the remaps applied: the topics actually recorded
    topics: tuple[TopicPlan, ...]
    bag_path: pathlib.Path
    duration_s: float
    max_samples: int


@dataclass
class _Progress:
    started: float = field(default_factory=time.monotonic)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


class RecordAction(GoalSlotAction[RecordDataset.Result]):
    kind = "record"
    action_type = RecordDataset

    def __init__(self, node: Node, backend: BackendLink, params: ManagerParams, group: CallbackGroup,
                 goal_slots: threading.BoundedSemaphore, stopping: threading.Event) -> None:
        self._node = node
        super().__init__(node, backend, params, group, goal_slots, stopping)

    def _failed_result(self, message: str) -> RecordDataset.Result:
        return RecordDataset.Result(success=False, message=message)

    def _run(self, handle: ServerGoalHandle) -> RecordDataset.Result:
        try:
            plan = make_plan(handle.request)
        except RecordError as exc:
            self._log.warning(f"record goal aborted: {exc}")
            return self._end(handle, "abort", self._failed_result(str(exc)))
        self._log.info(f"recording {', '.join(t.topic for t in plan.topics)} into {plan.bag_path}")
        recording = _Recording(self._node, plan)
        try:
            recording.open()
        except RecordError as exc:
            self._log.warning(f"record goal aborted: {exc}")
            return self._end(handle, "abort", self._failed_result(str(exc)))
        why = "failed"
        try:
            why = recording.run(handle, self._stopping)
        finally:
            closed = recording.close()
        result = recording.result()
        if closed:
            result.success, result.message = False, f"the bag could not be closed: {closed}"
            return self._end(handle, "abort", result)
        ended = {"duration": f"{plan.duration_s:g} s recorded", "samples": f"{plan.max_samples} samples aligned",
                 "cancelled": "cancelled", "stopping": "kairo_manager is stopping"}.get(why, why)
        summary = (f"{ended}: {result.samples} samples, {sum(result.message_counts)} messages in "
                   f"{result.duration_s:.1f} s; bag {plan.bag_path}")
        if why == "stopping" or why.startswith("failed"):
            result.success, result.message = False, f"{summary} (closed and kept)"
            self._log.warning(result.message)
            return self._end(handle, "abort", result)
        result.success, result.message = True, summary
        self._log.info(summary)
        if why == "cancelled":
            result.message = f"{summary}; what was recorded is kept"
        if handle.request.upload:
            self._upload(handle, plan, result)
        if not result.success:
            return self._end(handle, "abort", result)
        return self._end(handle, "canceled" if why == "cancelled" else "succeed", result)

    def _upload(self, handle: ServerGoalHandle, plan: RecordPlan, result: RecordDataset.Result) -> None:
        """POST the bag's MCAP file with its features document as a dataset; the result says how it went."""
        recording = next(plan.bag_path.glob("*.mcap"))
        name = handle.request.name.strip() or plan.bag_path.name
        try:
            dataset = self._backend.call(lambda api: api.upload_dataset(
                recording, plan.features.to_document(), name, timeout_s=UPLOAD_TIMEOUT_S))
        except KairoError as exc:
            result.success = False
            result.message = (f"{result.message}; the upload failed: {exc}. The bag is kept: upload it with "
                              f"POST /v1/datasets or `kairo-backend datasets import {plan.bag_path}`")
            self._log.warning(result.message)
            return
        result.dataset_id = dataset.id
        result.message = f"{result.message}; uploaded as dataset {dataset.id} ({dataset.samples} samples)"
        self._log.info(f"recording {plan.bag_path.name} uploaded as dataset {dataset.id}")



def subscription_qos(offered: list[QoSProfile]) -> QoSProfile:
    """Reliable when every publisher is (nothing lost), else best effort (matches them all), as rosbag2 does."""
    if any(q.reliability == ReliabilityPolicy.BEST_EFFORT for q in offered):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)
    return QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def bag_qos(profile: QoSProfile) -> Qos:
    """A publisher's offered QoS as metadata.yaml lists it (`ros2 bag play` offers it again).

    rosbags' QoS enums have rmw's values, which rclpy's policies carry.
    """
    def span(duration: Any) -> QosTime:
        sec, nsec = divmod(int(duration.nanoseconds), 1_000_000_000)
        return QosTime(sec, nsec)

    return Qos(QosHistory(int(profile.history)), int(profile.depth), QosReliability(int(profile.reliability)),
               QosDurability(int(profile.durability)), span(profile.deadline), span(profile.lifespan),
               QosLiveliness(int(profile.liveliness)), span(profile.liveliness_lease_duration),
               bool(profile.avoid_ros_namespace_conventions))


def make_plan(goal: RecordDataset.Goal) -> RecordPlan:
    """Check a goal and work out what to record where; RecordError says what is wrong."""
    features = _features_of(goal)
    try:
        remaps = parse_topic_remaps(r for r in goal.remaps if r.strip())
    except ConfigError as exc:
        raise RecordError(str(exc).replace("topic_remaps", "remaps")) from None
    names = {e.name for e in features.entries} | {e.topic for e in features.entries}
    unknown = sorted(set(remaps) - names)
    if unknown:
        raise RecordError(f"remaps: {unknown[0]!r} is neither an input or output name nor one of their topics "
                          f"({', '.join(sorted(names))})")
    doc = features.to_document()
    for entry in doc["inputs"] + doc["outputs"]:
        entry["topic"] = remaps.get(entry["name"], remaps.get(entry["topic"], entry["topic"]))
    try:
        features = parse_features(doc)
    except FeaturesError as exc:
        raise RecordError(f"remaps: {exc}") from None
    topics: dict[str, list[Any]] = {}
    for entry in features.entries:
        seen = topics.setdefault(entry.topic, [entry.msg_type, []])
        if seen[0] != entry.msg_type:
            raise RecordError(f"topic {entry.topic} is given two types, {seen[0]} and {entry.msg_type}; "
                              f"one topic carries one type")
        seen[1].append(entry.name)
    plans = []
    for topic, (msg_type, entries) in topics.items():
        try:
            cls = import_message_type(msg_type)
        except WiringError as exc:
            raise RecordError(str(exc)) from None
        plans.append(TopicPlan(topic, msg_type, cls, tuple(entries)))
    if not (goal.duration_s >= 0 and goal.duration_s < float("inf")):
        raise RecordError(f"duration_s: {goal.duration_s} must be a number >= 0 (0: no limit)")
    return RecordPlan(features, tuple(plans), _bag_path(goal), float(goal.duration_s), int(goal.max_samples))


def _features_of(goal: RecordDataset.Goal) -> Features:
    task = goal.task.strip()
    if goal.features.strip():
        try:
            return parse_features(goal.features, task=task or None)
        except FeaturesError as exc:
            raise RecordError(f"{exc} (docs/features.md describes the document)") from None
    if task not in TASKS:
        raise RecordError(f"task {task!r} is unknown; give one of {', '.join(TASKS)} to record its default "
                          f"wiring, or a features document in `features`")
    return parse_features(default_features(task))


def _bag_path(goal: RecordDataset.Goal) -> pathlib.Path:
    text = goal.output_dir.strip() or DEFAULT_RECORD_DIR
    output_dir = pathlib.Path(text).expanduser()
    if not output_dir.is_absolute():
        raise RecordError(f"output_dir {text!r} must be an absolute path (or start with ~)")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordError(f"output_dir {output_dir} cannot be made ({exc.strerror}); give a directory this "
                          f"manager may write") from None
    if not output_dir.is_dir() or not os.access(output_dir, os.W_OK | os.X_OK):
        raise RecordError(f"output_dir {output_dir} is not a writable directory; give one this manager may write")
    stamp = datetime.now(timezone.utc).strftime("%Y_%m_%d-%H_%M_%S")
    base = f"{_SAFE_NAME.sub('_', goal.name.strip()) or 'recording'}_{stamp}"
    path = output_dir / base
    suffix = 1
    while path.exists():
        suffix += 1
        path = output_dir / f"{base}_{suffix}"
    return path


class _Recording:
    """One goal's subscriptions, bag writer and aligner; everything runs on the goal's thread."""

    def __init__(self, manager: Node, plan: RecordPlan) -> None:
        self._manager = manager
        self._plan = plan
        self._writer = Writer(plan.bag_path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._aligner = Aligner(plan.features)
        self._readers = {e.name: entry_reader(e, plan.features.classes) for e in plan.features.entries}
        self._progress = _Progress()
        self._node: Node | None = None
        self._executor: SingleThreadedExecutor | None = None
        self._failure = ""
        self._closed = False
        self._first_ns = self._last_ns = 0

    def open(self) -> None:
        """Make the bag and subscribe; RecordError (and no bag directory left) when that cannot be done."""
        definitions = {t.msg_type: message_definition(t.msg_type) for t in self._plan.topics}
        try:
            self._writer.set_custom_data(FEATURES_METADATA_KEY, json.dumps(self._plan.features.to_document()))
            self._writer.open()
        except (OSError, WriterError) as exc:
            raise RecordError(f"cannot make the bag {self._plan.bag_path}: {exc}") from None
        try:
            connections, offered = {}, {}
            for t in self._plan.topics:
                msgdef, rihs01 = definitions[t.msg_type]
                # the publishers the manager's graph knows now, as rosbag2 takes them when it subscribes
                offered[t.topic] = [p.qos_profile for p in self._manager.get_publishers_info_by_topic(t.topic)]
                connections[t.topic] = self._writer.add_connection(
                    t.topic, t.msg_type, msgdef=msgdef, rihs01=rihs01,
                    offered_qos_profiles=[bag_qos(q) for q in offered[t.topic]])
                self._progress.counts[t.topic] = 0
            self._subscribe(connections, offered)
        except Exception as exc:
            self._closed = True
            self._unsubscribe()
            with contextlib.suppress(Exception):
                self._writer.abort()
            shutil.rmtree(self._plan.bag_path, ignore_errors=True)
            raise RecordError(f"cannot start recording: {type(exc).__name__}: {exc}") from exc

    def _subscribe(self, connections: dict[str, Any], offered: dict[str, list[QoSProfile]]) -> None:
        context = self._manager.context
        self._node = Node(f"kairo_recorder_{uuid.uuid4().hex[:8]}", namespace=self._manager.get_namespace(),
                          context=context)
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self._node)
        for t in self._plan.topics:
            self._node.create_subscription(t.msg_cls, t.topic, self._on_message(t, connections[t.topic]),
                                           subscription_qos(offered[t.topic]), raw=True)

    def _on_message(self, topic: TopicPlan, connection: Any) -> Callable[[bytes], None]:
        has_header = "header" in topic.msg_cls.get_fields_and_field_types()  # type: ignore[attr-defined]

        def on_message(data: bytes) -> None:
            if self._failure:
                return
            received_ns = time.time_ns()
            try:
                self._writer.write(connection, received_ns, data)
            except (OSError, WriterError) as exc:
                self._failure = f"writing {topic.topic} failed: {exc}"
                return
            self._progress.counts[topic.topic] += 1
            self._first_ns = self._first_ns or received_ns
            self._last_ns = received_ns
            msg = deserialize_message(data, topic.msg_cls)
            stamp_ns = received_ns
            if has_header:  # an unset header stamp (0) counts as not there, as the backend's import takes it
                stamp = msg.header.stamp
                stamp_ns = stamp.sec * 1_000_000_000 + stamp.nanosec or received_ns
            for name in topic.entries:
                try:
                    values = self._readers[name](msg)
                except ValueError:
                    self._aligner.add_unreadable(name, stamp_ns)
                else:
                    self._aligner.add(name, stamp_ns, values)

        return on_message

    def run(self, handle: ServerGoalHandle, stopping: threading.Event) -> str:
        """Record until the goal ends; why it ended: duration | samples | cancelled | stopping | failed: ..."""
        executor = self._executor
        assert executor is not None
        plan, progress = self._plan, self._progress
        next_feedback = 0.0
        while True:
            executor.spin_once(timeout_sec=_SPIN_TIMEOUT_S)
            if self._failure:
                return f"failed: {self._failure}"
            if handle.is_cancel_requested:
                return "cancelled"
            if stopping.is_set() or not self._manager.context.ok():
                return "stopping"
            if plan.duration_s and progress.elapsed_s >= plan.duration_s:
                return "duration"
            if plan.max_samples and self._aligner.samples >= plan.max_samples:
                return "samples"
            if time.monotonic() >= next_feedback:
                next_feedback = time.monotonic() + _FEEDBACK_PERIOD_S
                handle.publish_feedback(RecordDataset.Feedback(
                    topics=list(progress.counts), message_counts=list(progress.counts.values()),
                    samples=self._aligner.samples, elapsed_s=progress.elapsed_s))

    def close(self) -> str:
        """Drop the subscriptions, flush the aligner, close the bag; '' or why the bag could not be closed."""
        if self._closed:
            return ""
        self._closed = True
        self._unsubscribe()
        self._aligner.finish()
        try:
            self._writer.close()
        except Exception as exc:  # noqa: BLE001 - any failure of the format library is reported, the goal ends
            with contextlib.suppress(Exception):
                self._writer.abort()
            return f"{type(exc).__name__}: {exc}"
        return ""

    def _unsubscribe(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=1.0)
            self._executor = None
        if self._node is not None:
            self._node.destroy_node()
            self._node = None

    def result(self) -> RecordDataset.Result:
        dropped = sorted(self._aligner.dropped.items())
        counts = self._progress.counts
        types = {t.topic: t.msg_type for t in self._plan.topics}
        return RecordDataset.Result(
            bag_path=str(self._plan.bag_path), samples=self._aligner.samples, topics=list(counts),
            types=[types[t] for t in counts], message_counts=list(counts.values()),
            dropped_reasons=[r for r, _ in dropped], dropped_counts=[c for _, c in dropped],
            duration_s=(self._last_ns - self._first_ns) / 1e9)


# --- message definitions, as the installed interface files state them ----------------------------------
_definitions_lock = threading.Lock()
_definitions: dict[str, tuple[str, str]] = {}


def message_definition(msg_type: str) -> tuple[str, str]:
    """(definition text with its dependencies, RIHS01 hash) of an installed message type, as rosbag2 stores them.

    Read from the `.msg` files in the packages' share directories, the
    files the type was generated from, so a custom type needs nothing more
    than being installed.
    """
    with _definitions_lock:
        if msg_type not in _definitions:
            store = get_typestore(Stores.EMPTY)
            pending, loaded = [msg_type], set()
            while pending:
                name = pending.pop()
                if name in loaded:
                    continue
                loaded.add(name)
                path = _msg_file(name)
                try:
                    types = get_types_from_msg(path.read_text(encoding="utf-8"), name)
                    store.register(types)
                except Exception as exc:  # noqa: BLE001 - the parser's errors have no common base
                    raise RecordError(f"message type {name}: cannot read its definition {path}: {exc}") from None
                pending.extend(_nested_types(types[name][1]))
            msgdef, _ = store.generate_msgdef(msg_type, ros_version=2)
            _definitions[msg_type] = (msgdef, store.hash_rihs01(msg_type))
        return _definitions[msg_type]


def _msg_file(msg_type: str) -> pathlib.Path:
    package, _, name = msg_type.partition("/msg/")
    try:
        path = pathlib.Path(get_package_share_directory(package)) / "msg" / f"{name}.msg"
    except PackageNotFoundError:
        raise RecordError(f"message type {msg_type}: package {package!r} is not installed; install it or source "
                          f"the workspace that builds it") from None
    if not path.is_file():
        raise RecordError(f"message type {msg_type}: its definition {path} is not installed; a type defined "
                          f"only in .idl cannot be recorded")
    return path


def _nested_types(node: Any) -> list[str]:
    """The message type names a parsed field list refers to."""
    if isinstance(node, tuple) and len(node) == 2 and node[0] == Nodetype.NAME and isinstance(node[1], str):
        return [node[1]]
    if isinstance(node, tuple | list):
        return [name for item in node for name in _nested_types(item)]
    return []
