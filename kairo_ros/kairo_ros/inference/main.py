"""Entry point of the `kairo_inference` console script: wire and spin."""

from __future__ import annotations

import sys

from rclpy.executors import MultiThreadedExecutor

from kairo_ros.api import KairoError
from kairo_ros.inference.node import InferenceNode
from kairo_ros.parameters import ParameterError
from kairo_ros.spin import run


def main(args: list[str] | None = None) -> None:
    sys.exit(run("kairo_inference", InferenceNode, MultiThreadedExecutor, args,
                 usage_errors=(KairoError, ParameterError)))


if __name__ == "__main__":
    main()
