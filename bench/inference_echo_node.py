"""The baseline of the inference benchmarks: an rclpy node that republishes each JointState (or Image).

What a minimal, well-written rclpy echo node does: a plain node spun by
`rclpy.spin` (a SingleThreadedExecutor, like kairo_inference's data path),
reliable depth-100 QoS in and out (like kairo_inference's input with
input_qos:=reliable and its ~/prediction publisher).

    python inference_echo_node.py [multi] [lean] [image]

multi: spin a MultiThreadedExecutor instead (the twin of kairo_inference
before its data path had a thread of its own); lean: no parameter services,
so the wait set holds the subscription alone, as kairo_inference's data node;
image: echo sensor_msgs/Image instead of JointState (the image benchmark).
"""

import sys

import rclpy
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState

from kairo_ros.spin import spin_until_shutdown

QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class EchoNode(Node):
    def __init__(self, lean: bool, msg_type: type) -> None:
        super().__init__("kairo_bench_echo", start_parameter_services=not lean)
        self.publisher = self.create_publisher(msg_type, "/bench/echo_out", QOS)
        self.create_subscription(msg_type, "/bench/echo_in", self.publisher.publish, QOS)


def main() -> None:
    rclpy.init()
    node = EchoNode(lean="lean" in sys.argv[1:], msg_type=Image if "image" in sys.argv[1:] else JointState)
    executor = MultiThreadedExecutor() if "multi" in sys.argv[1:] else SingleThreadedExecutor()
    spin_until_shutdown(node, executor)


if __name__ == "__main__":
    main()
