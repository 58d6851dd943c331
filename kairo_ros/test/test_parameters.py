"""Both nodes' parameters as a robot engineer meets them with `ros2 node list` and `ros2 param`.

The ros2 command line is not installable here, so each test makes the
calls it makes (graph queries, ListParameters, GetParameters,
SetParameters) from this process against the real node processes; and
the README, the config files and the dataclasses are held to each node's
one parameter table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from onnx_models import features, linear_model
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, ListParameters, SetParameters
from rclpy.parameter import Parameter, parameter_value_to_python

from conftest import new_group
from kairo_ros.inference.params import SPECS as INFERENCE_SPECS
from kairo_ros.inference.params import InferenceParams
from kairo_ros.manager.params import SPECS as MANAGER_SPECS
from kairo_ros.manager.params import ManagerParams
from kairo_ros.parameters import ParameterSpec, markdown_table
from kairo_ros.testing.graph import SpinningNode
from kairo_ros.testing.processes import ChildProcess, ProcessGroup, claim_domain_id, isolated_ros_env

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = ROOT / "kairo_ros" / "config"
SPECS = {"kairo_manager": MANAGER_SPECS, "kairo_inference": INFERENCE_SPECS}
KIND = {"bool": ParameterType.PARAMETER_BOOL, "integer": ParameterType.PARAMETER_INTEGER,
        "double": ParameterType.PARAMETER_DOUBLE, "string": ParameterType.PARAMETER_STRING,
        "string_array": ParameterType.PARAMETER_STRING_ARRAY}


@dataclasses.dataclass
class Running:
    ros: SpinningNode
    group: ProcessGroup
    children: dict[str, ChildProcess]
    model: pathlib.Path


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Both nodes, started as a user would, with integers given for two double parameters."""
    root = tmp_path_factory.mktemp("parameters")
    group = new_group(root / "logs")
    model = linear_model(features("manipulation"), root / "arm.onnx", model_id="mdl_file", version="v3")
    # A domain of its own: the graph then holds only what a robot running these nodes would show, not the
    # client nodes other tests of this process leave in the session's domain.
    domain, claim = claim_domain_id()
    env = isolated_ros_env(domain)
    with claim, SpinningNode("kairo_param_probe", domain_id=domain) as ros:
        try:
            children = {
                "kairo_inference": group.start("kairo_inference", [
                    "kairo_inference", "--ros-args", "-p", f"model_path:={model}", "-p", "poll_period_s:=1"],
                    env=env),
                "kairo_manager": group.start("kairo_manager", [
                    "kairo_manager", "--ros-args", "-p", "poll_period_s:=2"], env=env),
            }
            for name, child in children.items():
                group.wait_until(lambda n=name: f"/kairo/{n}" in ros.node_names(), 30, f"node /kairo/{name}",
                                 watch=child)
            children["kairo_inference"].wait_for_output("serving", 30)
            yield Running(ros, group, children, model)
        finally:
            group.stop_all()


def dump(ros: SpinningNode, node: str) -> dict[str, ParameterValue]:
    """What `ros2 param dump` reads: every listed parameter's value."""
    names = ros.call(ros.node.create_client(ListParameters, f"{node}/list_parameters"),
                     ListParameters.Request(), 10).result.names
    values = ros.call(ros.node.create_client(GetParameters, f"{node}/get_parameters"),
                      GetParameters.Request(names=list(names)), 10).values
    assert len(values) == len(names), f"{node} lists {list(names)} but has values for {len(values)} of them"
    return dict(zip(names, values, strict=True))


def get(ros: SpinningNode, node: str, name: str) -> Any:
    """What `ros2 param get` reads."""
    [value] = ros.call(ros.node.create_client(GetParameters, f"{node}/get_parameters"),
                       GetParameters.Request(names=[name]), 10).values
    return parameter_value_to_python(value)


def set_parameter(ros: SpinningNode, node: str, name: str, value: Any) -> Any:
    """What `ros2 param set` sends; its result (successful, reason)."""
    client = ros.node.create_client(SetParameters, f"{node}/set_parameters")
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return ros.call(client, request, 10).results[0]


