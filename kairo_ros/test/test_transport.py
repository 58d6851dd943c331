"""Our action and service types across two processes over real DDS."""

import os
import time

from action_msgs.msg import GoalStatus

from conftest import python_node
from kairo_interfaces.action import TrainModel
from kairo_interfaces.srv import PromoteModel
from kairo_ros.testing.commander import RunningGoal, send_goal


def start_server(processes, ros):  # type: ignore[no-untyped-def]
    server = python_node(processes, "transport_check_server.py")
    processes.wait_until(lambda: "/kairo/transport_check_server" in ros.node_names(), 60,
                         "node /kairo/transport_check_server", watch=server)
    return server


def test_train_goal_feedback_result(processes, ros) -> None:  # type: ignore[no-untyped-def]
    server = start_server(processes, ros)
    client = ros.action_client(TrainModel, "/kairo/train")
    ros.wait_for_action_server(client, 60, "/kairo/train")
    feedback: list[TrainModel.Feedback] = []
    goal = TrainModel.Goal(dataset_id="ds_transport", task="manipulation")
    goal.config.epochs = 4
    handle = send_goal(ros, client, goal, "train", feedback.append)
    assert handle.accepted
    outcome = RunningGoal[TrainModel.Result](ros, handle, "train").result(60)
    assert outcome.status == GoalStatus.STATUS_SUCCEEDED
    assert outcome.result.status == "complete"
    assert outcome.result.metrics.epochs_run == 4
    assert [f.epoch for f in feedback] == [1, 2, 3, 4]
    assert feedback[-1].loss == 0.25
    assert server.alive


def test_rejected_goal_and_cancel(processes, ros) -> None:  # type: ignore[no-untyped-def]
    start_server(processes, ros)
    client = ros.action_client(TrainModel, "/kairo/train")
    ros.wait_for_action_server(client, 60, "/kairo/train")
    rejected = send_goal(ros, client, TrainModel.Goal(), "empty train")
    assert not rejected.accepted

    goal = TrainModel.Goal(dataset_id="ds_transport")
    goal.config.epochs = 200
    seen: list[int] = []
    handle = send_goal(ros, client, goal, "train", lambda feedback: seen.append(feedback.epoch))
    running = RunningGoal[TrainModel.Result](ros, handle, "train")
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(seen) >= 2, "no feedback before cancelling"
    assert running.cancel(10)
    outcome = running.result(30)
    assert outcome.status == GoalStatus.STATUS_CANCELED
    assert outcome.result.status == "cancelled"
    assert max(seen) < 200


def test_promote_service_across_processes(processes, ros) -> None:  # type: ignore[no-untyped-def]
    server = start_server(processes, ros)
    client = ros.node.create_client(PromoteModel, "/kairo/promote")
    ok = ros.call(client, PromoteModel.Request(model_id="mdl_x", version="v2"), 60)  # discovery included
    assert ok.success and ok.model.active_version == "v2" and ok.model.id == "mdl_x"
    bad = ros.call(client, PromoteModel.Request(model_id="mdl_x", version="2"), 20)
    assert not bad.success and "vN" in bad.message
    processes.stop_all()
    assert not server.alive
    assert not os.path.exists(f"/proc/{server.popen.pid}")
