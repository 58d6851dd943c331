"""Entry point of the `kairo_manager` console script: wire and spin."""

from __future__ import annotations

import sys

from rclpy.executors import MultiThreadedExecutor

from kairo_ros.api import KairoError
from kairo_ros.manager.node import MAX_RUNNING_GOALS, ManagerNode
from kairo_ros.parameters import ParameterError
from kairo_ros.spin import run

# Goals block a thread each while they run; the rest serve services and cancels.
EXECUTOR_THREADS = MAX_RUNNING_GOALS + 8


def main(args: list[str] | None = None) -> None:
    sys.exit(run("kairo_manager", ManagerNode, lambda: MultiThreadedExecutor(num_threads=EXECUTOR_THREADS), args,
                 usage_errors=(KairoError, ParameterError)))


if __name__ == "__main__":
    main()
