"""Launch files stay right for `ros2 launch` even where launch is not installed.

The pip-wheel machines have no `launch`/`launch_ros`, so each launch file is
run here against recording stand-ins of those modules: its
generate_launch_description() must run, every argument must have a default
and a description and be used, and every executable and config file it
names must be installed by the package.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from ament_index_python.packages import get_package_prefix

SOURCE = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((SOURCE / "launch").glob("*.launch.py"))
INSTALL = pathlib.Path(get_package_prefix("kairo_ros"))  # the sourced workspace's, whichever distro
SHARE = INSTALL / "share" / "kairo_ros"
EXECUTABLES = INSTALL / "lib" / "kairo_ros"

LAUNCH_MODULES = ["launch", "launch.actions", "launch.conditions", "launch.substitutions",
                  "launch.launch_description_sources", "launch_ros", "launch_ros.actions",
                  "launch_ros.substitutions", "launch_ros.parameter_descriptions"]


class Recorded:
    """One object a launch file built: its class name and arguments."""

    made: list[Recorded] = []

    def __init__(self, kind: str, *args: Any, **kwargs: Any) -> None:
        self.kind, self.args, self.kwargs = kind, args, kwargs
        Recorded.made.append(self)

    def __iter__(self) -> Iterator[Any]:  # PathJoinSubstitution and friends may be unpacked
        return iter(())

    def __add__(self, other: Any) -> list[Any]:
        return [self, other]

    __radd__ = __add__


def recording_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def __getattr__(attr: str) -> Any:  # noqa: N807 - module-level getattr
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (Recorded,), {"__init__": lambda self, *a, _k=attr, **kw: Recorded.__init__(
            self, _k, *a, **kw)})

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    module.__path__ = []  # a package, so submodules import
    return module


class RecordingConfigurations(dict):  # type: ignore[type-arg]
    """launch_configurations of a stand-in LaunchContext: remembers which names were read."""

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


@dataclass
class LaunchRun:
    """What running one launch file made, with the launch configurations it was run with."""

    made: list[Recorded]
    configurations: RecordingConfigurations


def run_launch(path: pathlib.Path, given: dict[str, Any] | None = None) -> LaunchRun:
    """Run a launch file against stand-ins, as `ros2 launch <file> name:=value...` with `given`.

    As launch does: arguments not given take their default, then every
    OpaqueFunction runs with those configurations.
    """
    saved = {name: sys.modules.get(name) for name in LAUNCH_MODULES}
    sys.modules.update({name: recording_module(name) for name in LAUNCH_MODULES})
    Recorded.made = []
    try:
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.generate_launch_description()
        values = {a.args[0]: a.kwargs["default_value"] for a in of_kind(Recorded.made, "DeclareLaunchArgument")}
        configurations = RecordingConfigurations({**values, **(given or {})})
        context = types.SimpleNamespace(launch_configurations=configurations)
        for opaque in of_kind(list(Recorded.made), "OpaqueFunction"):
            opaque.kwargs["function"](context)
        return LaunchRun(list(Recorded.made), configurations)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def run_with_stand_ins(path: pathlib.Path) -> list[Recorded]:
    return run_launch(path).made


def of_kind(made: list[Recorded], kind: str) -> list[Recorded]:
    return [r for r in made if r.kind == kind]


def share_path(join: Recorded) -> pathlib.Path | None:
    """The installed file a PathJoinSubstitution([FindPackageShare('kairo_ros'), ...]) names."""
    parts = join.args[0]
    if not parts or not isinstance(parts[0], Recorded) or parts[0].kind != "FindPackageShare":
        return None
    if parts[0].args[0] != "kairo_ros":
        return None
    assert all(isinstance(p, str) for p in parts[1:]), f"dynamic path parts in {parts}"
    return SHARE.joinpath(*parts[1:])


@pytest.fixture(params=LAUNCH_FILES, ids=lambda p: p.name)
def launch_file(request: pytest.FixtureRequest) -> pathlib.Path:
    return request.param


def test_there_are_launch_files() -> None:
    assert {p.name for p in LAUNCH_FILES} >= {"kairo.launch.py", "manager.launch.py", "inference.launch.py"}


def test_installed_copy_is_current(launch_file: pathlib.Path) -> None:
    installed = SHARE / "launch" / launch_file.name
    assert installed.exists(), f"{launch_file.name} is not installed: run make setup"
    assert installed.read_bytes() == launch_file.read_bytes()


def test_arguments_have_defaults_descriptions_and_uses(launch_file: pathlib.Path) -> None:
    run = run_launch(launch_file)
    made = run.made
    declared = {}
    for arg in of_kind(made, "DeclareLaunchArgument"):
        name = arg.args[0]
        assert "default_value" in arg.kwargs, f"argument {name} has no default"
        assert len(arg.kwargs.get("description", "")) > 10, f"argument {name} has no real description"
        declared[name] = arg
    assert declared, "no arguments declared"
    used = {c.args[0] for c in of_kind(made, "LaunchConfiguration")} | run.configurations.read
    assert set(declared) - used == set(), "declared but never used"
    assert used - set(declared) == set(), "used but never declared"
    assert {"log_level"} <= set(declared)


def test_named_executables_and_files_exist(launch_file: pathlib.Path) -> None:
    made = run_with_stand_ins(launch_file)
    nodes = of_kind(made, "Node")
    includes = of_kind(made, "IncludeLaunchDescription")
    assert nodes or includes, "the launch file starts no node"
    for node in nodes:
        assert node.kwargs["package"] == "kairo_ros"
        exe = EXECUTABLES / node.kwargs["executable"]
        assert exe.exists() and os.access(exe, os.X_OK), f"{exe} is not an installed executable"
    files = [p for p in map(share_path, of_kind(made, "PathJoinSubstitution")) if p is not None]
    assert files, "names no installed file (params file)"
    for path in files:
        assert path.exists(), f"{path} is not installed by kairo_ros"
        if path.suffix == ".yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict)
    included = {share_path(i.args[0].args[0]) for i in includes}
    for path in included:
        assert path is not None and path.exists(), f"includes {path}, which is not installed"


def test_included_launch_files_get_only_arguments_they_declare(launch_file: pathlib.Path) -> None:
    for include in of_kind(run_with_stand_ins(launch_file), "IncludeLaunchDescription"):
        target = share_path(include.args[0].args[0])
        assert target is not None
        declared = {a.args[0] for a in of_kind(run_with_stand_ins(target), "DeclareLaunchArgument")}
        passed = {name for name, _value in include.kwargs["launch_arguments"]}
        assert passed <= declared, f"{target.name} does not declare {passed - declared}"



# --- what each node gets: the params file, then only the arguments the user gave -------------------
def resolve(value: Any, configurations: dict[str, Any]) -> Any:
    """A launch substitution (stand-in) as launch would perform it with these configurations."""
    if isinstance(value, Recorded) and value.kind == "LaunchConfiguration":
        return resolve(configurations[value.args[0]], configurations)
    if isinstance(value, Recorded) and value.kind == "ParameterValue":
        text = resolve(value.args[0], configurations)
        kind = value.kwargs.get("value_type")
        return text.strip().lower() == "true" if kind is bool else kind(text) if kind else yaml.safe_load(text)
    if isinstance(value, Recorded) and value.kind == "PathJoinSubstitution":
        return share_path(value)
    if isinstance(value, dict):
        return {key: resolve(item, configurations) for key, item in value.items()}
    return value


def node_parameters(path: pathlib.Path, given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """node name -> the parameters it starts with: each params file, then each dict, in launch_ros order."""
    run = run_launch(path, given)
    started: dict[str, dict[str, Any]] = {}
    for include in of_kind(run.made, "IncludeLaunchDescription"):
        target = share_path(include.args[0].args[0])
        assert target is not None
        passed = {name: resolve(value, run.configurations) for name, value in include.kwargs["launch_arguments"]}
        # Launch configurations are not scoped: the included file sees the includer's too.
        started.update(node_parameters(SOURCE / "launch" / target.name, {**run.configurations, **passed}))
    for node in of_kind(run.made, "Node"):
        values: dict[str, Any] = {}
        for entry in (resolve(e, run.configurations) for e in node.kwargs["parameters"]):
            if isinstance(entry, dict):
                values.update(entry)
            else:
                doc = yaml.safe_load(pathlib.Path(entry).read_text())
                values.update(doc.get(f"/**/{node.kwargs['name']}", {}).get("ros__parameters", {}))
        started[node.kwargs["name"]] = values
    return started


@pytest.fixture
def custom_params(tmp_path: pathlib.Path) -> pathlib.Path:
    """A params file for both nodes whose values all differ from the defaults."""
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump({
        "/**/kairo_manager": {"ros__parameters": {"export_dir": "/srv/exports", "request_timeout_s": 7.0,
                                                  "api_url": "http://10.0.0.5:9000"}},
        "/**/kairo_inference": {"ros__parameters": {"cache_dir": "/srv/cache", "input_qos": "reliable",
                                                    "api_url": "http://10.0.0.5:9000", "task": "navigation",
                                                    "poll_period_s": 5.0}},
    }))
    return path


def test_the_params_file_takes_effect_through_every_launch_file(custom_params: pathlib.Path) -> None:
    file_values = yaml.safe_load(custom_params.read_text())
    for launch_name, nodes in [("kairo.launch.py", ("kairo_manager", "kairo_inference")),
                               ("manager.launch.py", ("kairo_manager",)),
                               ("inference.launch.py", ("kairo_inference",))]:
        started = node_parameters(SOURCE / "launch" / launch_name, {"params_file": str(custom_params)})
        for node in nodes:
            expected = file_values[f"/**/{node}"]["ros__parameters"]
            got = {name: started[node].get(name) for name in expected}
            assert got == expected, f"{launch_name} overrides {node}'s params file"


def test_only_arguments_given_override_the_params_file(custom_params: pathlib.Path) -> None:
    given = {"params_file": str(custom_params), "api_url": "http://127.0.0.1:8123"}
    started = node_parameters(SOURCE / "launch" / "kairo.launch.py", given)
    assert started["kairo_manager"]["api_url"] == started["kairo_inference"]["api_url"] == "http://127.0.0.1:8123"
    assert started["kairo_manager"]["export_dir"] == "/srv/exports"
    assert started["kairo_inference"]["cache_dir"] == "/srv/cache"
    # Given equal to the node's default, it still wins over the file; typed as the parameter is.
    alone = node_parameters(SOURCE / "launch" / "inference.launch.py",
                            {"params_file": str(custom_params), "input_qos": "sensor_data", "poll_period_s": "2"})
    assert alone["kairo_inference"]["input_qos"] == "sensor_data"
    assert alone["kairo_inference"]["poll_period_s"] == 2.0
    # The installed config/kairo.yaml (the default params_file) reaches the nodes unchanged.
    installed = yaml.safe_load((SHARE / "config" / "kairo.yaml").read_text())
    started = node_parameters(SOURCE / "launch" / "kairo.launch.py", {})
    for node in ("kairo_manager", "kairo_inference"):
        for name, value in installed[f"/**/{node}"]["ros__parameters"].items():
            assert started[node][name] == value, f"{node} {name}"


# --- one naming of the topic arguments, here and in an exported model package ------------------------
@pytest.mark.parametrize("task", ["manipulation", "navigation", "object_detection"])
def test_exported_package_takes_the_topic_arguments_of_inference_launch(task: str, tmp_path: pathlib.Path) -> None:
    import io
    import tarfile

    from kairo_backend.exporters.ros2_pkg import PackageSpec, build
    from kairo_features.tasks import default_features

    spec = PackageSpec(model_id="mdl_abc123", version="v1", name="arm", task=task, robot_id="rob_a1b2c3d4",
                       onnx=b"not used here", onnx_sha256="0" * 64, features=default_features(task))
    with tarfile.open(fileobj=io.BytesIO(build(spec)), mode="r:gz") as archive:
        member = archive.extractfile(f"{spec.package}/launch/model.launch.py")
        assert member is not None
        exported_file = tmp_path / "model.launch.py"
        exported_file.write_bytes(member.read())

    def topic_arguments(path: pathlib.Path) -> dict[str, str]:
        return {a.args[0]: a.kwargs["default_value"] for a in of_kind(run_launch(path).made, "DeclareLaunchArgument")
                if a.args[0].endswith("_topic")}

    exported = topic_arguments(exported_file)
    ours = topic_arguments(SOURCE / "launch" / "inference.launch.py")
    assert exported, "the exported launch file has no topic arguments"
    assert exported.items() <= ours.items(), f"exported {exported} vs inference.launch.py {ours}"
