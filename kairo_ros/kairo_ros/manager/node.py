"""The kairo_manager node: ROS 2 actions, services and events over the Kairo Models API.

Wiring only; the behaviour lives in train_action, export_action,
record_action, deploy_action and services. All callbacks share one reentrant group on a multi-threaded
executor, so services answer while train and export goals run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from kairo_interfaces.msg import ModelEvent
from kairo_ros.api import API_KEY_ENV, KairoCredentialsError, load_api_key
from kairo_ros.manager.backend import BackendLink
from kairo_ros.manager.deploy_action import DeployAction, DeploymentWatcher
from kairo_ros.manager.export_action import ExportAction
from kairo_ros.manager.params import declare_and_read
from kairo_ros.manager.record_action import RecordAction
from kairo_ros.manager.services import ManagerServices
from kairo_ros.manager.train_action import TrainAction

# Train and export goals each hold an executor thread while they run; the cap
# leaves threads free for services (see main.EXECUTOR_THREADS).
MAX_RUNNING_GOALS = 24
# How long a stop waits for the running goals to end (each ends within a poll of the stop, or when
# its HTTP call in flight returns) before the node, and their action servers with it, are destroyed.
GOALS_END_S = 10.0
# Then, with the executor still spinning, the time given to the ended goals' results to go out (rclpy
# sends a result from a task it schedules once the goal returned: milliseconds).
RESULTS_OUT_S = 0.5
EVENTS_QOS = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


class ManagerNode(Node):
    def __init__(self) -> None:
        super().__init__("kairo_manager", namespace="/kairo")
        self.params = declare_and_read(self)
        self._stopping = threading.Event()
        self._backend = BackendLink(self.params)
        group = ReentrantCallbackGroup()
        goal_slots = threading.BoundedSemaphore(MAX_RUNNING_GOALS)
        self._goal_slots = goal_slots
        self._event_pub = self.create_publisher(ModelEvent, "model_events", EVENTS_QOS)
        self._train_action = TrainAction(self, self._backend, self.params, group, goal_slots, self._stopping,
                                  self.publish_event)
        self._export_action = ExportAction(self, self._backend, self.params, group, goal_slots, self._stopping)
        self._record_action = RecordAction(self, self._backend, self.params, group, goal_slots, self._stopping)
        self._service_set = ManagerServices(self, self._backend, group, self.publish_event)
        self._deployments = DeploymentWatcher(self._backend, self.params.deploy_watch_period_s, self.publish_event,
                                              self._stopping, self.get_logger())
        self._deploy_action = DeployAction(self, self._backend, self.params, group, goal_slots, self._stopping,
                                           self._deployments)
        self.get_logger().info(f"kairo_manager ready: api_url={self.params.api_url}, {self._key_status()}, "
                               f"robot_id={self.params.robot_id or '(none)'}, export_dir={self.params.export_dir}")

    def _key_status(self) -> str:
        """Where the API key comes from; without one, a warning that says how to give one (never the key)."""
        try:
            load_api_key(self.params.api_key_file or None)
        except KairoCredentialsError as exc:
            self.get_logger().warning(
                f"no API key configured ({exc}); goals and services answer 'no API key' until one is given. "
                f"The embedded backend makes one with `kairo-backend keys create --workspace <name> --data-dir "
                f"<its data dir>`")
            return "no API key yet"
        return f"API key from key file {self.params.api_key_file}" if self.params.api_key_file \
            else f"API key from ${API_KEY_ENV}"

    def publish_event(self, event: str, model_id: str, version: str, robot_id: str, task: str,
                      robots: Sequence[str] = ()) -> None:
        """One ModelEvent; `robots`: the robots a deployment event concerns (empty: all)."""
        self._event_pub.publish(ModelEvent(stamp=self.get_clock().now().to_msg(), event=event, model_id=model_id,
                                        version=version, robot_id=robot_id, task=task, robots=list(robots)))

    def before_stop(self) -> None:
        """A stop was asked for and the executor still spins: end the running goals (aborted, saying why; their
        runs go on on the backend) and let their results reach their clients."""
        self._stopping.set()
        if self._wait_for_goals(GOALS_END_S):
            time.sleep(RESULTS_OUT_S)

    def close(self) -> None:
        """Stop following goals, wait until they ended, and close the HTTP client. Idempotent. A goal still
        running when its action server is destroyed would fail to report its end (an RCLError)."""
        self._stopping.set()
        self._wait_for_goals(GOALS_END_S)
        self._backend.close()

    def _wait_for_goals(self, timeout_s: float) -> bool:
        """Until every goal slot is free again (no goal is accepted once stopping), or the time is up;
        whether any goal was running."""
        deadline = time.monotonic() + timeout_s
        held = 0
        while held < MAX_RUNNING_GOALS and self._goal_slots.acquire(blocking=False):
            held += 1
        were_running = held < MAX_RUNNING_GOALS
        while held < MAX_RUNNING_GOALS and self._goal_slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            held += 1
        for _ in range(held):
            self._goal_slots.release()
        if held < MAX_RUNNING_GOALS:
            self.get_logger().warning(f"{MAX_RUNNING_GOALS - held} goals still running after {timeout_s:g} s; "
                                      "stopping without them")
        return were_running
