"""Entry point of the `kairo_manager` console script: wire and spin."""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import MultiThreadedExecutor

from kairo_ros.api import KairoError
from kairo_ros.manager.node import MAX_RUNNING_GOALS, ManagerNode
from kairo_ros.spin import spin_until_shutdown

# Goals block a thread each while they run; the rest serve services and cancels.
EXECUTOR_THREADS = MAX_RUNNING_GOALS + 8


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    try:
        node = ManagerNode()
    except KairoError as exc:
        print(f"kairo_manager: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        sys.exit(2)
    spin_until_shutdown(node, MultiThreadedExecutor(num_threads=EXECUTOR_THREADS))


if __name__ == "__main__":
    main()
