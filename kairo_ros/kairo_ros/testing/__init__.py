"""The harness of the tests, the demo and the benchmarks: child processes, DDS isolation, a real
backend, and plain-code clients of the ROS graph (SpinningNode, KairoCommander).

Installed with kairo_ros so that the demo and bench/ can use it, but no node a robot runs imports it:
kairo_ros.inference and kairo_ros.manager stay free of test machinery.
"""
