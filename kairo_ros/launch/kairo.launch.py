"""The kairo_ros stack on one robot: kairo_manager and kairo_inference,
optionally with the embedded training backend.

    ros2 launch kairo_ros kairo.launch.py robot_id:=rob_a1b2c3d4 task:=manipulation
    ros2 launch kairo_ros kairo.launch.py use_embedded_backend:=true robot_id:=rob_demo0001

It includes manager.launch.py and inference.launch.py, so each node is
described once. Parameters come from params_file (config/kairo.yaml: one
section per node); an argument overrides the file only when it is given.
The API key comes from KAIRO_API_KEY in the launching shell (or the
api_key_file parameter); it is never a launch argument. With
use_embedded_backend, create the key first, on the backend's data directory:

    kairo-backend keys create --workspace my-robots --data-dir ~/.local/share/kairo
    export KAIRO_API_KEY=kai_live_...   # the line it printed
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

# Arguments passed unchanged to both included launch files.
SHARED = ("namespace", "robot_id", "api_url", "params_file", "log_level", "use_sim_time")


def generate_launch_description() -> LaunchDescription:
    def include(launch_file: str, *names: str) -> IncludeLaunchDescription:
        source = PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("kairo_ros"), "launch", launch_file]))
        return IncludeLaunchDescription(
            source, launch_arguments={name: LaunchConfiguration(name) for name in (*SHARED, *names)}.items())

    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="kairo",
                              description="Namespace of the manager and inference nodes"),
        DeclareLaunchArgument("robot_id", default_value="",
                              description="This robot's id (rob_...): the default robot of train goals, and "
                                          "with task the robot whose active model inference serves. Unset: "
                                          "the params file's value"),
        DeclareLaunchArgument("api_url", default_value="",
                              description="Base URL of the Kairo Models API (without /v1), hosted or embedded. "
                                          "Unset: the params file's value, else http://127.0.0.1:8080"),
        DeclareLaunchArgument("model_id", default_value="",
                              description="Serve this model's active version (mdl_...). Unset: the params "
                                          "file's value, else the model of robot_id and task"),
        DeclareLaunchArgument("task", default_value="",
                              description="With robot_id, the task of the model to serve: manipulation, "
                                          "navigation or object_detection. Unset: the params file's value "
                                          "(kairo.yaml: manipulation)"),
        DeclareLaunchArgument("use_embedded_backend", default_value="false",
                              description="Also run `kairo-backend serve` on 127.0.0.1:backend_port (needs "
                                          "kairo_backend installed; create the API key first with "
                                          "`kairo-backend keys create --data-dir <backend_data_dir>`); point "
                                          "api_url at it"),
        DeclareLaunchArgument("backend_port", default_value="8080",
                              description="Port of the embedded backend"),
        DeclareLaunchArgument("backend_data_dir", default_value="~/.local/share/kairo",
                              description="Data directory of the embedded backend (keys, datasets, models)"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("kairo_ros"),
                                                                  "config", "kairo.yaml"]),
                              description="Parameters of both nodes (one section per node)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              description="Log level of the nodes: debug, info, warn, error"),
        DeclareLaunchArgument("use_sim_time", default_value="",
                              description="Use /clock from a simulator (true or false). Unset: the params "
                                          "file's value, else false"),
        ExecuteProcess(
            cmd=["kairo-backend", "serve", "--host", "127.0.0.1", "--port", LaunchConfiguration("backend_port"),
                 "--data-dir", LaunchConfiguration("backend_data_dir")],
            name="kairo_backend", output="screen",
            condition=IfCondition(LaunchConfiguration("use_embedded_backend"))),
        include("manager.launch.py"),
        include("inference.launch.py", "model_id", "task"),
    ])
