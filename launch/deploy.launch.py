"""`ros2 launch sim_bridge deploy.launch.py [key:=value ...]`: config/deploy.yaml, one process per node.

The arguments are those of `bringup deploy` (see docs/bringup.md); the nodes and their
parameters come from the same code, sim_bridge_core.bringup.description.describe.
"""

from sim_bridge.launch_support import launch_description


def generate_launch_description():
    return launch_description("deploy")
