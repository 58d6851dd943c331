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

With a robot_id the node is one robot of a fleet: it serves the robot's
assignment (model_source.py), sends a heartbeat every `heartbeat_period_s`
from a thread of its own (heartbeat.py) and checks its source at once when
the answer, or a deployment event naming it, changes what it must serve. A
shadow candidate runs beside the serving model (shadow.py); its results go
to /diagnostics, to ~/shadow (kairo_interfaces/ShadowReport) and into the
heartbeat.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from kairo_interfaces.msg import ModelEvent, ShadowReport
from kairo_ros.api import Assignment, KairoApiClient, KairoError, load_api_key
from kairo_ros.inference import model_server
from kairo_ros.inference.data_path import DataPath
from kairo_ros.inference.diagnostics import InferenceStats, diagnostic_status, shadow_status
from kairo_ros.inference.errors import ConfigError
from kairo_ros.inference.guard import guard_enabled, stale_timeout_s
from kairo_ros.inference.heartbeat import Heartbeat
from kairo_ros.inference.model_server import ModelServer, ServerEvent, session_loader
from kairo_ros.inference.model_session import ModelSession, resolve_providers
from kairo_ros.inference.model_source import ModelSource
from kairo_ros.inference.package_uri import resolve_model_path
from kairo_ros.inference.params import InferenceParams, declare_parameters, read_parameters
from kairo_ros.inference.serving import LoadRequest, ModelWorker
from kairo_ros.inference.shadow import ShadowRunner, ShadowStats
from kairo_ros.inference.wiring import build_wiring, input_qos

NODE_NAME = "kairo_inference"
DEFAULT_NAMESPACE = "kairo"
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# A reliable writer overwrites samples a reader has not acknowledged yet once its history is full:
# 1000 keeps 5 s at 200 Hz for a monitor that falls behind.
PREDICTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
EVENTS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
DIAGNOSTICS_PERIOD_S = 1.0
SHADOW_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Model events that may change what this robot must serve.
_SOURCE_EVENTS = frozenset({ModelEvent.PROMOTED, ModelEvent.DEPLOYED, ModelEvent.ROLLED_BACK, ModelEvent.WIDENED})


