"""Simulator alone: `ros2 launch sim_bridge sim.launch.py [key:=value ...]`.

Every simulator setting is a launch argument with the same name and meaning as the node
parameter (both come from SimulatorConfig). config/sim.yaml holds the defaults; an
argument given on the command line overrides its key, parsed as YAML like `-p key:=value`.
"""

from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node
from sim_bridge_core.config import setting_specs
from sim_bridge_core.simulator import SimulatorConfig

from launch import LaunchContext, LaunchDescription

SPECS = setting_specs(SimulatorConfig)


def simulator_node(context: LaunchContext) -> list[Node]:
    given = {spec.name: context.launch_configurations.get(spec.name, "") for spec in SPECS}
    overrides = {name: yaml.safe_load(text) for name, text in given.items() if text != ""}
    params_file = Path(get_package_share_directory("sim_bridge"), "config", "sim.yaml")
    return [
        Node(
            package="sim_bridge_sim",
            executable="simulator",
            name="simulator",
            output="screen",
            parameters=[str(params_file), overrides],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(
            spec.name, default_value="", description=f"{spec.description} (default {spec.default!r})"
        )
        for spec in SPECS
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=simulator_node)])