def readme_node_list() -> set[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### What `ros2 node list` shows\n\n```\n(.*?)```", text, re.S)
    assert block, "README has no 'What `ros2 node list` shows' block"
    return set(block.group(1).split())


# --- point 1: ros2 node list / ros2 param list --------------------------------------------------
def test_every_node_ros2_node_list_shows_answers_parameter_calls(running: Running) -> None:
    ros = running.ros
    # The inference node's data path node is in the graph too (hidden or not).
    running.group.wait_until(lambda: any("inference_data" in n for n in ros.node_names()), 20,
                             "the data path's node in the graph")
    own = ros.node.get_fully_qualified_name()

    def visible() -> set[str]:
        # `ros2 node list` (and `ros2 param list`, which asks each of them) skips names starting with '_'.
        return {n for n in ros.node_names() if not n.rsplit("/", 1)[-1].startswith("_")} - {own}

    expected = readme_node_list()
    with contextlib.suppress(TimeoutError):  # discovery takes a moment; the assertion shows any difference
        running.group.wait_until(lambda: visible() == expected, 60, "the README's node list")
    assert visible() == expected
    for node in sorted(expected):
        answer = ros.call(ros.node.create_client(ListParameters, f"{node}/list_parameters"),
                          ListParameters.Request(), 10)
        assert answer.result.names, f"{node} lists no parameter"


# --- point 2: ros2 param dump ----------------------------------------------------------------------
@pytest.mark.parametrize("node", ["kairo_manager", "kairo_inference"])
def test_param_dump_lists_every_parameter_with_its_value(running: Running, node: str) -> None:
    dumped = dump(running.ros, f"/kairo/{node}")
    given = {"kairo_manager": {"poll_period_s": 2.0},
             "kairo_inference": {"poll_period_s": 1.0, "model_path": str(running.model)}}[node]
    for spec in SPECS[node]:
        assert spec.name in dumped, f"{node} does not list {spec.name}"
        value = dumped[spec.name]
        assert value.type == KIND[spec.kind], f"{spec.name}: type {value.type}, declared {spec.kind}"
        expected = given.get(spec.name, spec.default)
        got = parameter_value_to_python(value)
        assert (tuple(got) if isinstance(got, list) else got) == expected, spec.name


# --- point 3: ros2 param set -------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "bad", "reason"), [
    ("input_qos", "foo", "must be one of sensor_data, reliable"),
    ("model_path", "/nonexistent.onnx", "/nonexistent.onnx is not a file"),
    ("poll_period_s", -1.0, "poll_period_s"),
    ("intra_op_threads", 1000, "intra_op_threads"),
    ("topic_remaps", ["joint_positions"], "must look like 'joint_positions:=/my_arm/joint_states'"),
    ("task", "juggling", "must be one of manipulation, navigation, object_detection"),
    ("poll_period_s", "soon", "Wrong parameter type"),  # rclpy refuses it before the spec is asked
])
def test_a_bad_value_is_refused_with_its_reason_and_the_old_value_stays(running: Running, name: str, bad: Any,
                                                                          reason: str) -> None:
    node = "/kairo/kairo_inference"
    before = get(running.ros, node, name)
    result = set_parameter(running.ros, node, name, bad)
    assert not result.successful and reason in result.reason, result.reason
    assert get(running.ros, node, name) == before
    assert running.children["kairo_inference"].alive


def test_a_good_value_is_taken_an_integer_as_a_double(running: Running) -> None:
    node = "/kairo/kairo_inference"
    assert set_parameter(running.ros, node, "request_timeout_s", 3).successful
    value = get(running.ros, node, "request_timeout_s")
    assert isinstance(value, float) and value == 3.0
    assert set_parameter(running.ros, node, "request_timeout_s", 10.0).successful


# --- point 4: a bad value at start ---------------------------------------------------------------------
@pytest.mark.parametrize(("executable", "argument", "named"), [
    ("kairo_manager", "poll_period_s:=soon", "poll_period_s"),
    ("kairo_manager", "max_outage_s:=0.5", "max_outage_s"),
    ("kairo_manager", "api_url:=ftp://example.com", "api_url"),
    ("kairo_inference", "input_qos:=foo", "input_qos"),
    ("kairo_inference", "intra_op_threads:=1.5", "intra_op_threads"),
    ("kairo_inference", "model_path:=/nonexistent.onnx", "model_path"),
])
def test_a_bad_value_at_start_ends_the_node_with_one_line(executable: str, argument: str, named: str) -> None:
    ended = subprocess.run([executable, "--ros-args", "-p", argument], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ))
    output = (ended.stdout + ended.stderr).strip()
    assert ended.returncode == 2, output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1 and output.startswith(f"{executable}: {named}: "), output


