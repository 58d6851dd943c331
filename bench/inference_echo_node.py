"""The baseline of the inference benchmarks: an rclpy node that republishes each JointState.

Same executor (MultiThreadedExecutor) and input QoS (reliable) as kairo_inference in the benchmark.
"""

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class EchoNode(Node):
    def __init__(self) -> None:
        super().__init__("kairo_bench_echo")
        self.publisher = self.create_publisher(JointState, "/bench/echo_out", QOS)
        self.create_subscription(JointState, "/bench/echo_in", self.publisher.publish, QOS)


def main() -> None:
    rclpy.init()
    node = EchoNode()
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
