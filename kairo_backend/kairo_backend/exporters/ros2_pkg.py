"""The `ros2-pkg` export: one ament_python package that serves a model version offline.

The package bundles the ONNX file and its sha256 and installs them, with a
params file and a launch file, into `share/<package>/`. Its params file names
the model as `package://<package>/models/model.onnx`, which kairo_inference
resolves through the ament index of the robot, so nothing in it depends on
the exporting machine. Building it needs only colcon; running it needs
kairo_ros (with kairo_features, which it depends on) and kairo_interfaces,
never this backend.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kairo_backend.exporters.archive import Entry, tar_gz_bytes

MAINTAINER = "Kairo Models API"
MAINTAINER_EMAIL = "exports@kairo.dev"
_PACKAGE_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")  # REP 144, no double or trailing '_'


@dataclass(frozen=True)
class PackageSpec:
    """What the package is made of: one complete version of one model."""

    model_id: str
    version: str
    name: str
    task: str
    robot_id: str
    onnx: bytes
    onnx_sha256: str
    features: dict[str, Any] | None = None

    @property
    def package(self) -> str:
        return package_name(self.model_id, self.version)


def package_name(model_id: str, version: str) -> str:
    """`mdl_abc123`, `v2` -> `kairo_model_abc123_v2` (a valid ROS package name)."""
    suffix = model_id.removeprefix("mdl_")
    name = f"kairo_model_{suffix}_{version}".lower()
    if not _PACKAGE_NAME.match(name):
        raise ValueError(f"model {model_id!r} {version!r} gives no valid ROS package name "
                         f"({name!r})")
    return name


def package_version(version: str) -> str:
    """`v2` -> `2.0.0` (package.xml wants MAJOR.MINOR.PATCH)."""
    if not re.fullmatch(r"v[1-9][0-9]*", version):
        raise ValueError(f"version {version!r} is not vN")
    return f"{version[1:]}.0.0"


def build(spec: PackageSpec) -> bytes:
    """The package as a deterministic .tar.gz, one top-level directory named as the package."""
    pkg = spec.package
    files = {
        "package.xml": _package_xml(spec),
        "setup.py": _setup_py(spec),
        "setup.cfg": _setup_cfg(pkg),
        f"resource/{pkg}": "",
        f"{pkg}/__init__.py": f'"""{pkg}: model files only; see README.md."""\n',
        "config/params.yaml": _params_yaml(spec),
        "launch/model.launch.py": _launch_py(spec),
        "README.md": _readme(spec),
        "models/model.onnx.sha256": f"{spec.onnx_sha256}  model.onnx\n",
    }
    entries = [Entry(f"{pkg}/{path}", text.encode()) for path, text in files.items()]
    entries.append(Entry(f"{pkg}/models/model.onnx", spec.onnx))
    return tar_gz_bytes(entries)


def _wiring(spec: PackageSpec) -> list[tuple[str, str, str, str]]:
    """(entry name, default topic, message type, 'input'|'output') of the model's features."""
    if not spec.features:
        return []
    return [(e["name"], e["topic"], e["type"], kind) for kind in ("input", "output")
            for e in spec.features.get(f"{kind}s", [])]


def _package_xml(spec: PackageSpec) -> str:
    description = (f"Kairo model {spec.name} ({spec.model_id} {spec.version}, task {spec.task}) "
                   f"served offline by kairo_inference.")
    return f"""<?xml version="1.0"?>
<?xml-model href="http://download.ros.org/schema/package_format3.xsd" schematypens="http://www.w3.org/2001/XMLSchema"?>
<package format="3">
  <name>{spec.package}</name>
  <version>{package_version(spec.version)}</version>
  <description>{_xml(description)}</description>
  <maintainer email="{MAINTAINER_EMAIL}">{MAINTAINER}</maintainer>
  <license>Proprietary</license>

  <exec_depend>kairo_ros</exec_depend>
  <exec_depend>kairo_interfaces</exec_depend>
  <exec_depend>ament_index_python</exec_depend>
  <exec_depend>launch</exec_depend>
  <exec_depend>launch_ros</exec_depend>

  <export>
    <build_type>ament_python</build_type>
  </export>
</package>
"""


def _setup_py(spec: PackageSpec) -> str:
    pkg = spec.package
    return f'''from setuptools import setup

package_name = "{pkg}"
share = "share/" + package_name

setup(
    name=package_name,
    version="{package_version(spec.version)}",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        (share, ["package.xml", "README.md"]),
        (share + "/models", ["models/model.onnx", "models/model.onnx.sha256"]),
        (share + "/config", ["config/params.yaml"]),
        (share + "/launch", ["launch/model.launch.py"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="{MAINTAINER}",
    maintainer_email="{MAINTAINER_EMAIL}",
    description="Kairo model {spec.model_id} {spec.version}, served offline by kairo_inference.",
    license="Proprietary",
)
'''