# --- one table per node: the dataclass, the config files and the README follow it ---------------------
def test_the_tables_name_the_same_tasks_and_qos_as_the_node() -> None:
    from kairo_ros.api import TASKS
    from kairo_ros.inference import params, wiring

    assert params.TASKS == TASKS and params.INPUT_QOS_CHOICES == wiring.INPUT_QOS_CHOICES
    for choice in params.INPUT_QOS_CHOICES:
        wiring.input_qos(choice)


def test_launch_files_can_read_the_tables_without_the_node_stack() -> None:
    """ros2 launch imports the tables: they must not pull in the HTTP client, numpy or onnxruntime."""
    code = ("import sys, kairo_ros.inference.params, kairo_ros.manager.params; "
            "print(sorted(m for m in ('httpx', 'numpy', 'onnxruntime', 'rclpy') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_each_dataclass_has_a_field_per_parameter() -> None:
    assert [f.name for f in dataclasses.fields(ManagerParams)] == [s.name for s in MANAGER_SPECS]
    assert [f.name for f in dataclasses.fields(InferenceParams)] == [s.name for s in INFERENCE_SPECS]


@pytest.mark.parametrize("node", ["kairo_manager", "kairo_inference"])
def test_readme_table_is_the_spec(node: str) -> None:
    table = markdown_table(SPECS[node])
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"### {node}", 1)[1].split("\n### ", 1)[0]
    assert table in section, f"README's {node} parameter table differs from the spec; it should read:\n{table}"


def config_sections() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in sorted(CONFIG.glob("*.yaml")):
        for key, section in yaml.safe_load(path.read_text()).items():
            found.append((path.name, key.rsplit("/", 1)[-1], section["ros__parameters"]))
    return found


@pytest.mark.parametrize(("file", "node", "values"), config_sections(), ids=lambda v: v if isinstance(v, str) else "")
def test_config_files_follow_the_spec(file: str, node: str, values: dict[str, Any]) -> None:
    specs: dict[str, ParameterSpec] = {spec.name: spec for spec in SPECS[node]}
    assert set(values) <= set(specs), f"{file} sets {set(values) - set(specs)}, which {node} does not declare"
    for name, value in values.items():
        assert not specs[name].problem(value), f"{file}: {specs[name].problem(value)}"
    if file != "kairo.yaml":  # manager.yaml and inference.yaml are the defaults, complete
        assert values == {name: spec.default if not isinstance(spec.default, tuple) else list(spec.default)
                          for name, spec in specs.items()}, f"{file} differs from {node}'s defaults"


def test_readme_makes_the_key_before_the_embedded_backend_starts() -> None:
    readme = (ROOT / "README.md").read_text()
    launch = readme.index("kairo.launch.py use_embedded_backend:=true")
    create = readme.rfind("kairo-backend keys create", 0, launch)
    assert create != -1, "README must show `kairo-backend keys create` before launching use_embedded_backend:=true"
    assert "export KAIRO_API_KEY=" in readme[create:launch]


# --- the mechanism without ROS -----------------------------------------------------------------------
def test_a_spec_types_values_as_ros_and_launch_give_them() -> None:
    from kairo_ros.parameters import ParameterError, launch_overrides

    specs = {spec.name: spec for spec in INFERENCE_SPECS}
    assert specs["poll_period_s"].coerce(1) == 1.0 and isinstance(specs["poll_period_s"].coerce(1), float)
    assert specs["providers"].coerce(None) == () and specs["providers"].coerce([]) == ()  # empty list in YAML
    assert specs["poll_period_s"].problem(True) == "poll_period_s: True must be a number"
    assert specs["intra_op_threads"].problem(2.0) == "intra_op_threads: 2.0 must be an integer"
    assert specs["poll_period_s"].problem(float("nan")) == "poll_period_s: nan must be a finite number"
    given = {"poll_period_s": "2", "intra_op_threads": "4", "autostart": "False", "model_id": "", "namespace": "x"}
    assert launch_overrides(INFERENCE_SPECS, given) == {"poll_period_s": 2.0, "intra_op_threads": 4,
                                                        "autostart": False}
    assert launch_overrides(INFERENCE_SPECS, {"use_sim_time": "True"}) == {"use_sim_time": True}
    assert launch_overrides(INFERENCE_SPECS, {"use_sim_time": ""}) == {}
    with pytest.raises(ParameterError, match="intra_op_threads:=many must be a number"):
        launch_overrides(INFERENCE_SPECS, {"intra_op_threads": "many"})
    with pytest.raises(ValueError, match="default is refused"):
        ParameterSpec("rate", 500.0, "Rate.", range=(0.0, 100.0))
