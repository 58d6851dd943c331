"""The simulated arm's scripted expert: the demonstrations a model is cloned from.

On each joint state it publishes the next position command toward the
latest target: one damped least-squares (resolved-rate IK) step, gain 0.2,
damping 0.1, plus 0.1 of the way to the rest pose (0, 1, 1) rad in the
arm's null space, no joint moving more than 0.2 rad: the same rule that
labels the backend's built-in manipulation dataset (docs/features.md). Run
beside kairo_sim_arm, it drives the arm as a teleoperator would, and
/kairo/record records what it did.

    python -m kairo_ros.demo.expert
"""

from __future__ import annotations

import sys

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from kairo_ros.spin import run

LINKS = np.array([0.4, 0.3, 0.2])
REST_POSE = np.array([0.0, 1.0, 1.0])


def expert_step(q: np.ndarray, target: np.ndarray, gain: float = 0.2, max_step: float = 0.2,
                damping: float = 0.1, null_gain: float = 0.1) -> np.ndarray:
    """The next joint command for joint angles q [3] and a target (x, y)."""
    angles = np.cumsum(q)
    s, c = LINKS * np.sin(angles), LINKS * np.cos(angles)
    # d(x, y)/dq_j sums over the links from j outward
    jac = np.stack([-np.cumsum(s[::-1])[::-1], np.cumsum(c[::-1])[::-1]])  # [2, 3]
    pinv = jac.T @ np.linalg.inv(jac @ jac.T + damping**2 * np.eye(2))
    hand = np.array([c.sum(), s.sum()])
    dq = gain * pinv @ (target - hand) + null_gain * (np.eye(3) - pinv @ jac) @ (REST_POSE - q)
    return np.asarray(q + dq * min(1.0, max_step / max(float(np.abs(dq).max()), 1e-9)))


class ArmExpert(Node):
    def __init__(self) -> None:
        super().__init__("kairo_arm_expert")
        self._target: np.ndarray | None = None
        # One command per joint state: a stalled process catches up instead of skipping states (the
        # arm publishes them reliable, so a reliable KEEP_ALL reader matches), and a second of commands
        # (50 Hz) waits for a slow reader.
        self._pub = self.create_publisher(Float64MultiArray, "arm_controller/commands", 50)
        self.create_subscription(PointStamped, "target_point", self._on_target, 10)
        self.create_subscription(JointState, "joint_states", self._on_joints,
                                 QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE))

    def _on_target(self, msg: PointStamped) -> None:
        self._target = np.array([msg.point.x, msg.point.y])

    def _on_joints(self, msg: JointState) -> None:
        if self._target is None or len(msg.position) != len(LINKS):
            return
        command = expert_step(np.asarray(msg.position, dtype=float), self._target)
        self._pub.publish(Float64MultiArray(data=[float(v) for v in command]))


def main() -> None:
    sys.exit(run("kairo_arm_expert", ArmExpert, SingleThreadedExecutor, sys.argv))


if __name__ == "__main__":
    main()
