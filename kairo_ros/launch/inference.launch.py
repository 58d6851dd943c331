"""kairo_inference alone on a robot: the active model on the robot's topics.

    ros2 launch kairo_ros inference.launch.py robot_id:=rob_a1b2c3d4 task:=manipulation
    ros2 launch kairo_ros inference.launch.py model_path:=/opt/models/arm.onnx joint_positions_topic:=/arm/joint_states

Parameters come from params_file; a parameter argument overrides the file
only when it is given. The API key comes from KAIRO_API_KEY in the launching
shell, or from the file named by api_key_file; it is never a launch argument
or a parameter value. The <input or output>_topic arguments remap the
default wiring of each task (docs/features.md); an exported model package's
model.launch.py takes the same ones.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from kairo_ros.inference.params import SPECS
from kairo_ros.parameters import launch_overrides

# The default wiring of the three tasks, by the model's input and output names:
# launch argument -> (default topic, what it carries).
TOPICS = {
    "joint_positions_topic": ("/joint_states", "manipulation input joint_positions: sensor_msgs/JointState"),
    "target_topic": ("/target_point", "manipulation input target: geometry_msgs/PointStamped"),
    "joint_commands_topic": ("/arm_controller/commands",
                             "manipulation output joint_commands: std_msgs/Float64MultiArray"),
    "scan_topic": ("/scan", "navigation input scan: sensor_msgs/LaserScan"),
    "cmd_vel_topic": ("/cmd_vel", "navigation output cmd_vel: geometry_msgs/Twist"),
    "image_topic": ("/camera/image_raw", "object detection input image: sensor_msgs/Image"),
    "detections_topic": ("/detections", "object detection output detections: kairo_interfaces/Detection2DArray"),
}
# Parameters given as launch arguments: every one but the lists (those go in params_file).
PARAMETER_ARGUMENTS = [spec for spec in SPECS if spec.kind != "string_array"]


def _inference_node(context, *_args, **_kwargs):  # type: ignore[no-untyped-def]
    overrides = launch_overrides(PARAMETER_ARGUMENTS, context.launch_configurations)
    return [Node(
        package="kairo_ros", executable="kairo_inference", name="kairo_inference",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[(topic, LaunchConfiguration(name)) for name, (topic, _what) in TOPICS.items()],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("namespace", default_value="kairo", description="Namespace of the inference node"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("kairo_ros"),
                                                                  "config", "inference.yaml"]),
                              description="Parameters of kairo_inference; a parameter argument given overrides it"),
        *[DeclareLaunchArgument(spec.name, default_value="", description=spec.launch_description())
          for spec in PARAMETER_ARGUMENTS],
        DeclareLaunchArgument("log_level", default_value="info",
                              description="Log level: debug, info, warn, error"),
        DeclareLaunchArgument("use_sim_time", default_value="",
                              description="Use /clock from a simulator (true or false). Unset: the params "
                                          "file's value, else false."),
        *[DeclareLaunchArgument(name, default_value=topic, description=f"Topic of the {what}")
          for name, (topic, what) in TOPICS.items()],
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_inference_node)])
