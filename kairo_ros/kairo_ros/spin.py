"""Run a node until SIGINT or SIGTERM, then take everything down quietly, with exit code 0.

rclpy's own signal handlers shut the context down from inside the signal,
before the node has closed its endpoints (RCLErrors follow), and Python
then raises KeyboardInterrupt wherever the main thread happens to be
(tracebacks, exit code -2 in `ros2 launch`). So the console scripts start
rclpy without its handlers, and a SIGINT or SIGTERM, once or many times
(a terminal and `ros2 launch` both send one), only asks for a stop: the
main thread spins the executor in short waits, sees the request, and runs
the one shutdown sequence: the node's own `close()` (when it has one), the
executor, the node, rclpy.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long the executor waits before looking at the stop request: the latency of a Ctrl-C.
_WAIT_S = 0.1


class StopRequest:
    """Set by SIGINT or SIGTERM (any number of them); raises nothing, so no code is cut short."""

    def __init__(self) -> None:
        self.signals = 0

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.signals += 1

    def __bool__(self) -> bool:
        return self.signals > 0

    def install(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self)
        return self


def run(name: str, make_node: Callable[[], Node], make_executor: Callable[[], Executor],
        args: list[str] | None = None, *, usage_errors: tuple[type[Exception], ...] = ()) -> int:
    """A console script's whole life: init, make the node, spin until stopped, shut down; the exit code.

    `usage_errors`, raised while the node is made (a bad parameter), end the
    process with one line on stderr and exit code 2, never a traceback.
    """
    from rclpy.exceptions import ParameterException
    from rclpy.signals import SignalHandlerOptions

    stop = StopRequest().install()  # before anything else: a Ctrl-C during start-up is a stop request too
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # noqa: BLE001 - rclpy reports unparsable --ros-args as RCLError
        print(f"{name}: cannot start ROS 2: {_first_line(exc)}", file=sys.stderr)
        return 2
    try:
        refused: tuple[type[Exception], ...] = (*usage_errors, ParameterException)
        try:
            node = make_node()
        except refused as exc:
            print(f"{name}: {_first_line(exc)}", file=sys.stderr)
            return 2
        spin_until_shutdown(node, make_executor(), stop)
    finally:
        rclpy.try_shutdown()
        ignore_stop_signals()
    return 0


def ignore_stop_signals() -> None:
    """From here on the process only exits: Python's finalization would restore the default handlers,
    and a second Ctrl-C then would kill it (exit code -2); an ignored signal stays ignored."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def spin_until_shutdown(node: Node, executor: Executor, stop: StopRequest | None = None) -> None:
    """Spin until SIGINT, SIGTERM or a shutdown of the context, then close the node, executor and rclpy."""
    stop = stop if stop is not None else StopRequest().install()
    executor.add_node(node)
    try:
        while not stop and node.context.ok():
            executor.spin_once(timeout_sec=_WAIT_S)
    except ExternalShutdownException:
        pass
    finally:
        close = getattr(node, "close", None)
        if callable(close):
            close()
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
