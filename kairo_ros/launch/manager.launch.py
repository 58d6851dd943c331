"""kairo_manager alone: train, export, promote and inspect models from ROS 2.

    ros2 launch kairo_ros manager.launch.py api_url:=https://api.kairo.dev robot_id:=rob_a1b2c3d4

Parameters come from params_file; a parameter argument overrides the file
only when it is given. The API key comes from KAIRO_API_KEY in the launching
shell, or from the file named by api_key_file; it is never a launch argument
or a parameter value.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from kairo_ros.manager.params import SPECS
from kairo_ros.parameters import launch_overrides


def _manager_node(context, *_args, **_kwargs):  # type: ignore[no-untyped-def]
    overrides = launch_overrides(SPECS, context.launch_configurations)
    return [Node(
        package="kairo_ros", executable="kairo_manager", name="kairo_manager",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="kairo", description="Namespace of the manager"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("kairo_ros"),
                                                                  "config", "manager.yaml"]),
                              description="Parameters of kairo_manager; a parameter argument given overrides it"),
        *[DeclareLaunchArgument(spec.name, default_value="", description=spec.launch_description())
          for spec in SPECS],
        DeclareLaunchArgument("log_level", default_value="info",
                              description="Log level: debug, info, warn, error"),
        DeclareLaunchArgument("use_sim_time", default_value="",
                              description="Use /clock from a simulator (true or false). Unset: the params "
                                          "file's value, else false."),
        OpaqueFunction(function=_manager_node),
    ])
