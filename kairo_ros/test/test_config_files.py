"""Every params file the package installs sets only parameters its node declares,
and the node reads them: each file given to the real node process, then its
parameters read back over ROS."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from ament_index_python.packages import get_package_share_directory
from rcl_interfaces.srv import GetParameters, ListParameters
from rclpy.parameter import parameter_value_to_python

SHARE = pathlib.Path(get_package_share_directory("kairo_ros"), "config")  # the sourced workspace's
NODES = {"kairo_manager": "manager.yaml", "kairo_inference": "inference.yaml"}


def sections(path: pathlib.Path) -> dict[str, dict[str, object]]:
    """node name -> its ros__parameters, from a params file keyed '/**/<node>'."""
    doc = yaml.safe_load(path.read_text())
    return {key.rsplit("/", 1)[-1]: value["ros__parameters"] for key, value in doc.items()}


@pytest.mark.parametrize(("node", "params_file"), [
    *NODES.items(), ("kairo_manager", "kairo.yaml"), ("kairo_inference", "kairo.yaml")])
def test_params_file_sets_declared_parameters(node: str, params_file: str, processes, ros) -> None:  # type: ignore[no-untyped-def]
    path = SHARE / params_file
    expected = sections(path)[node]
    assert expected, f"{params_file} has no parameters for {node}"
    child = processes.start(node, [node, "--ros-args", "-r", "__ns:=/kairo", "--params-file", str(path)])
    full_name = f"/kairo/{node}"
    processes.wait_until(lambda: full_name in ros.node_names(), 30, f"node {full_name}", watch=child)
    names = ros.call(ros.node.create_client(ListParameters, f"{full_name}/list_parameters"),
                     ListParameters.Request(), 10).result.names
    assert set(expected) - set(names) == set(), f"{params_file} sets parameters {node} does not declare"
    values = ros.call(ros.node.create_client(GetParameters, f"{full_name}/get_parameters"),
                      GetParameters.Request(names=list(expected)), 10).values
    read = dict(zip(expected, (parameter_value_to_python(v) for v in values), strict=True))
    assert read == expected
    assert child.alive
