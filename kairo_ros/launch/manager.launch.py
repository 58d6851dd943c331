"""kairo_manager alone: train, export, promote and inspect models from ROS 2.

    ros2 launch kairo_ros manager.launch.py api_url:=https://api.kairo.dev robot_id:=rob_a1b2c3d4

The API key comes from KAIRO_API_KEY in the launching shell, or from the
file named by api_key_file; it is never a launch argument or a parameter value.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    def text(name: str) -> ParameterValue:
        # Typed as a string, so that an empty or numeric-looking value stays a string.
        return ParameterValue(LaunchConfiguration(name), value_type=str)

    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="kairo", description="Namespace of the manager"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("kairo_ros"),
                                                                  "config", "manager.yaml"]),
                              description="Parameters of kairo_manager; the arguments below override it"),
        DeclareLaunchArgument("api_url", default_value="http://127.0.0.1:8080",
                              description="Base URL of the Kairo Models API (without /v1)"),
        DeclareLaunchArgument("api_key_file", default_value="",
                              description="File holding the API key; empty: KAIRO_API_KEY"),
        DeclareLaunchArgument("robot_id", default_value="",
                              description="Robot of train goals that leave robot_id empty (rob_...)"),
        DeclareLaunchArgument("export_dir", default_value="~/.kairo/exports",
                              description="Where export goals without output_dir write"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="Log level: debug, info, warn, error"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock from a simulator"),
        Node(
            package="kairo_ros", executable="kairo_manager", name="kairo_manager",
            namespace=LaunchConfiguration("namespace"), output="screen",
            parameters=[LaunchConfiguration("params_file"), {
                "api_url": text("api_url"),
                "api_key_file": text("api_key_file"),
                "robot_id": text("robot_id"),
                "export_dir": text("export_dir"),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            }],
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        ),
    ])
