"""A synchronous operator API over kairo_manager's actions and services.

    with KairoCommander() as kairo:
        kairo.wait_until_ready(20)
        result = kairo.train(TrainModel.Goal(dataset_id="ds_...", task="manipulation"),
                             on_feedback=print, timeout_s=600)
        if result.status == "complete":
            kairo.promote(result.model_id, result.model_version)

Like nav2_simple_commander, but every wait has a deadline (graph.wait_future)
and one generic path serves every service. Built on graph.SpinningNode; the
demo and the tests drive the manager with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from kairo_interfaces.action import ExportModel, TrainModel
from kairo_interfaces.msg import ModelEvent
from kairo_interfaces.srv import DeleteModel, GetModel, GetRun, ListModels, ListRuns, PromoteModel
from kairo_ros.testing.graph import RosTimeout, SpinningNode, wait_future, wait_until

R = TypeVar("R")

_STATUS_NAMES = {GoalStatus.STATUS_SUCCEEDED: "succeeded", GoalStatus.STATUS_CANCELED: "canceled",
                 GoalStatus.STATUS_ABORTED: "aborted", GoalStatus.STATUS_UNKNOWN: "unknown"}


@dataclass(frozen=True)
class ActionOutcome(Generic[R]):
    """How a goal ended (an action_msgs GoalStatus value) and its result."""

    status: int
    result: R

    @property
    def succeeded(self) -> bool:
        return self.status == GoalStatus.STATUS_SUCCEEDED

    @property
    def canceled(self) -> bool:
        return self.status == GoalStatus.STATUS_CANCELED

    @property
    def aborted(self) -> bool:
        return self.status == GoalStatus.STATUS_ABORTED

    @property
    def status_name(self) -> str:
        return _STATUS_NAMES.get(self.status, str(self.status))


class GoalRejected(RuntimeError):
    """The manager did not accept the goal (it runs as many goals as it can already)."""


def send_goal(ros: SpinningNode, client: ActionClient, goal: Any, what: str,
              on_feedback: Callable[[Any], None] | None = None, timeout_s: float = 10.0) -> ClientGoalHandle:
    """Send `goal` through the spinning thread (SpinningNode.on_executor says why); its handle, accepted or not.

    `on_feedback` gets each feedback message's `feedback` field.
    """
    callback = (lambda message: on_feedback(message.feedback)) if on_feedback is not None else None
    sent = ros.on_executor(lambda: client.send_goal_async(goal, feedback_callback=callback), timeout_s,
                           f"send {what} goal")
    return wait_future(sent, timeout_s, f"send {what} goal")


class RunningGoal(Generic[R]):
    """A goal sent and accepted: wait for its result, or cancel it."""

    def __init__(self, ros: SpinningNode, handle: ClientGoalHandle, what: str) -> None:
        self._ros = ros
        self._handle = handle
        self._what = what
        # Action calls go through the spinning thread (SpinningNode.on_executor says why).
        self._result_future = ros.on_executor(handle.get_result_async, 10.0, f"ask for the result of {what}")

    def cancel(self, timeout_s: float = 10.0) -> bool:
        """Ask for cancellation; True when the manager accepted the request."""
        sent = self._ros.on_executor(self._handle.cancel_goal_async, timeout_s, f"cancel {self._what}")
        answer = wait_future(sent, timeout_s, f"cancel {self._what}")
        return len(answer.goals_canceling) > 0

    def done(self) -> bool:
        """True once the goal has reached a terminal state and its result arrived."""
        return bool(self._result_future.done())

    def result(self, timeout_s: float) -> ActionOutcome[R]:
        wrapped = wait_future(self._result_future, timeout_s, f"result of {self._what}")
        return ActionOutcome(wrapped.status, wrapped.result)


class KairoCommander:
    """Drive kairo_manager (namespace `/kairo` by default) from plain code."""

    def __init__(self, node: SpinningNode | None = None, namespace: str = "/kairo", domain_id: int | None = None,
                 call_timeout_s: float = 10.0) -> None:
        """Use `node` (spun by its owner), or make and own one in `domain_id`."""
        self._own_node = node is None
        self.ros = node if node is not None else SpinningNode("kairo_commander", domain_id=domain_id)
        self.call_timeout_s = call_timeout_s
        ns = namespace.rstrip("/")
        n = self.ros.node
        self._closed = False
        self._train = self.ros.action_client(TrainModel, f"{ns}/train")
        self._export = self.ros.action_client(ExportModel, f"{ns}/export")
        self._clients = {name: n.create_client(srv, f"{ns}/{name}") for name, srv in (
            ("promote", PromoteModel), ("list_models", ListModels), ("get_model", GetModel),
            ("list_runs", ListRuns), ("get_run", GetRun), ("delete_model", DeleteModel))}
        self._events: list[ModelEvent] = []
        self._events_lock = threading.Lock()
        qos = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._events_sub = n.create_subscription(ModelEvent, f"{ns}/model_events", self._on_event, qos)

    def __enter__(self) -> KairoCommander:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Destroy what this commander made; close the node only if it made it. Idempotent."""
        if self._closed or not self.ros.context.ok():
            return
        self._closed = True
        if self._own_node:  # the node goes, and everything made on it
            self.ros.close()
            return
        # On the spinning thread: destroyed under a running wait, a client's handle fails the executor.
        self.ros.on_executor(self._destroy_endpoints, 10.0, "destroy the commander's clients")

    def _destroy_endpoints(self) -> None:
        n = self.ros.node
        self._train.destroy()
        self._export.destroy()
        for client in self._clients.values():
            n.destroy_client(client)
        n.destroy_subscription(self._events_sub)
        self._clients = {}

    def wait_until_ready(self, timeout_s: float) -> None:
        """Wait until both actions and every service of the manager are discovered."""
        self.ros.wait_for_action_server(self._train, timeout_s, "train")
        self.ros.wait_for_action_server(self._export, timeout_s, "export")
        for client in self._clients.values():
            self.ros.wait_for_service(client, timeout_s)

    # --- actions -----------------------------------------------------------------------
    def start_train(self, goal: TrainModel.Goal,
                    on_feedback: Callable[[TrainModel.Feedback], None] | None = None,
                    timeout_s: float | None = None) -> RunningGoal[TrainModel.Result]:
        return self._send(self._train, "train", goal, on_feedback, timeout_s)

    def train(self, goal: TrainModel.Goal, on_feedback: Callable[[TrainModel.Feedback], None] | None = None,
              timeout_s: float = 600.0) -> TrainModel.Result:
        """Train and wait for the end. `result.status` is complete, failed or cancelled, `message` says why;
        start_train() also gives the goal's final GoalStatus."""
        return self.start_train(goal, on_feedback).result(timeout_s).result

    def start_export(self, goal: ExportModel.Goal,
                     on_feedback: Callable[[ExportModel.Feedback], None] | None = None,
                     timeout_s: float | None = None) -> RunningGoal[ExportModel.Result]:
        return self._send(self._export, "export", goal, on_feedback, timeout_s)

    def export(self, goal: ExportModel.Goal, on_feedback: Callable[[ExportModel.Feedback], None] | None = None,
               timeout_s: float = 300.0) -> ExportModel.Result:
        """Export and wait: `result.path` is the verified file, empty on failure (`message` says why)."""
        return self.start_export(goal, on_feedback).result(timeout_s).result

    def _send(self, client: ActionClient, what: str, goal: Any, on_feedback: Callable[[Any], None] | None,
              timeout_s: float | None) -> RunningGoal[Any]:
        timeout = self.call_timeout_s if timeout_s is None else timeout_s
        self.ros.wait_for_action_server(client, timeout, what)
        handle = send_goal(self.ros, client, goal, what, on_feedback, timeout)
        if not handle.accepted:
            raise GoalRejected(f"kairo_manager rejected the {what} goal; see its log")
        return RunningGoal(self.ros, handle, what)

    # --- services ----------------------------------------------------------------------
    def promote(self, model_id: str, version: str) -> PromoteModel.Response:
        return self._call("promote", PromoteModel.Request(model_id=model_id, version=version))

    def list_models(self, robot_id: str = "", task: str = "") -> ListModels.Response:
        return self._call("list_models", ListModels.Request(robot_id=robot_id, task=task))

    def get_model(self, model_id: str) -> GetModel.Response:
        return self._call("get_model", GetModel.Request(model_id=model_id))

    def list_runs(self, model_id: str) -> ListRuns.Response:
        return self._call("list_runs", ListRuns.Request(model_id=model_id))

    def get_run(self, model_id: str, run_id: str) -> GetRun.Response:
        return self._call("get_run", GetRun.Request(model_id=model_id, run_id=run_id))

    def delete_model(self, model_id: str) -> DeleteModel.Response:
        return self._call("delete_model", DeleteModel.Request(model_id=model_id))

    def _call(self, name: str, request: Any) -> Any:
        return self.ros.call(self._clients[name], request, self.call_timeout_s)

    # --- events ------------------------------------------------------------------------
    def _on_event(self, event: ModelEvent) -> None:
        with self._events_lock:
            self._events.append(event)

    def events(self) -> list[ModelEvent]:
        """Every model event received so far (late joiners get the manager's recent history)."""
        with self._events_lock:
            return list(self._events)

    def wait_for_event(self, predicate: Callable[[ModelEvent], bool], timeout_s: float,
                       what: str = "model event") -> ModelEvent:
        found: list[ModelEvent] = []

        def seen() -> bool:
            found[:] = [e for e in self.events() if predicate(e)]
            return bool(found)

        wait_until(seen, timeout_s, what)
        return found[0]


__all__ = ["ActionOutcome", "GoalRejected", "KairoCommander", "RosTimeout", "RunningGoal"]
