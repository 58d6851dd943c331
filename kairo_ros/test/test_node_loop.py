"""NodeLoop, the data path's thread: messages, QoS events, a failing callback, rewiring and stop,
over real DDS inside one process."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import rclpy
from rclpy.context import Context
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Int32

from conftest import DOMAIN_ID
from kairo_ros.inference.data_path import NodeLoop
from kairo_ros.testing.graph import wait_until

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture
def nodes() -> Iterator[tuple[Node, Node]]:
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    served, peer = Node("node_loop_served", context=context), Node("node_loop_peer", context=context)
    try:
        yield served, peer
    finally:
        served.destroy_node()
        peer.destroy_node()
        rclpy.shutdown(context=context)


def test_messages_events_a_failing_callback_rewiring_and_stop(nodes: tuple[Node, Node]) -> None:
    served, peer = nodes
    errors: list[str] = []
    loop = NodeLoop(served, lambda: errors.append("failed"))
    got: list[int] = []
    lock = threading.Lock()

    def on_message(msg: Int32) -> None:
        if msg.data == 1:
            raise RuntimeError("a bad message")
        with lock:
            got.append(msg.data)

    loop.start()
    served.create_subscription(Int32, "/node_loop/in", on_message, RELIABLE)
    loop.wake()  # entities made after start are waited on from the next wait
    publisher = peer.create_publisher(Int32, "/node_loop/in", RELIABLE)
    wait_until(lambda: publisher.get_subscription_count() > 0, 10, "the subscription matched")
    for value in (1, 2, 3):
        publisher.publish(Int32(data=value))
    wait_until(lambda: got == [2, 3], 10, "the messages after the failing one")
    assert errors == ["failed"], "the failure is reported and the loop goes on"

    matched: list[int] = []
    served.create_publisher(Int32, "/node_loop/out", RELIABLE,
                            event_callbacks=PublisherEventCallbacks(matched=lambda i: matched.append(i.current_count)))
    loop.wake()
    peer.create_subscription(Int32, "/node_loop/out", lambda _m: None, RELIABLE)
    wait_until(lambda: 1 in matched, 10, "the publisher's matched event")

    for subscription in list(served.subscriptions):  # unwiring from another thread while the loop waits
        loop.wake()
        served.destroy_subscription(subscription)
    wait_until(lambda: publisher.get_subscription_count() == 0, 10, "the subscription gone")
    loop.stop(timeout_s=5.0)
    assert not loop.running
