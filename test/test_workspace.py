"""The colcon workspace: valid format-3 manifests and an install tree where ROS tools look."""

from __future__ import annotations

import configparser
import re
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


def test_launch_and_config_installed_into_share():
    share = Path(get_package_share_directory("sim_bridge"))
    for folder in ("launch", "config"):
        installed = {p.relative_to(share / folder) for p in (share / folder).rglob("*") if p.is_file()}
        sources = {p.relative_to(ROOT / folder) for p in (ROOT / folder).rglob("*") if p.is_file()}
        assert sources and installed == sources, folder
