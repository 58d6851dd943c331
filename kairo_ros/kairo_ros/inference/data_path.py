"""kairo_inference's prediction path: its own small node, spun by its own thread.

rclpy executors rebuild their wait set over every entity of every node they
serve on each spin, and a lifecycle node carries many (lifecycle and
parameter services, the diagnostics timer, the events subscription).
So the topics a model reads and writes live on a plain node of their own,
`_<name>_data` (hidden; no parameter or type description services, no rosout), served by
one thread of its own: its wait set holds only the input subscriptions and
their QoS events, and every message is handled on that one thread, without a
hand-off. The lifecycle node keeps everything else on the main executor.

That thread does not run an rclpy executor: with tasks, generators and the
collection of entities from callback groups, an executor spends 200-400 us a
message in Python, more than the model. `NodeLoop` waits on this one node's
few entities directly (rclpy's own wait_for_message does the same), keeping
each entity's handle in use while it waits, as executors do.

Because only that thread runs the callbacks, the per-message work reuses
what can be made once per wiring: the outgoing messages, the field plans,
the output indexes. Each primary message reads the serving model once (the
ModelServer's `current`), so a hot swap lands between two messages.
A shadowed candidate (the ModelServer's `shadow`) gets each answered input
and the published outputs last, after ~/prediction, through its runner's
bounded queue: the active path never waits for it.
"""

from __future__ import annotations

import array
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_msgs.msg import Header

from kairo_interfaces.msg import Prediction

log = logging.getLogger("kairo_ros.inference")

try:
    from rclpy.exceptions import InvalidHandle
except ImportError:  # Humble keeps it in rclpy.handle
    from rclpy.handle import InvalidHandle  # type: ignore[no-redef]
try:
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble names the module qos_event
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks  # type: ignore[no-redef]
from kairo_ros.inference import diagnostics
from kairo_ros.inference.diagnostics import InferenceStats
from kairo_ros.inference.errors import BadInputError
from kairo_ros.inference.guard import CLAMPED_OUTPUT, NON_FINITE_OUTPUT, STALE_INPUT, Guard, GuardSettings
from kairo_ros.inference.model_session import ModelSession
from kairo_ros.inference.shadow import ShadowRunner
from kairo_ros.inference.wiring import DetectionWriter, Wiring

# Queued primary messages answered in one wait at most, after the one the wait took.
MAX_QUEUED_PER_ROUND = 16
# (code, message): a throttled error report; (model, exception): a failed inference.
ReportBadInput = Callable[[str, str], None]
ReportInferenceFailed = Callable[[ModelSession, Exception], None]


