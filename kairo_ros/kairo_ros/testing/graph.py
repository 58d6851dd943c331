"""Talking to the ROS graph from plain code: a node spun in the background,
and every wait with a deadline.

Used wherever code outside a node's own callbacks drives ROS: the operator
client, the demo, the tests and the benchmarks. One helper, `wait_future`,
bounds every wait; nothing here blocks forever.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.task import Future

T = TypeVar("T")


class RosTimeout(TimeoutError):
    """A ROS wait ran past its deadline."""


def wait_future(future: Future, timeout_s: float, what: str) -> Any:
    """The result of `future` (spun by another thread), or RosTimeout."""
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout_s):
        future.cancel()
        raise RosTimeout(f"{what}: no answer within {timeout_s:g} s")
    exc = future.exception()
    if exc is not None:
        raise exc
    return future.result()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
               period_s: float = 0.02) -> None:
    """Poll `predicate` until it holds, or raise RosTimeout naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RosTimeout(f"{what}: not seen within {timeout_s:g} s")
        time.sleep(period_s)


class SpinningNode:
    """A node with its own context, spun by an executor in a background thread.
    Use as a context manager; `close()` is idempotent."""

    def __init__(self, name: str, namespace: str = "", domain_id: int | None = None,
                 threads: int = 1) -> None:
        self.context = Context()
        init_kwargs: dict[str, Any] = {"context": self.context}
        if domain_id is not None:
            init_kwargs["domain_id"] = domain_id
        rclpy.init(**init_kwargs)
        self.node = Node(name, namespace=namespace, context=self.context)
        # One thread unless asked: the callbacks here only record and notify, and rclpy's
        # MultiThreadedExecutor spun from a background thread was measured to add about 100 ms
        # to a topic round trip (0.5 ms single-threaded) while burning a core.
        self.executor: Executor = (SingleThreadedExecutor(context=self.context) if threads == 1
                                   else MultiThreadedExecutor(num_threads=threads, context=self.context))
        self.executor.add_node(self.node)
        self._stop = Future()
        self._thread = threading.Thread(target=self._spin, name=f"spin-{name}", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # Spins until close() completes `_stop`. The executor is shut down only after this returns:
        # shut down under a running spin, a callback still in flight finds the executor's guard
        # condition gone and the spinning thread dies with an AttributeError.
        with contextlib.suppress(ExternalShutdownException):
            self.executor.spin_until_future_complete(self._stop)

    def __enter__(self) -> SpinningNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.context.ok():
            return
        if not self._stop.done():
            self._stop.set_result(None)  # wakes the executor, which then returns
        self._thread.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    # --- discovery -------------------------------------------------------------
    def node_names(self) -> set[str]:
        return {ns.rstrip("/") + "/" + name for name, ns in self.node.get_node_names_and_namespaces()}

    def wait_for_service(self, client: Any, timeout_s: float) -> None:
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise RosTimeout(f"service {client.srv_name}: not available within {timeout_s:g} s")

    def wait_for_action_server(self, client: Any, timeout_s: float, name: str = "") -> None:
        if not client.wait_for_server(timeout_sec=timeout_s):
            raise RosTimeout(f"action server {name or '?'}: not available within {timeout_s:g} s")

    def on_executor(self, work: Callable[[], T], timeout_s: float, what: str) -> T:
        """Run `work` on the spinning thread and return what it returned.

        For rclpy calls that race with the executor when made from another
        thread: ActionClient.send_goal_async, cancel_goal_async and
        get_result_async record their request only after sending it, so an
        answer the executor takes first is dropped as unexpected and the
        caller waits forever.
        """
        return wait_future(self.executor.create_task(work), timeout_s, what)  # type: ignore[no-any-return]

    def action_client(self, action_type: Any, name: str, timeout_s: float = 10.0) -> ActionClient:
        """An ActionClient made on the spinning thread.

        Made from another thread, it races with the executor: rclpy's
        ActionClient adds itself to the node before it has its lock, and an
        executor that lists the node's waitables then dies with an
        AttributeError, leaving every later future unanswered.
        """
        return self.on_executor(lambda: ActionClient(self.node, action_type, name), timeout_s,
                                f"make an action client for {name}")

    def call(self, client: Any, request: Any, timeout_s: float) -> Any:
        """One service call with a deadline on both discovery and answer."""
        self.wait_for_service(client, timeout_s)
        return wait_future(client.call_async(request), timeout_s, f"service {client.srv_name}")
