"""Action `train` (TrainModel): submit a training run, follow it, cancel it on request.

Each goal runs in its own executor thread: submit once (never resubmitted),
then poll the run every `poll_period_s`, publishing feedback, until the run
ends. Cancel is checked on every pass. An unreachable backend does not end
the goal: it keeps polling for up to `max_outage_s`. Every path ends in
exactly one terminal state.

Goals that cannot be trained (empty dataset_id, unknown task, ...) are
accepted and then aborted with a message, because a rejected goal carries
no reason back to the caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from kairo_interfaces.action import TrainModel
from kairo_interfaces.msg import ModelEvent
from kairo_ros.api import (
    RUN_CANCELLED,
    RUN_COMPLETE,
    RUN_FAILED,
    TASKS,
    KairoApiClient,
    KairoConflictError,
    KairoConnectionError,
    KairoError,
    KairoRateLimitedError,
    KairoServerError,
    Run,
    TrainRequest,
)
from kairo_ros.manager.backend import BackendLink
from kairo_ros.manager.conversions import config_from_msg, train_feedback, train_result
from kairo_ros.manager.goal_action import GoalSlotAction, ManagerStopping
from kairo_ros.manager.params import ManagerParams

# Failures that may pass by themselves: keep polling through them.
_TRANSIENT = (KairoConnectionError, KairoServerError, KairoRateLimitedError)
EventSink = Callable[[str, str, str, str, str], None]


class TrainAction(GoalSlotAction[TrainModel.Result]):
    kind = "train"
    action_type = TrainModel

    def __init__(self, node: Node, backend: BackendLink, params: ManagerParams, group: CallbackGroup,
                 goal_slots: threading.BoundedSemaphore, stopping: threading.Event, publish_event: EventSink) -> None:
        self._publish_event = publish_event
        super().__init__(node, backend, params, group, goal_slots, stopping)

    def _failed_result(self, message: str) -> TrainModel.Result:
        return TrainModel.Result(status=RUN_FAILED, message=message)

    def _run(self, handle: ServerGoalHandle) -> TrainModel.Result:
        request, problem = self._request_from(handle.request)
        if request is None:
            self._log.warning(f"train goal aborted: {problem}")
            return self._end(handle, "abort", self._failed_result(problem))
        try:
            accepted = self._backend.call(lambda api: api.train(request))
        except KairoError as exc:
            self._log.warning(f"train request refused: {exc}")
            return self._end(handle, "abort", self._failed_result(str(exc)))
        self._log.info(f"run {accepted.run_id} of model {accepted.model_id} queued "
                       f"(position {accepted.position_in_queue}) on dataset {request.dataset_id}")
        run = Run(run_id=accepted.run_id, model_id=accepted.model_id, status=accepted.status,
                  position_in_queue=accepted.position_in_queue)
        handle.publish_feedback(train_feedback(run))
        try:
            return self._poll_until_finished(handle, run, request)
        except ManagerStopping:
            message = (f"kairo_manager stopped while following run {run.run_id}; the run goes on "
                       f"on the backend (get_run {run.model_id} {run.run_id})")
            return self._end(handle, "abort", train_result(run, message))

    def _poll_until_finished(self, handle: ServerGoalHandle, run: Run, request: TrainRequest) -> TrainModel.Result:
        model_id, run_id = run.model_id, run.run_id
        outage_since: float | None = None
        while True:
            try:
                if handle.is_cancel_requested:
                    run = self._backend.call(lambda api: self._cancel(api, model_id, run_id))
                else:
                    run = self._backend.call(lambda api: api.get_run(model_id, run_id))
                if outage_since is not None:
                    self._log.info(f"backend reachable again after {time.monotonic() - outage_since:.1f} s; "
                                   f"following run {run.run_id}")
                    outage_since = None
            except _TRANSIENT as exc:
                if outage_since is None:
                    outage_since = time.monotonic()
                    self._log.warning(f"run {run.run_id}: {exc}; polling on for up to {self._params.max_outage_s:g} s")
                elif time.monotonic() - outage_since > self._params.max_outage_s:
                    message = (f"gave up after {self._params.max_outage_s:g} s without the backend ({exc}); "
                               f"run {run.run_id} of model {run.model_id} may still go on: ask get_run")
                    return self._end(handle, "abort", train_result(run, message))
            except KairoError as exc:
                return self._end(handle, "abort", train_result(run, f"following run {run.run_id} failed: {exc}"))
            else:
                if run.finished:
                    return self._finish(handle, run, request)
                handle.publish_feedback(train_feedback(run))
            self._pause(handle)

    @staticmethod
    def _cancel(api: KairoApiClient, model_id: str, run_id: str) -> Run:
        try:
            return api.cancel_run(model_id, run_id)
        except KairoConflictError:
            # It ended before the cancel arrived: report how it ended.
            return api.get_run(model_id, run_id)

    def _finish(self, handle: ServerGoalHandle, run: Run, request: TrainRequest) -> TrainModel.Result:
        if run.status == RUN_COMPLETE:
            self._log.info(f"run {run.run_id} complete: model {run.model_id} {run.model_version}")
            self._publish_event(ModelEvent.TRAINED, run.model_id, run.model_version, request.robot_id, request.task)
            return self._end(handle, "succeed", train_result(run, f"{run.model_id} {run.model_version} trained"))
        if run.status == RUN_CANCELLED and handle.is_cancel_requested:
            self._log.info(f"run {run.run_id} cancelled on request")
            return self._end(handle, "canceled", train_result(run, f"run {run.run_id} cancelled"))
        why = run.error or "no reason given"
        self._log.warning(f"run {run.run_id} ended {run.status}: {why}")
        return self._end(handle, "abort", train_result(run, f"run {run.run_id} {run.status}: {why}"))

    # --- helpers ------------------------------------------------------------------------
    def _request_from(self, goal: TrainModel.Goal) -> tuple[TrainRequest | None, str]:
        dataset_id = goal.dataset_id.strip()
        robot_id = goal.robot_id.strip() or self._params.robot_id
        task = goal.task.strip()
        if not dataset_id:
            return None, "dataset_id is empty; give the ds_... ID of a dataset of this workspace"
        if not robot_id:
            return None, "robot_id is empty and the manager has no robot_id parameter; give one of them"
        if task not in TASKS:
            return None, f"task {task!r} is unknown; use one of {', '.join(TASKS)}"
        if goal.config.learning_rate < 0 or goal.config.learning_rate != goal.config.learning_rate:
            return None, "config.learning_rate must be positive (or 0 for the backend's default)"
        return TrainRequest(dataset_id=dataset_id, robot_id=robot_id, task=task, name=goal.name.strip(),
                            architecture=goal.architecture.strip(), config=config_from_msg(goal.config)), ""
