"""`ros2 launch sim_bridge training.launch.py [key:=value ...]`: config/training.yaml, one process per node.

The arguments are those of `bringup training` (see docs/bringup.md); the nodes and their
parameters come from the same code, sim_bridge_core.bringup.description.describe.
"""

from sim_bridge.launch_support import launch_description


def generate_launch_description():
    return launch_description("training")