def _run_to_end(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a waitable's execute(): with plain callbacks it finishes without suspending."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    log.warning("prediction path: an event callback awaited something; it was dropped")


class NodeLoop:
    """Serves the subscriptions and waitables (QoS events) of one node on one thread, until stopped."""

    WAIT_TIMEOUT_NS = 500_000_000  # a stop request or shutdown is seen within this, at the latest

    def __init__(self, node: Node, on_error: Callable[[], None]) -> None:
        self.node = node
        self._on_error = on_error
        self._stopping = False
        # Triggered when entities come or go, so that the wait starts again over the new set.
        self._wake = GuardCondition(None, None, context=node.context)
        self._thread = threading.Thread(target=self._run, name="kairo-inference-data", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        self._wake.trigger()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        if self._thread.is_alive():
            self.wake()
            self._thread.join(timeout_s)
        self._wake.destroy()

    def _run(self) -> None:
        while not self._stopping and self.node.context.ok():
            try:
                self._wait_once()
            except InvalidHandle:  # an entity was destroyed after the snapshot: wait again over the rest
                continue
            except Exception:  # noqa: BLE001 - one bad message must not end the data path
                if self._stopping or not self.node.context.ok():
                    return
                self._on_error()

    def _wait_once(self) -> None:
        subscriptions = list(self.node.subscriptions)
        waitables = list(self.node.waitables)
        context_handle = self.node.context.handle
        if context_handle is None:  # shut down
            return
        ready: list[tuple[Any, Any]] = []
        events: list[tuple[Any, Any]] = []
        with contextlib.ExitStack() as in_use:
            for subscription in subscriptions:
                in_use.enter_context(subscription.handle)
            for waitable in waitables:
                in_use.enter_context(waitable)
            in_use.enter_context(self._wake.handle)
            in_use.enter_context(context_handle)
            events_count = sum(w.get_num_entities().num_events for w in waitables)
            wait_set = _rclpy.WaitSet(len(subscriptions), 1, 0, 0, 0, events_count, context_handle)
            wait_set.clear_entities()
            for subscription in subscriptions:
                wait_set.add_subscription(subscription.handle)
            wait_set.add_guard_condition(self._wake.handle)
            for waitable in waitables:
                waitable.add_to_wait_set(wait_set)
            wait_set.wait(self.WAIT_TIMEOUT_NS)
            ready_pointers = set(wait_set.get_ready_entities("subscription"))
            for subscription in subscriptions:
                if subscription.handle.pointer in ready_pointers:
                    taken = subscription.handle.take_message(subscription.msg_type, subscription.raw)
                    if taken is not None:
                        ready.append((subscription.callback, taken[0]))
            for waitable in waitables:
                if waitable.is_ready(wait_set):
                    data = waitable.take_data()
                    if data is not None:
                        events.append((waitable, data))
        # Callbacks run with no handle held, so a rewiring from another thread is never kept waiting;
        # one that fails does not cost the others their message.
        for callback, msg in ready:
            try:
                callback(msg)
            except Exception:  # noqa: BLE001 - one bad message must not end the data path
                self._on_error()
        for waitable, data in events:
            try:
                _run_to_end(waitable.execute(data))
            except Exception:  # noqa: BLE001
                self._on_error()


class DataPath:
    """The input subscriptions, output publishers and ~/prediction publisher of one inference node."""

    def __init__(self, owner: Node, serving_model: Callable[[], ModelSession | None], stats: InferenceStats, *,
                 on_bad_input: ReportBadInput, on_inference_failed: ReportInferenceFailed,
                 shadow: Callable[[], ShadowRunner | None] = lambda: None) -> None:
        self._owner_name = owner.get_fully_qualified_name()
        self._clock = owner.get_clock()
        self._serving_model = serving_model
        self._shadow = shadow
        self._stats = stats
        self._on_bad_input = on_bad_input
        self._on_inference_failed = on_inference_failed
        # Global arguments still apply (topic remaps, namespace); the local one keeps the name apart
        # from the lifecycle node's even when `__node:=` renames that one.
        # A leading underscore hides it from `ros2 node list` and `ros2 param list`, which would wait for
        # parameter services it does not have.
        data_name = f"_{owner.get_name()}_data"
        self.node = Node(data_name, namespace=owner.get_namespace(), context=owner.context,
                         cli_args=["--ros-args", "-r", f"__node:={data_name}"],
                         start_parameter_services=False, enable_rosout=False,
                         parameter_overrides=[Parameter("start_type_description_service", value=False)])
        self._loop = NodeLoop(self.node, lambda: log.exception("prediction path: a callback failed; "
                                                                "serving goes on"))
        self._lock = threading.Lock()  # endpoints are made and destroyed from lifecycle and worker threads
        self._subscriptions: list[Any] = []
        self._publishers: list[Any] = []
        self._prediction_publisher: Any = None
        self._prediction_listened = [False]
        self._emitters: list[Callable[[list[np.ndarray], Header], None]] = []
        self._output_listened: list[bool] = []
        self._wiring: Wiring | None = None
        self._guard_settings: GuardSettings | None
        self._guard: Guard | None
        self._guard_model: ModelSession | None
        self._last_command: float | None
        self._safe_outputs: list[np.ndarray] | None
        self._reset_hot_state(None)
        self._closed = False
        self._loop.start()

    # --- endpoints (lifecycle and model worker threads) ------------------------------------------------
    @property
    def wiring(self) -> Wiring | None:
        return self._wiring

    def open_prediction(self, qos: QoSProfile) -> None:
        with self._lock:
            if self._prediction_publisher is None:
                self._prediction_listened = [False]
                self._prediction_publisher = self._listened_publisher(
                    Prediction, self._owner_name + "/prediction", qos, self._prediction_listened, 0)
                self._loop.wake()

    def _listened_publisher(self, msg_cls: type, topic: str, qos: QoSProfile, listened: list[bool],
                            index: int) -> Any:
        """A publisher that keeps `listened[index]` true while it has subscribers.

        Serializing and writing a message nobody reads costs 10-30 us in rclpy, so the
        prediction path skips it. DDS's matched events (on this node's thread) keep the flag;
        while it is false, each message asks DDS (`_heard`), so a subscriber matched just
        before its event is handled still gets every message DDS would deliver to it.
        """
        def on_matched(info: Any) -> None:
            listened[index] = info.current_count > 0

        try:
            callbacks = PublisherEventCallbacks(matched=on_matched)
        except TypeError:  # no matched events on this distro (Humble): always publish
            callbacks = None
        publisher = self.node.create_publisher(msg_cls, topic, qos, event_callbacks=callbacks)
        listened[index] = callbacks is None or publisher.get_subscription_count() > 0
        return publisher

    @staticmethod
    def _heard(publisher: Any, listened: list[bool], index: int) -> bool:
        """Whether DDS has matched a subscriber the matched event has not reported yet (a few us)."""
        if publisher.get_subscription_count() > 0:
            listened[index] = True
        return listened[index]

    def close_prediction(self) -> None:
        with self._lock:
            if self._prediction_publisher is not None:
                self._loop.wake()
                self.node.destroy_publisher(self._prediction_publisher)
                self._prediction_publisher = None

    def wire(self, wiring: Wiring, input_qos: QoSProfile, output_qos: QoSProfile,
             guard: GuardSettings | None) -> None:
        """Subscribe to the wiring's inputs and advertise its outputs (nothing must be wired yet).

        `guard`: the safety guard's settings (None: no guard, for the benchmark only); ConfigError when
        they do not fit the model (an output_limits name it lacks), before anything is wired.
        """
        checked = Guard(wiring.features, guard) if guard is not None else None
        with self._lock:
            self._reset_hot_state(wiring)
            self._guard_settings, self._guard = guard, checked
            self._safe_outputs = Guard.safe_outputs(wiring.features)
            lost = SubscriptionEventCallbacks(message_lost=self._on_message_lost)
            for index, entry in enumerate(wiring.inputs):
                callback = self._on_primary if index == 0 else self._latest_setter(index - 1, entry.entry.name,
                                                                                    entry.reader)
                self._subscriptions.append(self.node.create_subscription(
                    entry.msg_cls, self._topic(entry.topic), callback, input_qos, event_callbacks=lost))
            self._output_listened = [False] * len(wiring.outputs)
            self._publishers = [self._listened_publisher(o.msg_cls, self._topic(o.topic), output_qos,
                                                         self._output_listened, index)
                                for index, o in enumerate(wiring.outputs)]
            self._emitters = [self._emitter(wiring, index, publisher)
                              for index, publisher in enumerate(self._publishers)]
            self._wiring = wiring
            self._loop.wake()

    def unwire(self) -> None:
        with self._lock:
            self._wiring = None
            self._loop.wake()  # the wait lets go of the handles, so they are destroyed now
            for subscription in self._subscriptions:
                self.node.destroy_subscription(subscription)
            for publisher in self._publishers:
                self.node.destroy_publisher(publisher)
            self._subscriptions, self._publishers = [], []
            self._reset_hot_state(None)

    def shutdown(self) -> None:
        """Stop the thread and destroy the node; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        # While the loop still runs: unwire and close_prediction wake it, and stop() destroys what wakes it.
        self.unwire()
        self.close_prediction()
        self._loop.stop()
        self.node.destroy_node()

    def _topic(self, topic: str) -> str:
        # A private topic (~/x) stays the lifecycle node's, as before the data path had its own node.
        return self._owner_name + topic[1:] if topic.startswith("~") else topic

    def _reset_hot_state(self, wiring: Wiring | None) -> None:
        others = len(wiring.inputs) - 1 if wiring is not None else 0
        self._latest: list[np.ndarray | None] = [None] * others
        self._missing = others  # other inputs not seen yet
        self._feeds: dict[str, np.ndarray] = {}
        self._emitters = []
        self._prediction = Prediction()
        self._prediction_model: ModelSession | None = None
        self._stamp_header = Header()
        # The guard of the model serving (each model carries its own envelope), made when it first answers.
        self._guard_settings = None
        self._guard = None
        self._guard_model = None
        # When the last command went out (perf_counter), and whether the safe output followed it already.
        self._last_command = None
        self._safe_sent = False
        self._safe_outputs = None

    def _emitter(self, wiring: Wiring, index: int, publisher: Any) -> Callable[[list[np.ndarray], Header], None]:
        """One output's publish step, with its writer, graph output index and message chosen now."""
        output = wiring.outputs[index]
        writer = output.writer
        msg = output.msg_cls()
        if isinstance(writer, DetectionWriter):
            detection = writer

            def emit_detection(outputs: list[np.ndarray], header: Header) -> None:
                publisher.publish(detection.write(outputs[0][0], header))
            return emit_detection
        field_writer = writer
        position = wiring.features.graph_output_names().index(output.entry.name)

        def emit(outputs: list[np.ndarray], header: Header) -> None:
            publisher.publish(field_writer.write_into(msg, outputs[position][0], header))
        return emit

    # --- the prediction path (the data thread only) ------------------------------------------------------
    def _on_message_lost(self, info: Any) -> None:
        self._stats.dropped(diagnostics.DROP_LOST, int(info.total_count_change))

    def _latest_setter(self, slot: int, name: str, reader: Any) -> Callable[[Any], None]:
        def on_message(msg: Any) -> None:
            try:
                value = reader.read(msg)[None]
            except BadInputError as exc:
                self._stats.dropped(diagnostics.DROP_BAD_INPUT)
                self._on_bad_input(exc.code, str(exc))
                return
            with self._lock:
                guard = self._guard
                if guard is not None:
                    value, reason = guard.inputs[slot + 1].check(value)
                    if reason:
                        # A dropped value leaves the input's previous one in use.
                        self._stats.guarded(reason, dropped_other=value is None)
                        if value is None:
                            return
                latest = self._latest
                if slot < len(latest):
                    if latest[slot] is None:
                        self._missing -= 1
                    latest[slot] = value
                    self._feeds[name] = value
        return on_message

    def _on_primary(self, msg: Any) -> None:
        self._answer(msg)
        # A burst queues messages on the primary input, and each wait (a wait set rebuilt) costs about
        # as much as answering one: answer what is queued already, a bounded number, so the other
        # inputs' callbacks still run between bursts.
        subscription = self._subscriptions[0] if self._subscriptions else None
        if subscription is None:
            return
        for _ in range(MAX_QUEUED_PER_ROUND):
            try:
                with subscription.handle:  # as NodeLoop (and rclpy's executors) take messages
                    taken = subscription.handle.take_message(subscription.msg_type, subscription.raw)
            except InvalidHandle:  # unwired meanwhile
                return
            if taken is None:
                return
            self._answer(taken[0])

    def _answer(self, msg: Any) -> None:
        received = time.perf_counter()
        # Uncontended but for a rewiring: then it keeps the endpoints alive until this message is out.
        with self._lock:
            failed = self._predict(msg, received)
        if failed is not None:
            # Outside the lock: the model server's lock is taken before this one when it rewires.
            self._on_inference_failed(*failed)

    def _predict(self, msg: Any, received: float) -> tuple[ModelSession, Exception] | None:
        """Answer one primary message; the model and exception when inference failed."""
        model, wiring = self._serving_model(), self._wiring
        if model is None or wiring is None:
            self._stats.input_dropped(diagnostics.DROP_NO_MODEL)
            return None
        primary = wiring.inputs[0]
        try:
            value = primary.reader.read(msg)[None]
        except BadInputError as exc:
            self._stats.input_dropped(diagnostics.DROP_BAD_INPUT)
            self._on_bad_input(exc.code, str(exc))
            return None
        if self._missing:
            self._stats.input_dropped(diagnostics.DROP_WAITING)
            return None
        guard = self._guard
        if guard is not None:
            if model is not self._guard_model:
                guard = self._guard = Guard(model.features, self._guard_settings)  # type: ignore[arg-type]
                self._guard_model = model
            checked, reason = guard.inputs[0].check(value)
            if reason:
                self._stats.guarded(reason, dropped_trigger=checked is None)
                if checked is None:
                    return None
                value = checked
        feeds = self._feeds
        feeds[primary.entry.name] = value
        try:
            outputs = model.run(feeds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            self._stats.input_dropped(diagnostics.DROP_INFERENCE)
            return model, exc
        clamped = False
        if guard is not None:
            verdict = guard.check_outputs(outputs)
            if verdict == NON_FINITE_OUTPUT:
                self._stats.guarded(verdict, dropped_trigger=True)
                return None
            if verdict:
                self._stats.guarded(verdict)
                clamped = verdict == CLAMPED_OUTPUT
        if primary.has_header:
            header = msg.header
        else:
            header = self._stamp_header
            header.stamp = self._clock.now().to_msg()
        listened = self._output_listened
        for index, emit in enumerate(self._emitters):
            if listened[index] or self._heard(self._publishers[index], listened, index):
                emit(outputs, header)
        self._last_command, self._safe_sent = received, False
        latency = time.perf_counter() - received
        publisher = self._prediction_publisher
        if publisher is not None and (self._prediction_listened[0]
                                      or self._heard(publisher, self._prediction_listened, 0)):
            prediction = self._prediction
            if model is not self._prediction_model:
                prediction.model_id, prediction.model_version = model.identity.model_id, model.identity.version
                self._prediction_model = model
            prediction.header = header
            if len(outputs) == 1:
                prediction.data = array.array("f", outputs[0].astype(np.float32, copy=False).tobytes())
            else:
                data = array.array("f")
                for output in outputs:
                    data.frombytes(output.astype(np.float32, copy=False).tobytes())
                prediction.data = data
            prediction.latency.sec = int(latency)
            prediction.latency.nanosec = int((latency % 1.0) * 1e9)
            prediction.clamped = clamped
            publisher.publish(prediction)
        self._stats.prediction_published(latency)
        shadow = self._shadow()
        if shadow is not None:
            shadow.offer(feeds, outputs)
        return None

    # --- stale inputs (a timer of the lifecycle node) -------------------------------------------------------
    def send_safe_output_if_stale(self, timeout_s: float) -> bool:
        """Once no command went out for `timeout_s` after the last one (the trigger input stopped, or the
        guard withheld every answer since), publish the task's safe output, once; True when it acted."""
        with self._lock:
            last = self._last_command
            if self._wiring is None or last is None or self._safe_sent or time.perf_counter() - last < timeout_s:
                return False
            self._safe_sent = True
            safe = self._safe_outputs
            if safe is not None:
                header = self._stamp_header
                header.stamp = self._clock.now().to_msg()
                for index, emit in enumerate(self._emitters):
                    if self._output_listened[index] or self._heard(self._publishers[index],
                                                                   self._output_listened, index):
                        emit(safe, header)
            self._stats.guarded(STALE_INPUT)
            return True
