"""The colcon workspace: valid format-3 manifests and an install tree where ROS tools look."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_prefix, get_package_share_directory
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "sim_bridge_core",
    "sim_bridge_sim",
    "sim_bridge_policy",
    "sim_bridge_randomization",
    "sim_bridge",
]
ROS_PACKAGES = {
    *PACKAGES,
    "rclpy",
    "rcl_interfaces",
    "builtin_interfaces",
    "sensor_msgs",
    "trajectory_msgs",
    "std_msgs",
    "std_srvs",
    "rosgraph_msgs",
    "geometry_msgs",
    "ament_index_python",
}
EXECUTABLES = {
    "sim_bridge_sim": ["simulator"],
    "sim_bridge_policy": ["policy"],
    "sim_bridge_randomization": ["randomization"],
}


@pytest.mark.parametrize("name", PACKAGES)
def test_package_manifest_and_markers(name):
    source = ROOT / "src" / name
    package = parse_package(source / "package.xml")  # validates against format 3 rules
    assert package.package_format == 3 and package.name == name
    assert package.get_build_type() == "ament_python"
    assert (source / "resource" / name).is_file()
    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(source / "setup.cfg")
    assert setup_cfg["install"]["install_scripts"] == f"$base/lib/{name}"
    assert setup_cfg["develop"]["script_dir"] == f"$base/lib/{name}"
    # Every sibling package a node imports is declared, so rosdep and colcon order builds right.
    declared = {dep.name for dep in package.exec_depends} | {name}
    for module in (source / name).rglob("*.py"):
        imported = set(re.findall(r"^\s*(?:from|import)\s+(\w+)", module.read_text(), re.MULTILINE))
        missing = (imported & ROS_PACKAGES) - declared
        assert not missing, f"{module.name} imports {missing} but package.xml lacks them"


@pytest.mark.parametrize(("package", "executable"), [(p, e) for p, es in EXECUTABLES.items() for e in es])
def test_executables_are_where_ros2_run_looks(package, executable):
    assert (Path(get_package_prefix(package)) / "lib" / package / executable).is_file()


def _source_file(path: Path) -> bool:
    return path.is_file() and "__pycache__" not in path.parts


def test_launch_and_config_installed_into_share():
    share = Path(get_package_share_directory("sim_bridge"))
    for folder in ("launch", "config"):
        # (``ros2 launch`` may leave a __pycache__ beside the launch files it imported)
        installed = {p.relative_to(share / folder) for p in (share / folder).rglob("*") if _source_file(p)}
        sources = {p.relative_to(ROOT / folder) for p in (ROOT / folder).rglob("*") if _source_file(p)}
        assert sources and installed == sources, folder


# composition_interfaces/srv/LoadNode of ROS 2 Jazzy (rcl_interfaces 2.0.3): the type hash that
# DDS discovery compares, so a LoadNode built here talks to a real Jazzy component container.
JAZZY_LOAD_NODE_HASH = "RIHS01_2e521ef6066fba6d7fc3a3b175d486709f01b4d738d9a59188858546fc8e5acd"


@pytest.mark.usefixtures("ros2_tooling")  # skips (or fails, where required) without the tooling
def test_ros2_launch_runs_in_the_environment_the_readme_describes():
    """A fresh shell that only sources what the README says: launch_ros imports composition_interfaces,
    which `make setup` builds, so nothing else may have to be on the path."""
    source = ". .venv/bin/activate && . install/setup.bash"
    if os.environ.get("ROS_DISTRO"):  # a ROS 2 install underlays the workspace
        source = f". /opt/ros/{os.environ['ROS_DISTRO']}/setup.bash && {source}"
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run(
        ["bash", "-c", f"{source} && ros2 launch sim_bridge deploy.launch.py --show-args"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'checkpoint':" in result.stdout, result.stdout


def test_load_node_is_jazzy_s_and_crosses_dds(ros_client):
    """The LoadNode built from src/composition_interfaces carries Jazzy's type hash and its request
    (with rcl_interfaces parameters) and response cross DDS through the generated typesupport."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue

    from composition_interfaces.srv import LoadNode

    description = Path(get_package_share_directory("composition_interfaces"), "srv", "LoadNode.json")
    hashes = {h["type_name"]: h["hash_string"] for h in json.loads(description.read_text())["type_hashes"]}
    assert hashes["composition_interfaces/srv/LoadNode"] == JAZZY_LOAD_NODE_HASH

    def load(request: LoadNode.Request, response: LoadNode.Response) -> LoadNode.Response:
        response.success = True
        response.full_node_name = f"{request.node_namespace}/{request.node_name}"
        response.unique_id = len(request.parameters) + request.parameters[0].value.integer_value
        return response

    ros_client.node.create_service(LoadNode, "/container/_container/load_node", load)
    gain = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=41)
    request = LoadNode.Request(
        package_name="pkg",
        plugin_name="pkg::Node",
        node_name="talker",
        node_namespace="/ns",
        remap_rules=["a:=b"],
        parameters=[Parameter(name="gain", value=gain)],
    )
    response = ros_client.call(LoadNode, "/container/_container/load_node", request)
    assert (response.success, response.full_node_name, response.unique_id) == (True, "/ns/talker", 42)
