"""kairo_inference: the promoted ONNX model on the robot's topics, hot-swapped on promotion.

A lifecycle node. configure reads the parameters and makes the API client
and the prediction publisher; activate loads the model (online, or from the
cache when the backend is unreachable), builds subscriptions and publishers
from the model's own features description, and starts the model worker;
deactivate and cleanup undo that in reverse and are safe to run twice.
With `autostart` (default) the node configures and activates itself.

Each message on the primary (first) input is answered with one prediction,
from the latest values of the other inputs; until every other input has
been seen once, primary messages are counted as dropped (waiting for
inputs). Loading never happens on a callback: the model worker downloads,
verifies, loads and warms up a new version, then swaps one reference.
The topics the model reads and writes, and ~/prediction, live on a small
node of the data path's own with its own thread (data_path.py), so the
lifecycle machinery never sits in the way of a message.
"""

from __future__ import annotations

import dataclasses
import pathlib
import threading
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from kairo_interfaces.msg import ModelEvent
from kairo_ros.api import KairoApiClient, KairoError, load_api_key
from kairo_ros.inference.data_path import DataPath
from kairo_ros.inference.diagnostics import InferenceStats, diagnostic_status
from kairo_ros.inference.errors import ConfigError
from kairo_ros.inference.model_session import ModelSession, resolve_providers
from kairo_ros.inference.model_source import OFFLINE_ERRORS, LocalModel, ModelSource, VersionRef
from kairo_ros.inference.package_uri import resolve_model_path
from kairo_ros.inference.params import InferenceParams, declare_parameters, read_parameters
from kairo_ros.inference.serving import LoadRequest, ModelWorker, ServingSlot
from kairo_ros.inference.wiring import Wiring, build_wiring, input_qos

NODE_NAME = "kairo_inference"
DEFAULT_NAMESPACE = "kairo"
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# A reliable writer overwrites samples a reader has not acknowledged yet once its history is full:
# 1000 keeps 5 s at 200 Hz for a monitor that falls behind.
PREDICTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
EVENTS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
DIAGNOSTICS_PERIOD_S = 1.0


