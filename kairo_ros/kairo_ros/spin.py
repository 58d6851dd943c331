"""Run a node until SIGINT or SIGTERM, then take everything down quietly, with exit code 0.

rclpy's own signal handlers shut the context down from inside the signal,
before the node has closed its endpoints (RCLErrors follow), and Python
then raises KeyboardInterrupt wherever the main thread happens to be
(tracebacks, exit code -2 in `ros2 launch`). So the console scripts start
rclpy without its handlers, and a SIGINT or SIGTERM, once or many times
(a terminal and `ros2 launch` both send one), only asks for a stop. The
executor spins on a thread of its own exactly as `executor.spin()` does
(a Python signal handler could not run while the main thread waits inside
rcl); the main thread looks at the request every 0.1 s, lets the node end
its work in flight while the executor still spins (its `before_stop()`,
when it has one: answers still go out), stops the spin and runs the one
shutdown sequence: the node's own `close()` (when it has one), the
executor, the node, rclpy.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node
from rclpy.task import Future

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How often the main thread looks at the stop request: the latency of a Ctrl-C.
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
    """Spin until SIGINT, SIGTERM or a shutdown of the context, then close the node, executor and rclpy.

    An exception raised by a callback ends the spin and is raised here, after the shutdown.
    """
    stop = stop if stop is not None else StopRequest().install()
    executor.add_node(node)
    stopped = Future()
    failure: list[BaseException] = []
    spinner = threading.Thread(target=_spin, args=(executor, stopped, failure), name="executor", daemon=True)
    spinner.start()
    try:
        while not stop and spinner.is_alive():
            spinner.join(_WAIT_S)
    finally:
        before_stop = getattr(node, "before_stop", None)
        if callable(before_stop) and spinner.is_alive():
            before_stop()
        stopped.set_result(None)  # wakes the executor, which then returns
        spinner.join(timeout=5.0)
        close = getattr(node, "close", None)
        if callable(close):
            close()
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()
    if failure:
        raise failure[0]


def _spin(executor: Executor, stopped: Future, failure: list[BaseException]) -> None:
    try:
        executor.spin_until_future_complete(stopped)
    except ExternalShutdownException:
        pass
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there after the shutdown
        failure.append(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
