"""The tasks and the default wiring of each (docs/features.md, "Default wiring per task")."""

from __future__ import annotations

from typing import Any

from kairo_features.schema import (
    DEFAULT_MAX_DETECTIONS,
    DEFAULT_SCORE_THRESHOLD,
    DETECTION_TYPE,
    SCHEMA,
    TASKS,
    FeaturesError,
)

__all__ = ["IMAGE_SHAPE", "NAV_BEAMS", "SHAPE_CLASSES", "TASKS", "default_features"]

NAV_BEAMS = 64
# The detection demo's camera image [C, H, W]: a small camera frame (the node
# letterboxes any other size into it) and the shapes drawn in it.
IMAGE_SHAPE = (3, 120, 160)
SHAPE_CLASSES = ("circle", "square", "triangle", "cross")


def default_features(task: str) -> dict[str, Any]:
    """A fresh copy of the task's default features document (callers may change it)."""
    if task == "manipulation":
        return {
            "schema": SCHEMA,
            "task": task,
            "inputs": [
                {"name": "joint_positions", "topic": "/joint_states",
                 "type": "sensor_msgs/msg/JointState", "fields": ["position"], "shape": [3]},
                {"name": "target", "topic": "/target_point",
                 "type": "geometry_msgs/msg/PointStamped",
                 "fields": ["point.x", "point.y"], "shape": [2]},
            ],
            "outputs": [
                {"name": "joint_commands", "topic": "/arm_controller/commands",
                 "type": "std_msgs/msg/Float64MultiArray", "fields": ["data"], "shape": [3]},
            ],
            "tolerance": 0.05,
        }
    if task == "navigation":
        return {
            "schema": SCHEMA,
            "task": task,
            "inputs": [
                {"name": "scan", "topic": "/scan", "type": "sensor_msgs/msg/LaserScan",
                 "fields": ["ranges"], "shape": [NAV_BEAMS]},
            ],
            "outputs": [
                {"name": "cmd_vel", "topic": "/cmd_vel", "type": "geometry_msgs/msg/Twist",
                 "fields": ["linear.x", "angular.z"], "shape": [2]},
            ],
            "tolerance": 0.1,
        }
    if task == "object_detection":
        return {
            "schema": SCHEMA,
            "task": task,
            "inputs": [
                {"name": "image", "topic": "/camera/image_raw", "type": "sensor_msgs/msg/Image",
                 "fields": ["data"], "shape": list(IMAGE_SHAPE), "encoding": "rgb8"},
            ],
            "outputs": [
                {"name": "detections", "topic": "/detections", "type": DETECTION_TYPE,
                 "fields": [], "shape": [len(SHAPE_CLASSES) + 4]},
            ],
            "classes": list(SHAPE_CLASSES),
            "max_detections": DEFAULT_MAX_DETECTIONS,
            "score_threshold": DEFAULT_SCORE_THRESHOLD,
        }
    raise FeaturesError(f"task: unknown task {task!r}; expected one of {', '.join(TASKS)}")