class InferenceNode(LifecycleNode):
    """Serves one model on the topics its features description names."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, namespace=namespace, **kwargs)
        declare_parameters(self)
        self.params: InferenceParams | None = None
        self.stats = InferenceStats()
        self.slot = ServingSlot()
        self._state = "unconfigured"
        self._providers: list[str] = []
        self._client: KairoApiClient | None = None
        self._source: ModelSource | None = None
        self._worker: ModelWorker | None = None
        self._wiring_lock = threading.Lock()
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._events_subscription: Any = None
        self.data = DataPath(self, self.slot, self.stats,
                             on_bad_input=lambda code, message: self._report(code, message, throttle=True),
                             on_inference_failed=self._inference_failed)
        self._rejected: set[VersionRef] = set()
        self._offline_reported = False
        # Diagnostics run in every state, so that a refused configuration is visible too.
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics,
                                                    callback_group=self._service_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if bool(self.get_parameter("autostart").value) \
                and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # --- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            params = read_parameters(self)
            self._providers = resolve_providers(params.providers)
            self._client = None
            if params.uses_api:
                self._client = KairoApiClient(params.api_url, load_api_key(params.api_key_file or None),
                                              timeout_s=params.request_timeout_s)
        except KairoError as exc:
            self._report(exc.code, f"configuration refused: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.params = params
        self._source = ModelSource(params, self._client, self.get_logger().warning)
        self.data.open_prediction(PREDICTION_QOS)
        self._state = "inactive"
        self.get_logger().info(f"configured: serving {self._source.describe()}, providers "
                               f"{', '.join(self._providers)}, input QoS {params.input_qos}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.params is not None and self._source is not None
        self._state = "active"
        try:
            local = (self._file_model(self.params.model_path) if not self.params.uses_api
                     else self._source.boot())
        except KairoError as exc:
            self._report(exc.code, f"no model to serve yet: {exc}")
        else:
            self._adopt(local)
        if self.params.uses_api:
            self._events_subscription = self.create_subscription(
                ModelEvent, self.params.events_topic, self._on_model_event, EVENTS_QOS,
                callback_group=self._service_group)
        self._worker = ModelWorker(self._handle_load_request,
                                   self.params.poll_period_s if self.params.uses_api else 0.0)
        self._worker.start()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_serving()
        self._state = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop serving and release everything; safe to call twice."""
        self._stop_serving()
        self._release()
        self.data.shutdown()
        self._state = "finalized"

    def _stop_serving(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._events_subscription is not None:
            self.destroy_subscription(self._events_subscription)
            self._events_subscription = None
        with self._wiring_lock:
            self.data.unwire()
        self.slot.clear()

    def _release(self) -> None:
        self.data.close_prediction()
        if self._client is not None:
            self._client.close()
            self._client = None
        self._source = None

    # --- loading (model worker thread, and activate) -------------------------------------------------
    def _file_model(self, path: str) -> LocalModel:
        return LocalModel(VersionRef("", "", ""), pathlib.Path(path).expanduser(), from_cache=False)

    def _handle_load_request(self, request: LoadRequest) -> None:
        source = self._source
        if source is None:
            return
        if request.reason == "file":
            self._adopt(self._file_model(request.path))
            return
        try:
            ref = source.resolve()
        except OFFLINE_ERRORS as exc:
            if not self._offline_reported:
                self.get_logger().warning(f"cannot check for a new version: {exc}")
                self._offline_reported = True
            return
        except KairoError as exc:
            self._report(exc.code, f"cannot check for a new version: {exc}")
            return
        self._offline_reported = False
        current = self.slot.current
        if current is not None and (current.identity.model_id, current.identity.version,
                                    current.identity.sha256) == (ref.model_id, ref.version, ref.sha256):
            return
        if ref in self._rejected:
            return
        try:
            local = source.fetch(ref)
        except KairoError as exc:
            self._report(exc.code, f"{ref.model_id} {ref.version} not loaded, the current model keeps "
                                   f"serving: {exc}", rejected=True)
            self._rejected.add(ref)
            return
        if not self._adopt(local):
            self._rejected.add(ref)

    def _adopt(self, local: LocalModel) -> bool:
        """Load, check and warm up `local`, wire it if nothing is wired yet, and swap it in."""
        assert self.params is not None
        current = self.slot.current
        try:
            session = ModelSession.load(local.path, self._providers, self.params.intra_op_threads,
                                        expected=current.features if current else None,
                                        sha256=local.ref.sha256, model_id=local.ref.model_id,
                                        version=local.ref.version)
            with self._wiring_lock:
                if self.data.wiring is None and self._state == "active":
                    self._create_endpoints(build_wiring(session.features, self.params.remaps))
        except KairoError as exc:
            keeps = "the current model keeps serving" if current else "nothing is serving"
            self._report(exc.code, f"model refused ({keeps}): {exc}", rejected=True)
            return False
        replaced = self.slot.swap(session)
        self.stats.swapped()
        if self._source is not None:
            self._source.mark_good(local)
        identity = session.identity
        if local.offline_reason:
            self.get_logger().warning(f"the backend is unreachable, so the last good version serves, from the "
                                      f"cache ({local.offline_reason})")
        self.get_logger().info(
            f"serving {identity.model_id or '-'} {identity.version or '-'} (sha256 {identity.sha256[:12]}, "
            f"{session.provider}{', from the cache' if local.from_cache else ''})"
            + (f"; {replaced.identity.version} kept for rollback" if replaced else ""))
        return True

    def _create_endpoints(self, wiring: Wiring) -> None:
        assert self.params is not None
        self.data.wire(wiring, input_qos(self.params.input_qos), OUTPUT_QOS)
        self.get_logger().info(
            "wired: " + ", ".join(f"{w.entry.name} <- {w.topic}" for w in wiring.inputs) + "; "
            + ", ".join(f"{w.entry.name} -> {w.topic}" for w in wiring.outputs))

    # --- a failed inference (the data path's thread) ---------------------------------------------------
    def _inference_failed(self, model: ModelSession, exc: Exception) -> None:
        restored = self.slot.rollback(model)
        identity = model.identity
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if restored is not None:
            self._rejected.add(VersionRef(identity.model_id, identity.version, identity.sha256))
            self._report("inference_failed", f"{identity.model_id} {identity.version} failed on a message "
                                             f"({detail}); rolled back to {restored.identity.version}")
        else:
            self._report("inference_failed", f"inference failed ({detail})", throttle=True)

    # --- events, parameters, diagnostics -------------------------------------------------------------
    def _on_model_event(self, event: ModelEvent) -> None:
        if (event.event == ModelEvent.PROMOTED and self._source is not None and self._worker is not None
                and self._source.wants_event(event.model_id, event.robot_id, event.task)):
            self.get_logger().info(f"promotion of {event.model_id} {event.version}: checking it")
            self._worker.request(LoadRequest("event", version=event.version))

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name != "model_path" or self.params is None:
                continue
            path = str(parameter.value or "").strip()
            if not self.params.model_path or not path:
                return SetParametersResult(successful=False, reason=(
                    "model_path: this node serves a model from the API; to serve a file, deactivate, clean "
                    "up, clear model_id/robot_id/task and configure again"))
            try:
                path = resolve_model_path(path)
            except ConfigError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.params = dataclasses.replace(self.params, model_path=path)
            if self._worker is not None:
                self._worker.request(LoadRequest("file", path=path))
        return SetParametersResult(successful=True)

    def _report(self, code: str, message: str, *, rejected: bool = False, throttle: bool = False) -> None:
        if rejected:
            self.stats.model_rejected(code, message)
        else:
            self.stats.error(code, message)
        if throttle:
            self.get_logger().error(f"[{code}] {message}", throttle_duration_sec=5.0)
        else:
            self.get_logger().error(f"[{code}] {message}")

    def _publish_diagnostics(self) -> None:
        model = self.slot.current
        status = diagnostic_status(self.get_fully_qualified_name(), self._state,
                                   model.identity if model else None, model.provider if model else "",
                                   self.stats.snapshot())
        self._diagnostics_publisher.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

