"""Entry point of the `kairo_inference` console script: wire and spin."""

from __future__ import annotations

import rclpy
from rclpy.executors import MultiThreadedExecutor

from kairo_ros.inference.node import InferenceNode
from kairo_ros.spin import spin_until_shutdown


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = InferenceNode()
    spin_until_shutdown(node, MultiThreadedExecutor())


if __name__ == "__main__":
    main()
