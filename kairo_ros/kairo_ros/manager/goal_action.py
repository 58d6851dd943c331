"""What every action server of kairo_manager shares: goal slots, the last guard, one terminal state.

All actions draw from one pool of goal slots: a goal is rejected while the
manager stops or when no slot is free, and its slot is released when its run
returns, however it ends. A subclass gives its `kind` (the action's name),
its `action_type`, `_run` (one goal, to its end) and `_failed_result`.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar, Generic, TypeVar

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from kairo_ros.manager.backend import BackendLink
from kairo_ros.manager.params import ManagerParams

ResultT = TypeVar("ResultT")


class ManagerStopping(Exception):
    """The manager is shutting down while a goal runs."""


class GoalSlotAction(Generic[ResultT]):
    kind: ClassVar[str]
    action_type: ClassVar[Any]

    def __init__(self, node: Node, backend: BackendLink, params: ManagerParams, group: CallbackGroup,
                 goal_slots: threading.BoundedSemaphore, stopping: threading.Event) -> None:
        self._log = node.get_logger()
        self._backend = backend
        self._params = params
        self._slots = goal_slots
        self._stopping = stopping
        self._server = ActionServer(node, self.action_type, self.kind, execute_callback=self._execute,
                                    goal_callback=self._on_goal, cancel_callback=self._on_cancel,
                                    callback_group=group)

    def destroy(self) -> None:
        self._server.destroy()

    def _run(self, handle: ServerGoalHandle) -> ResultT:
        raise NotImplementedError

    def _failed_result(self, message: str) -> ResultT:
        """The result of a goal that ended without doing its work, saying why."""
        raise NotImplementedError

    # --- goal lifecycle ----------------------------------------------------------------
    def _on_goal(self, _goal: Any) -> GoalResponse:
        if self._stopping.is_set() or not self._slots.acquire(blocking=False):
            self._log.warning(f"{self.kind} goal rejected: too many goals running at once; retry when one ends")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, _handle: ServerGoalHandle) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _execute(self, handle: ServerGoalHandle) -> ResultT:
        try:
            return self._run(handle)
        except Exception as exc:  # noqa: BLE001 - last guard: the node lives and the goal still ends
            self._log.error(f"{self.kind} goal failed unexpectedly: {type(exc).__name__}: {exc}")
            return self._end(handle, "abort", self._failed_result(f"internal error in kairo_manager: {exc}"))
        finally:
            self._slots.release()

    # --- helpers ------------------------------------------------------------------------
    def _pause(self, handle: ServerGoalHandle) -> None:
        """Wait one poll period; return early on cancel, raise ManagerStopping on shutdown."""
        deadline = time.monotonic() + self._params.poll_period_s
        while time.monotonic() < deadline and not handle.is_cancel_requested:
            if self._stopping.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                raise ManagerStopping()
        if self._stopping.is_set():
            raise ManagerStopping()

    @staticmethod
    def _end(handle: ServerGoalHandle, how: str, result: ResultT) -> ResultT:
        """Reach the one terminal state `how` (succeed | canceled | abort), if the goal is still active."""
        if handle.is_active:
            getattr(handle, how)()
        return result
