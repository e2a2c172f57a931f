"""What every launch file does: declare the bringup arguments and start config/<job>.yaml's nodes.

The launch files are one line each (``launch_description("training")``); the work is done by
``sim_bridge_core.bringup.describe``, the same code the ``bringup`` runner uses, so a launch
and a ``bringup`` run of the same job start the same nodes with the same parameters.
"""

from __future__ import annotations

from typing import Any

from sim_bridge_core.bringup import BringupArguments, describe, parse_overrides
from sim_bridge_core.config import setting_specs

from sim_bridge.paths import config_dir


def node_arguments(job: str, launch_configurations: dict[str, str]) -> list[dict[str, Any]]:
    """Keyword arguments of one ``launch_ros.actions.Node`` per node of the job.

    Launch arguments left empty keep the config file's value; the others are parsed as YAML,
    like ``key:=value`` on the ``bringup`` command line.
    """
    given = [
        f"{spec.name}:={launch_configurations[spec.name]}"
        for spec in setting_specs(BringupArguments)
        if launch_configurations.get(spec.name, "") != ""
    ]
    bringup = describe(job, parse_overrides(given), config_dir())
    return [
        {
            "package": node.package,
            "executable": node.executable,
            "name": node.name,
            "output": "screen",
            "parameters": [node.parameters],
            "remappings": node.remappings,
        }
        for node in bringup.nodes
    ]


def launch_description(job: str):  # -> launch.LaunchDescription (launch exists only in ROS installs)
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import Node

    from launch import LaunchDescription

    arguments = [
        DeclareLaunchArgument(
            spec.name, default_value="", description=f"{spec.description} (config/{job}.yaml)"
        )
        for spec in setting_specs(BringupArguments)
    ]

    def nodes(context) -> list[Node]:
        return [Node(**kwargs) for kwargs in node_arguments(job, context.launch_configurations)]

    return LaunchDescription([*arguments, OpaqueFunction(function=nodes)])