class InferenceNode(LifecycleNode):
    """Serves one model on the topics its features description names: the ROS face of a ModelServer."""

    def __init__(self, namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, namespace=namespace, **kwargs)
        self.params: InferenceParams | None = None
        # Added before the declaration: rclpy asks the last added callback first, so the specs' checks
        # refuse a bad model_path before this callback acts on it.
        self.add_on_set_parameters_callback(self._on_set_parameters)
        declare_parameters(self)
        self.stats = InferenceStats()
        self.server: ModelServer | None = None
        self._client: KairoApiClient | None = None
        self._worker: ModelWorker | None = None
        self._service_group = MutuallyExclusiveCallbackGroup()
        self._events_subscription: Any = None
        self._waiting_reported = False
        self._stale_timer: Any = None
        self._heartbeat: Heartbeat | None = None
        self._shadow_publisher: Any = None
        self.data = DataPath(self, self._serving_model, self.stats,
                             on_bad_input=lambda code, message: self._report(code, message, throttle=True),
                             on_inference_failed=self._inference_failed, shadow=self._shadow_runner)
        # Diagnostics run in every state, so that a refused configuration is visible too.
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics,
                                                    callback_group=self._service_group)
        if bool(self.get_parameter("autostart").value) \
                and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    @property
    def lifecycle_state(self) -> str:
        """The lifecycle state's label (unconfigured, inactive, active, finalized, or a transition)."""
        # rclpy has no public getter; its own trigger_shutdown reads the state machine the same way.
        return str(self._state_machine.current_state[1])

    def _serving_model(self) -> ModelSession | None:
        server = self.server
        return server.current if server is not None else None

    def _shadow_runner(self) -> ShadowRunner | None:
        server = self.server
        return server.shadow if server is not None else None

    # --- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            params = read_parameters(self)
            providers = resolve_providers(params.providers)
            self._client = None
            if params.uses_api:
                self._client = KairoApiClient(params.api_url, load_api_key(params.api_key_file or None),
                                              timeout_s=params.request_timeout_s)
        except KairoError as exc:
            self._report(exc.code, f"configuration refused: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.params = params
        source = ModelSource(params, self._client, self.get_logger().warning)
        self.server = ModelServer(session_loader(providers, params.intra_op_threads),
                                  source if params.uses_api else None,
                                  wire=self._create_endpoints, unwire=self.data.unwire,
                                  shadow_tolerance=params.shadow_tolerance)
        self.server.subscribe(self._on_server_event)
        self.data.open_prediction(PREDICTION_QOS)
        if self._shadow_publisher is None:
            self._shadow_publisher = self.create_publisher(ShadowReport, "~/shadow", SHADOW_QOS)
        self.get_logger().info(f"configured: serving {source.describe()}, providers "
                               f"{', '.join(providers)}, input QoS {params.input_qos}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.params is not None and self.server is not None
        self.server.start()
        self.server.boot(self.params.model_path)
        if self.params.uses_api:
            self._events_subscription = self.create_subscription(
                ModelEvent, self.params.events_topic, self._on_model_event, EVENTS_QOS,
                callback_group=self._service_group)
        self._worker = ModelWorker(self._handle_load_request,
                                   self.params.poll_period_s if self.params.uses_api else 0.0)
        self._worker.start()
        if self.params.sends_heartbeats and self._client is not None:
            client, robot_id = self._client, self.params.robot_id
            logger = self.get_logger()
            self._heartbeat = Heartbeat(self.params.heartbeat_period_s, self._heartbeat_report,
                                        lambda report: client.heartbeat(robot_id, report), self._on_assignment,
                                        warn=logger.warning, info=logger.info)
            self._heartbeat.start()
        return TransitionCallbackReturn.SUCCESS

    def _start_stale_timer(self, task: str) -> None:
        """Watch for a stale trigger input when the task's (or the given) timeout is on."""
        assert self.params is not None
        timeout = stale_timeout_s(self.params.stale_input_timeout_s, task)
        if timeout <= 0 or self._stale_timer is not None:
            return
        # Checked 10 times per timeout: the safe output follows within 1.1 timeouts of the last command.
        self._stale_timer = self.create_timer(min(timeout / 10, 0.1),
                                              lambda: self._send_safe_output(timeout),
                                              callback_group=self._service_group)

    def _send_safe_output(self, timeout_s: float) -> None:
        if self.data.send_safe_output_if_stale(timeout_s):
            self.get_logger().warning(f"no command for {timeout_s:g} s (stale_input_timeout_s): the trigger input "
                                      f"stopped or every answer was withheld; the task's safe output was sent once")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_serving()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop serving and release everything; safe to call twice."""
        self._stop_serving()
        self._release()
        self.data.shutdown()

    def _stop_serving(self) -> None:
        if self._stale_timer is not None:
            self.destroy_timer(self._stale_timer)
            self._stale_timer = None
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._events_subscription is not None:
            self.destroy_subscription(self._events_subscription)
            self._events_subscription = None
        if self.server is not None:
            self.server.stop()

    def _release(self) -> None:
        self.data.close_prediction()
        if self._shadow_publisher is not None:
            self.destroy_publisher(self._shadow_publisher)
            self._shadow_publisher = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self.server = None

    # --- the model server's requests and events -------------------------------------------------------
    def _handle_load_request(self, request: LoadRequest) -> None:
        server = self.server
        if server is None:
            return
        if request.reason == "file":
            server.adopt_file(request.path)
        else:
            server.check_source()

    def _create_endpoints(self, model: ModelSession) -> None:
        assert self.params is not None
        wiring = build_wiring(model.features, self.params.remaps, self.params.score_threshold)
        guard = self.params.guard_settings if guard_enabled() else None
        if guard is None:
            self.get_logger().warning("the safety guard is off (KAIRO_INFERENCE_GUARD=off): for benchmarks only")
        self.data.wire(wiring, input_qos(self.params.input_qos), OUTPUT_QOS, guard)
        self._start_stale_timer(model.features.task)
        topic = self.data.node.resolve_topic_name  # the names subscribed, after --ros-args remapping
        self.get_logger().info(
            "wired: " + ", ".join(f"{w.entry.name} <- {topic(w.topic)}" for w in wiring.inputs) + "; "
            + ", ".join(f"{w.entry.name} -> {topic(w.topic)}" for w in wiring.outputs))

    def _inference_failed(self, model: ModelSession, exc: Exception) -> None:
        server = self.server
        if server is not None:
            server.inference_failed(model, exc)

    def _on_server_event(self, event: ServerEvent) -> None:
        self._report_server_event(event)
        heartbeat = self._heartbeat
        if heartbeat is not None and event.kind in (model_server.SERVING, model_server.REJECTED,
                                                    model_server.ROLLED_BACK, model_server.SHADOWING,
                                                    model_server.SHADOW_ENDED):
            heartbeat.poke()  # the fleet hears of the change now, not a period later

    def _report_server_event(self, event: ServerEvent) -> None:
        logger = self.get_logger()
        if event.kind == model_server.SERVING:
            self._waiting_reported = False
            self.stats.swapped()
            identity = event.model
            assert identity is not None
            if event.offline_reason:
                logger.warning(f"the backend is unreachable, so the last good version serves, from the "
                               f"cache ({event.offline_reason})")
            logger.info(f"serving {identity.model_id or '-'} {identity.version or '-'} (sha256 "
                        f"{identity.sha256[:12]}, {event.provider}"
                        f"{', from the cache' if event.from_cache else ''})"
                        + (f"; {event.replaced.version} kept for rollback" if event.replaced else ""))
        elif event.kind == model_server.REJECTED:
            self._report(event.code, event.message, rejected=True)
        elif event.kind == model_server.UNREACHABLE:
            logger.warning(event.message)
        elif event.kind in (model_server.SHADOWING, model_server.SHADOW_ENDED):
            logger.info(event.message)
        elif event.kind == model_server.INFERENCE_FAILED:
            self._report(event.code, event.message, throttle=True)
        elif event.kind == model_server.NO_MODEL:
            # Waiting for a first promotion is a state, not a fault: said once (diagnostics keep it).
            self.stats.error(event.code, event.message)
            if not self._waiting_reported:
                self._waiting_reported = True
                logger.warning(f"{event.message}; waiting for a promotion (/kairo/promote)")
        else:  # rolled back, no model, a backend error
            self._report(event.code, event.message)

    # --- events, parameters, diagnostics -------------------------------------------------------------
    def _on_model_event(self, event: ModelEvent) -> None:
        source = self.server.source if self.server is not None else None
        if (event.event in _SOURCE_EVENTS and source is not None and self._worker is not None
                and source.wants_event(event.model_id, event.robot_id, event.task, list(event.robots))):
            self.get_logger().info(f"{event.event.replace('_', ' ')} {event.model_id} {event.version}: "
                                   f"checking what to serve")
            self._worker.request(LoadRequest("event", version=event.version))

    # --- the fleet: heartbeat report and answer ---------------------------------------------------------------
    def _heartbeat_report(self) -> dict[str, Any]:
        """What the robot serves, its health over the diagnostics window, its refusals and shadow results."""
        assert self.params is not None
        server = self.server
        source = server.source if server is not None else None
        model = self._serving_model()
        serving = None
        if model is not None:
            identity = model.identity
            serving = {"model_id": identity.model_id, "version": identity.version, "sha256": identity.sha256,
                       "lifecycle_state": self.lifecycle_state, "provider": model.provider,
                       "deployment_id": (source.deployment_id or None) if source is not None else None}
        task = model.features.task if model is not None else self.params.task
        shadow = self._shadow_stats()
        return {
            "period_s": self.params.heartbeat_period_s,
            "node": self.get_fully_qualified_name(),
            "task": task or None,
            "model_id": source.model_id if source is not None else "",
            "serving": serving,
            "health": self.stats.health(),
            "refused": [r.to_json() for r in server.refusals] if server is not None else [],
            "shadow": shadow.to_json() if shadow is not None else None,
        }

    def _on_assignment(self, assignment: Assignment | None) -> None:
        """A heartbeat's answer: check the source at once when it assigns something new."""
        server, worker = self.server, self._worker
        if server is None or worker is None or server.source is None or not server.source.assigned(assignment):
            return
        assert assignment is not None
        shadow = f", shadow {assignment.shadow.version}" if assignment.shadow else ""
        self.get_logger().info(f"fleet assignment {assignment.model_id} {assignment.version}{shadow}: "
                               f"checking what to serve")
        worker.request(LoadRequest("event", version=assignment.version))

    def _shadow_stats(self) -> ShadowStats | None:
        runner = self._shadow_runner()
        return runner.stats() if runner is not None else None

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
        model = self._serving_model()
        name = self.get_fully_qualified_name()
        statuses = [diagnostic_status(name, self.lifecycle_state, model.identity if model else None,
                                      model.provider if model else "", self.stats.snapshot())]
        shadow = self._shadow_stats()
        stamp = self.get_clock().now().to_msg()
        if shadow is not None:
            statuses.append(shadow_status(name, shadow))
            if self._shadow_publisher is not None:
                self._shadow_publisher.publish(shadow_report(shadow, model.identity.version if model else "", stamp))
        self._diagnostics_publisher.publish(DiagnosticArray(header=Header(stamp=stamp), status=statuses))


def shadow_report(stats: ShadowStats, active_version: str, stamp: Any) -> ShadowReport:
    """The ~/shadow message: the candidate's results as the heartbeat carries them."""
    names = list(stats.outputs)
    outputs = [stats.outputs[name] for name in names]
    return ShadowReport(
        stamp=stamp, model_id=stats.model_id, active_version=active_version, candidate_version=stats.version,
        candidate_sha256=stats.sha256, deployment_id=stats.deployment_id, samples=stats.samples,
        errors=stats.errors, dropped=stats.dropped, latency_p50_ms=stats.latency_p50_ms,
        latency_p99_ms=stats.latency_p99_ms, divergence=stats.divergence, outputs=names,
        mean_abs_diff=[o.mean_abs_diff for o in outputs], max_abs_diff=[o.max_abs_diff for o in outputs],
        within_tolerance=[o.within_tolerance for o in outputs], tolerance=[o.tolerance for o in outputs])

