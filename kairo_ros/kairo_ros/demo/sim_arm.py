"""kairo_sim_arm: a simulated planar 3-link arm for the demo.

It publishes its joint states and a target point moving on a circle, and
takes position commands as a ros2_control forward command controller
does: each command on `/arm_controller/commands` becomes the joint
positions. With a good model in the loop the hand follows the target.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from kairo_ros.spin import run

JOINT_NAMES = ["shoulder", "elbow", "wrist"]


@dataclass(frozen=True)
class SimArmParams:
    rate_hz: float
    link_lengths: tuple[float, ...]
    target_center: tuple[float, ...]
    target_radius: float
    target_period_s: float


def hand_position(q: list[float], links: tuple[float, ...]) -> tuple[float, float]:
    """Forward kinematics of the planar arm: joint angles -> hand (x, y)."""
    x = y = angle = 0.0
    for qi, length in zip(q, links, strict=True):
        angle += qi
        x += length * math.cos(angle)
        y += length * math.sin(angle)
    return x, y


class SimArm(Node):
    def __init__(self) -> None:
        super().__init__("kairo_sim_arm")
        self.params = self._declare_params()
        self.q = [0.3, 0.6, 0.3]
        self.commands_received = 0
        self.command_errors = 0
        self._t = 0.0
        self._joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self._target_pub = self.create_publisher(PointStamped, "target_point", 10)
        self.create_subscription(Float64MultiArray, "arm_controller/commands", self._on_command, 10)
        self.create_timer(1.0 / self.params.rate_hz, self._tick)

    def _declare_params(self) -> SimArmParams:
        def declare(name: str, default: object, description: str) -> object:
            return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

        return SimArmParams(
            rate_hz=float(declare("rate_hz", 50.0, "Joint state and target publishing rate (Hz).")),  # type: ignore[arg-type]
            link_lengths=tuple(declare("link_lengths", [0.4, 0.3, 0.2], "Link lengths (m).")),  # type: ignore[arg-type]
            target_center=tuple(declare("target_center", [0.45, 0.25], "Centre of the target circle (m).")),  # type: ignore[arg-type]
            target_radius=float(declare("target_radius", 0.15, "Radius of the target circle (m).")),  # type: ignore[arg-type]
            target_period_s=float(declare("target_period_s", 8.0, "Seconds per target revolution.")),  # type: ignore[arg-type]
        )

    def target(self) -> tuple[float, float]:
        phase = 2 * math.pi * self._t / self.params.target_period_s
        cx, cy = self.params.target_center
        return cx + self.params.target_radius * math.cos(phase), cy + self.params.target_radius * math.sin(phase)

    def _tick(self) -> None:
        self._t += 1.0 / self.params.rate_hz
        stamp = self.get_clock().now().to_msg()
        target = PointStamped()
        target.header.stamp = stamp
        target.header.frame_id = "base_link"
        target.point.x, target.point.y = self.target()
        self._target_pub.publish(target)
        joints = JointState(name=JOINT_NAMES, position=list(self.q))
        joints.header.stamp = stamp
        self._joint_pub.publish(joints)

    def _on_command(self, msg: Float64MultiArray) -> None:
        values = list(msg.data)
        if len(values) != len(self.q) or not all(math.isfinite(v) for v in values):
            self.command_errors += 1
            self.get_logger().warning(f"ignored a command of {len(values)} values; expected {len(self.q)} finite")
            return
        self.q = values
        self.commands_received += 1


def main() -> None:
    sys.exit(run("kairo_sim_arm", SimArm, SingleThreadedExecutor, sys.argv))
