"""A minimal server of kairo_interfaces types, for the transport tests.

It checks that our generated action and service types cross process
boundaries over DDS (goal, feedback, result, cancel; request and reply).
It trains nothing: the real server of these types is kairo_manager, whose
tests run against the real backend.
"""

import sys
import time

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from kairo_interfaces.action import TrainModel
from kairo_interfaces.srv import PromoteModel
from kairo_ros.spin import spin_until_shutdown


class TransportCheckServer(Node):
    def __init__(self) -> None:
        super().__init__("transport_check_server", namespace="/kairo")
        group = ReentrantCallbackGroup()
        self._train = ActionServer(
            self, TrainModel, "train", execute_callback=self._execute,
            goal_callback=self._accept, cancel_callback=lambda _g: CancelResponse.ACCEPT,
            callback_group=group)
        self._promote = self.create_service(PromoteModel, "promote", self._on_promote,
                                            callback_group=group)

    def _accept(self, goal: TrainModel.Goal) -> GoalResponse:
        return GoalResponse.ACCEPT if goal.dataset_id else GoalResponse.REJECT

    def _execute(self, handle):  # type: ignore[no-untyped-def]
        epochs = handle.request.config.epochs
        for epoch in range(1, epochs + 1):
            if handle.is_cancel_requested:
                handle.canceled()
                return TrainModel.Result(status="cancelled", message=f"cancelled at epoch {epoch}")
            handle.publish_feedback(TrainModel.Feedback(
                status="running", epoch=epoch, epochs_total=epochs, loss=1.0 / epoch))
            time.sleep(0.1)
        handle.succeed()
        result = TrainModel.Result(status="complete", model_version="v1", message="done")
        result.metrics.epochs_run = epochs
        return result

    def _on_promote(self, request: PromoteModel.Request, response: PromoteModel.Response):  # type: ignore[no-untyped-def]
        response.success = request.version.startswith("v")
        response.message = "ok" if response.success else "version must look like vN"
        response.model.id = request.model_id
        response.model.active_version = request.version if response.success else ""
        return response


def main() -> None:
    rclpy.init(args=sys.argv)
    spin_until_shutdown(TransportCheckServer(), MultiThreadedExecutor())


if __name__ == "__main__":
    main()
