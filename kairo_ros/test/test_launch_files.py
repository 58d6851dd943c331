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


def run_with_stand_ins(path: pathlib.Path) -> list[Recorded]:
    saved = {name: sys.modules.get(name) for name in LAUNCH_MODULES}
    sys.modules.update({name: recording_module(name) for name in LAUNCH_MODULES})
    Recorded.made = []
    try:
        spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.generate_launch_description()
        return list(Recorded.made)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


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
    made = run_with_stand_ins(launch_file)
    declared = {}
    for arg in of_kind(made, "DeclareLaunchArgument"):
        name = arg.args[0]
        assert "default_value" in arg.kwargs, f"argument {name} has no default"
        assert len(arg.kwargs.get("description", "")) > 10, f"argument {name} has no real description"
        declared[name] = arg
    assert declared, "no arguments declared"
    used = {c.args[0] for c in of_kind(made, "LaunchConfiguration")}
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

