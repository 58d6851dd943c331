"""Spin a node's executor until Ctrl-C or shutdown, then take everything down.

Every console script's main() wires its node and calls `spin_until_shutdown`,
so the shutdown order is written once: the node's own `close()` (when it has
one), the executor, the node, rclpy.
"""

from __future__ import annotations

import contextlib

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node


def spin_until_shutdown(node: Node, executor: Executor) -> None:
    executor.add_node(node)
    try:
        with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):
            executor.spin()
    finally:
        close = getattr(node, "close", None)
        if callable(close):
            close()
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