def _setup_cfg(pkg: str) -> str:
    return f"[develop]\nscript_dir=$base/lib/{pkg}\n[install]\ninstall_scripts=$base/lib/{pkg}\n"


def _params_yaml(spec: PackageSpec) -> str:
    pkg = spec.package
    return f"""# kairo_inference on the model bundled in {pkg} ({spec.model_id} {spec.version}).
# No backend needed:
#   kairo_inference --ros-args --params-file \\
#       $(ros2 pkg prefix {pkg})/share/{pkg}/config/params.yaml
# package:// is resolved in the share directory of the installed package (ament index).
/**/kairo_inference:
  ros__parameters:
    model_path: "package://{pkg}/models/model.onnx"
    intra_op_threads: 1                # onnxruntime threads per inference; 0: all cores
    input_qos: "sensor_data"           # sensor_data (best effort, depth 1) | reliable
"""


def _launch_py(spec: PackageSpec) -> str:
    pkg = spec.package
    topics = {f"{name}_topic": (topic, f"Topic of the model's {kind} {name} ({kind_type})")
              for name, topic, kind_type, kind in _wiring(spec)}
    return f'''"""kairo_inference on the bundled model {spec.model_id} {spec.version} ({spec.task}).

No backend and no key needed:

    ros2 launch {pkg} model.launch.py
    ros2 launch {pkg} model.launch.py namespace:=arm1 log_level:=debug

The *_topic arguments remap the model's default wiring.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "{pkg}"
# launch argument -> (the model's default topic, what it carries)
TOPICS = {json.dumps(topics, indent=4)}


def _inference_node(context, *_args, **_kwargs):  # type: ignore[no-untyped-def]
    # Only arguments the user gave override the params file.
    given = context.launch_configurations
    overrides = {{}}
    if given.get("input_qos", ""):
        overrides["input_qos"] = given["input_qos"]
    if given.get("use_sim_time", ""):
        overrides["use_sim_time"] = given["use_sim_time"].lower() == "true"
    return [Node(
        package="kairo_ros", executable="kairo_inference", name="kairo_inference",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[(topic, LaunchConfiguration(name)) for name, (topic, _what) in TOPICS.items()],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(
            "namespace", default_value="kairo", description="Namespace of the inference node"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare(PACKAGE), "config", "params.yaml"]),
            description="Parameters of kairo_inference; its model_path names the bundled model"),
        DeclareLaunchArgument(
            "input_qos", default_value="",
            description="Input QoS: sensor_data (best effort, depth 1) or reliable. "
                        "Unset: the params file's value"),
        DeclareLaunchArgument(
            "log_level", default_value="info", description="Log level: debug, info, warn, error"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="",
            description="Use /clock from a simulator (true or false). Unset: the params file's value, else false"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value=topic, description=what)
                  for name, (topic, what) in TOPICS.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_inference_node)])
'''


def _readme(spec: PackageSpec) -> str:
    pkg = spec.package
    wiring = "\n".join(f"| {kind} | `{name}` | `{topic}` | `{kind_type}` |"
                       for name, topic, kind_type, kind in _wiring(spec))
    header = "| | name | default topic | type |\n| --- | --- | --- | --- |\n"
    table = f"## Topics\n\n{header}{wiring}\n" if wiring else ""
    return f"""# {pkg}

Kairo model **{spec.name}** (`{spec.model_id}` version `{spec.version}`, task `{spec.task}`, robot
`{spec.robot_id}`), exported by the Kairo Models API as a ROS 2 package. It holds the
ONNX model (`models/model.onnx`, sha256 `{spec.onnx_sha256}`) and runs it with
`kairo_inference` from `kairo_ros`, offline: no backend, no key.

## Build

Put this directory in a colcon workspace beside (or on top of an install of)
`kairo_ros`, `kairo_features` and `kairo_interfaces`, then:

```bash
colcon build --packages-select {pkg}
source install/setup.bash
```

## Run

```bash
ros2 launch {pkg} model.launch.py     # its arguments: add --show-args
# or, without the launch package:
kairo_inference --ros-args --params-file install/{pkg}/share/{pkg}/config/params.yaml
```

`config/params.yaml` names the model as `package://{pkg}/models/model.onnx`,
found through the ament index wherever the package is installed. Check the
file with `cd install/{pkg}/share/{pkg}/models && sha256sum -c model.onnx.sha256`.

{table}"""


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
