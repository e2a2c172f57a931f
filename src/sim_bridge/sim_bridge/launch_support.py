"""What every launch file does: declare the bringup arguments and start config/<job>.yaml's nodes.

The launch files are one line each (``launch_description("training")``); the work is done by
``sim_bridge_core.bringup.description.describe``, the same code the ``bringup`` runner uses, so a launch
and a ``bringup`` run of the same job start the same nodes with the same parameters. They also
end alike: when the node running the job (the policy in train or eval mode, the evaluator) exits,
the launch shuts the other nodes down and ends, non-zero if the job failed.
"""

from __future__ import annotations

from typing import Any

from sim_bridge_core.bringup.description import BringupArguments, describe, parse_overrides, runs_job
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
            "namespace": node.namespace,
            "output": "screen",
            "parameters": [node.parameters],
            "remappings": node.remappings,
        }
        for node in bringup.nodes
    ]


def runs_the_job(node: dict[str, Any]) -> bool:
    """Whether a node (``node_arguments`` entry) runs the job to its end, so its exit ends the launch
    (the ``bringup`` runner ends on the same node's ``finished``)."""
    return runs_job(node["name"], node["parameters"][0])


JOB_STOP_TIMEOUT_S = 30


class JobFailedError(RuntimeError):
    """The job's node exited non-zero; raised in the launch, it makes ``ros2 launch`` exit 1."""


def launch_description(job: str):  # -> launch.LaunchDescription (launch exists only in ROS installs)
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
    from launch_ros.actions import Node

    from launch import LaunchDescription

    arguments = [
        DeclareLaunchArgument(
            spec.name, default_value="", description=f"{spec.description} (config/{job}.yaml)"
        )
        for spec in setting_specs(BringupArguments)
    ]

    def job_ended(event, context) -> list[Shutdown]:  # on_exit of the job's node
        if event.returncode != 0:
            raise JobFailedError(f"{event.process_name} exited with code {event.returncode}")
        return [Shutdown(reason=f"{job}: {event.process_name} finished")]

    def nodes(context) -> list[Node]:
        launched = []
        for kwargs in node_arguments(job, context.launch_configurations):
            if runs_the_job(kwargs):
                # After Ctrl-C the job writes its checkpoint, bag and outputs: more than the 5 s
                # launch gives a node before escalating to SIGTERM and then SIGKILL.
                kwargs.update(on_exit=job_ended, sigterm_timeout=str(JOB_STOP_TIMEOUT_S))
            launched.append(Node(**kwargs))
        return launched

    return LaunchDescription([*arguments, OpaqueFunction(function=nodes)])
