"""Action `deploy` (DeployModel): roll a version out to some robots (canary) or beside their model (shadow).

A goal creates one deployment (POST, never repeated) and publishes a
`deployed` ModelEvent naming its robots. Then:

- `wait_for_complete` true: the goal follows the deployment every
  `poll_period_s`, with feedback (robots reporting the version / targeted,
  each robot's guard state), until it is complete (succeeded), rolled back
  or cancelled (aborted, with the backend's reason).
- `wait_for_complete` false: the goal succeeds as soon as the deployment
  exists; the result's state is the one it was created in (rolling_out).

Cancelling a goal rolls its deployment back (the robots return to the
model's active version) and ends the goal cancelled. Either way the
`DeploymentWatcher` keeps an eye on every deployment this manager made, every
`deploy_watch_period_s`, so a rollback the backend decides by itself (a guard
crossed) and a promote of the deployment (the whole fleet widened to its
version) are published as `rolled_back` and `widened` events too.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from kairo_interfaces.action import DeployModel
from kairo_interfaces.msg import ModelEvent
from kairo_ros.api import (
    DEPLOYMENT_COMPLETE,
    DEPLOYMENT_MODES,
    DEPLOYMENT_ROLLED_BACK,
    Deployment,
    DeploymentGuard,
    DeploymentRequest,
    KairoApiClient,
    KairoConflictError,
    KairoConnectionError,
    KairoError,
    KairoNotFoundError,
    KairoRateLimitedError,
    KairoServerError,
)
from kairo_ros.manager.backend import BackendLink
from kairo_ros.manager.goal_action import GoalSlotAction, ManagerStopping
from kairo_ros.manager.params import ManagerParams

_TRANSIENT = (KairoConnectionError, KairoServerError, KairoRateLimitedError)
_VERSION = re.compile(r"^v[1-9][0-9]*$")
_REACHED = ("serving", "shadowing")
# (event, model_id, version, robot_id, task, robots)
FleetEventSink = Callable[[str, str, str, str, str, Sequence[str]], None]


@dataclass
class _Watched:
    model_id: str
    robot_id: str           # the model's robot and task, for the events
    task: str
    state: str
    version: str
    robots: tuple[str, ...]


class DeploymentWatcher:
    """Publishes a ModelEvent for each change of the deployments this manager made, once each."""

    def __init__(self, backend: BackendLink, period_s: float, publish_event: FleetEventSink,
                 stopping: threading.Event, log: Any) -> None:
        self._backend = backend
        self._period_s = period_s
        self._publish_event = publish_event
        self._stopping = stopping
        self._log = log
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}
        self._thread = threading.Thread(target=self._run, name="kairo-manager-deployments", daemon=True)
        self._thread.start()

    def created(self, deployment: Deployment) -> None:
        """A deployment this manager just made: publish `deployed` and watch it."""
        model = self._backend.call(lambda api: api.get_model(deployment.model_id))
        watched = _Watched(deployment.model_id, model.robot_id, model.task, deployment.state, deployment.version,
                           deployment.robots)
        with self._lock:
            self._watched[deployment.id] = watched
        self._publish(ModelEvent.DEPLOYED, watched, deployment.robots)
        self.update(deployment)

    def update(self, deployment: Deployment) -> None:
        """The deployment as just read: publish what changed since it was last seen."""
        with self._lock:
            watched = self._watched.get(deployment.id)
            if watched is None or watched.state == deployment.state:
                return
            watched.state = deployment.state
            if not deployment.live:
                del self._watched[deployment.id]
        if deployment.state == DEPLOYMENT_ROLLED_BACK:
            self._log.warning(f"deployment {deployment.id} of {deployment.model_id} {deployment.version} "
                              f"rolled back: {deployment.reason}")
            self._publish(ModelEvent.ROLLED_BACK, watched, deployment.robots)

    def _check_widened(self, deployment_id: str, watched: _Watched) -> None:
        model = self._backend.call(lambda api: api.get_model(watched.model_id))
        if model.active_version != watched.version:
            return
        with self._lock:
            self._watched.pop(deployment_id, None)
        self._publish(ModelEvent.WIDENED, watched, ())  # every robot serves it now

    def _publish(self, event: str, watched: _Watched, robots: Sequence[str]) -> None:
        self._publish_event(event, watched.model_id, watched.version, watched.robot_id, watched.task, robots)

    def _run(self) -> None:
        while not self._stopping.wait(self._period_s):
            with self._lock:
                watched = dict(self._watched)
            for deployment_id, entry in watched.items():
                try:
                    self._check(deployment_id, entry)
                except KairoNotFoundError:  # its model was deleted: nothing left to watch
                    with self._lock:
                        self._watched.pop(deployment_id, None)
                    self._log.info(f"deployment {deployment_id} of {entry.model_id} is gone; no longer watched")
                except KairoError as exc:
                    self._log.debug(f"deployment {deployment_id} not checked: {exc}")

    def _check(self, deployment_id: str, entry: _Watched) -> None:
        deployment = self._backend.call(lambda api: api.get_deployment(entry.model_id, deployment_id))
        self.update(deployment)
        if deployment.state == DEPLOYMENT_COMPLETE:
            self._check_widened(deployment_id, entry)


class DeployAction(GoalSlotAction[DeployModel.Result]):
    kind = "deploy"
    action_type = DeployModel

    def __init__(self, node: Node, backend: BackendLink, params: ManagerParams, group: CallbackGroup,
                 goal_slots: threading.BoundedSemaphore, stopping: threading.Event,
                 watcher: DeploymentWatcher) -> None:
        self._watcher = watcher
        super().__init__(node, backend, params, group, goal_slots, stopping)

    def _failed_result(self, message: str) -> DeployModel.Result:
        return DeployModel.Result(success=False, reason=message)

    def _run(self, handle: ServerGoalHandle) -> DeployModel.Result:
        goal = handle.request
        model_id = goal.model_id.strip()
        request, problem = request_from_goal(goal)
        if request is None:
            self._log.warning(f"deploy goal aborted: {problem}")
            return self._end(handle, "abort", self._failed_result(problem))
        try:
            deployment = self._backend.call(lambda api: api.create_deployment(model_id, request))
        except KairoError as exc:
            self._log.warning(f"deployment refused: {exc}")
            return self._end(handle, "abort", self._failed_result(str(exc)))
        self._log.info(f"deployment {deployment.id}: {model_id} {deployment.version} ({deployment.mode}) to "
                       f"{', '.join(deployment.robots) or 'no robot'}")
        try:
            self._watcher.created(deployment)
        except KairoError as exc:  # the deployment exists: only its event is missing
            self._log.warning(f"deployed event of {deployment.id} not published: {exc}")
        handle.publish_feedback(deploy_feedback(deployment))
        if not goal.wait_for_complete:
            return self._end(handle, "succeed", deploy_result(deployment, True))
        try:
            return self._follow(handle, deployment)
        except ManagerStopping:
            return self._end(handle, "abort", deploy_result(
                deployment, False, f"kairo_manager stopped while following {deployment.id}; the deployment "
                                   f"goes on on the backend"))

    def _follow(self, handle: ServerGoalHandle, deployment: Deployment) -> DeployModel.Result:
        model_id, deployment_id = deployment.model_id, deployment.id
        outage_since: float | None = None
        while True:
            try:
                if handle.is_cancel_requested:
                    deployment = self._backend.call(lambda api: self._rollback(api, model_id, deployment_id))
                    self._watcher.update(deployment)
                    self._log.info(f"deployment {deployment_id} rolled back on the goal's cancel")
                    return self._end(handle, "canceled", deploy_result(deployment, False))
                deployment = self._backend.call(lambda api: api.get_deployment(model_id, deployment_id))
                outage_since = None
            except _TRANSIENT as exc:
                outage_since = outage_since or time.monotonic()
                if time.monotonic() - outage_since > self._params.max_outage_s:
                    return self._end(handle, "abort", deploy_result(
                        deployment, False, f"gave up after {self._params.max_outage_s:g} s without the backend "
                                           f"({exc}); deployment {deployment_id} goes on"))
            except KairoError as exc:
                return self._end(handle, "abort", deploy_result(deployment, False,
                                                                f"following {deployment_id} failed: {exc}"))
            else:
                self._watcher.update(deployment)
                if deployment.state == DEPLOYMENT_COMPLETE:
                    return self._end(handle, "succeed", deploy_result(deployment, True))
                if not deployment.live:
                    return self._end(handle, "abort", deploy_result(deployment, False))
                handle.publish_feedback(deploy_feedback(deployment))
            self._pause(handle)

    @staticmethod
    def _rollback(api: KairoApiClient, model_id: str, deployment_id: str) -> Deployment:
        try:
            return api.rollback_deployment(model_id, deployment_id)
        except KairoConflictError:  # it ended before the cancel arrived: report how
            return api.get_deployment(model_id, deployment_id)


def request_from_goal(goal: DeployModel.Goal) -> tuple[DeploymentRequest | None, str]:
    """The API request a goal asks for, or None and what is wrong with the goal."""
    if not goal.model_id.strip():
        return None, "model_id is empty; give the mdl_... ID of the model to deploy"
    version = goal.version.strip()
    if not _VERSION.match(version):
        return None, f"version {version!r} is not a version name; use vN, e.g. v2"
    mode = goal.mode.strip() or "active"
    if mode not in DEPLOYMENT_MODES:
        return None, f"mode {mode!r} is unknown; use one of {', '.join(DEPLOYMENT_MODES)}"
    robots = tuple(r.strip() for r in goal.robots if r.strip())
    if goal.percent and robots:
        return None, "name the robots or a percent, not both"
    if not 0 <= goal.percent <= 100:
        return None, f"percent {goal.percent} must be within 0..100 (0: not used)"
    rates = {"max_error_rate": goal.max_error_rate, "max_drop_rate": goal.max_drop_rate}
    for name, value in rates.items():
        if not 0 <= value <= 1:
            return None, f"{name} {value} must be a share within 0..1 (0: the API's default)"
    for name, value in (("min_observation_s", goal.min_observation_s), ("report_within_s", goal.report_within_s)):
        if value < 0 or value != value:
            return None, f"{name} must be 0 (the API's default) or a positive number of seconds"
    if goal.max_divergence != goal.max_divergence:
        return None, "max_divergence is NaN; give a number (<= 0: not checked)"
    guard = DeploymentGuard(max_error_rate=goal.max_error_rate or None, max_drop_rate=goal.max_drop_rate or None,
                            max_divergence=goal.max_divergence if goal.max_divergence > 0 else None,
                            min_observation_s=goal.min_observation_s or None,
                            report_within_s=goal.report_within_s or None)
    return DeploymentRequest(version=version, mode=mode, robots=robots, percent=goal.percent or None,
                             guard=guard), ""


def _guard_state(deployment: Deployment) -> str:
    lines = []
    for p in deployment.progress:
        line = f"{p.robot_id}: {p.status}" + (f" {p.version}" if p.version else "")
        lines.append(line + (f" ({p.reason})" if p.reason else ""))
    return "; ".join(lines)


def deploy_feedback(deployment: Deployment) -> DeployModel.Feedback:
    reporting = sum(1 for p in deployment.progress if p.status in _REACHED)
    return DeployModel.Feedback(deployment_id=deployment.id, state=deployment.state, robots_reporting=reporting,
                                robots_targeted=len(deployment.robots), guard_state=_guard_state(deployment))


def deploy_result(deployment: Deployment, success: bool, reason: str = "") -> DeployModel.Result:
    return DeployModel.Result(success=success, deployment_id=deployment.id, state=deployment.state,
                              reason=reason or deployment.reason or _guard_state(deployment))
