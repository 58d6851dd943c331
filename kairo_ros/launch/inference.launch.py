"""kairo_inference alone on a robot: the active model on the robot's topics.

    ros2 launch kairo_ros inference.launch.py robot_id:=rob_a1b2c3d4 task:=manipulation
    ros2 launch kairo_ros inference.launch.py model_path:=/opt/models/arm.onnx joint_states:=/arm/joint_states

The API key comes from KAIRO_API_KEY in the launching shell, or from the
file named by api_key_file; it is never a launch argument or a parameter value.
The topic arguments remap the default wiring of each task (docs/features.md).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

# Default topics of the three tasks' wiring: launch argument -> (default topic, what it carries).
TOPICS = {
    "joint_states": ("/joint_states", "manipulation input: sensor_msgs/JointState"),
    "target_point": ("/target_point", "manipulation input: geometry_msgs/PointStamped"),
    "arm_commands": ("/arm_controller/commands", "manipulation output: std_msgs/Float64MultiArray"),
    "scan": ("/scan", "navigation input: sensor_msgs/LaserScan"),
    "cmd_vel": ("/cmd_vel", "navigation output: geometry_msgs/Twist"),
    "image": ("/camera/image_raw", "object detection input: sensor_msgs/Image"),
    "detections": ("/detections", "object detection output: kairo_interfaces/Detection2DArray"),
}


def generate_launch_description() -> LaunchDescription:
    def text(name: str) -> ParameterValue:
        # Typed as a string, so that an empty or numeric-looking value stays a string.
        return ParameterValue(LaunchConfiguration(name), value_type=str)

    arguments = [
        DeclareLaunchArgument("namespace", default_value="kairo", description="Namespace of the inference node"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("kairo_ros"),
                                                                  "config", "inference.yaml"]),
                              description="Parameters of kairo_inference; the arguments below override it"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="Local ONNX file to serve (no backend needed); wins over the others"),
        DeclareLaunchArgument("model_id", default_value="",
                              description="Serve this model's active version (mdl_...); wins over robot_id+task"),
        DeclareLaunchArgument("robot_id", default_value="",
                              description="With task: serve this robot's active model (rob_...)"),
        DeclareLaunchArgument("task", default_value="",
                              description="With robot_id: manipulation, navigation or object_detection"),
        DeclareLaunchArgument("api_url", default_value="http://127.0.0.1:8080",
                              description="Base URL of the Kairo Models API (without /v1)"),
        DeclareLaunchArgument("api_key_file", default_value="",
                              description="File holding the API key; empty: KAIRO_API_KEY"),
        DeclareLaunchArgument("cache_dir", default_value="~/.cache/kairo/models",
                              description="Verified model downloads; the node boots from here offline"),
        DeclareLaunchArgument("input_qos", default_value="sensor_data",
                              description="Input QoS: sensor_data (best effort, depth 1) or reliable"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="Log level: debug, info, warn, error"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock from a simulator"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value=topic, description=f"Topic of the {what}")
                  for name, (topic, what) in TOPICS.items()]
    return LaunchDescription([
        *arguments,
        Node(
            package="kairo_ros", executable="kairo_inference", name="kairo_inference",
            namespace=LaunchConfiguration("namespace"), output="screen",
            parameters=[LaunchConfiguration("params_file"), {
                "model_path": text("model_path"),
                "model_id": text("model_id"),
                "robot_id": text("robot_id"),
                "task": text("task"),
                "api_url": text("api_url"),
                "api_key_file": text("api_key_file"),
                "cache_dir": text("cache_dir"),
                "input_qos": text("input_qos"),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            }],
            remappings=[(topic, LaunchConfiguration(name)) for name, (topic, _what) in TOPICS.items()],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        ),
    ])
