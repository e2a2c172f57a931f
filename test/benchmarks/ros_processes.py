"""Starting and stopping the simulator node from a benchmark, isolated on its own DDS domain.

Imported by the ROS benchmarks beside this file (they run as ``python test/benchmarks/<name>.py``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def isolate_dds(domain_id: int | None) -> int:
    """Own ROS_DOMAIN_ID, localhost discovery; set before rclpy.init and inherited by children."""
    domain = domain_id if domain_id is not None else random.SystemRandom().randint(1, 100)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return domain


def simulator_executable() -> str:
    """The installed simulator (``ros2 run sim_bridge_sim simulator``), found through the ament index."""
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix("sim_bridge_sim"), "lib", "sim_bridge_sim", "simulator")
    if not path.exists():
        sys.exit(f"{path} is not built: run `make setup`")
    return str(path)


def start_simulator(parameters: dict[str, Any], log_path: Path) -> subprocess.Popen:
    args = [simulator_executable(), "--ros-args"]
    for key, value in parameters.items():
        args += ["-p", f"{key}:={value}"]
    with open(log_path, "w") as log:
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy()
        )


def stop_process(proc: subprocess.Popen) -> None:
    """SIGINT to the child's own process group, then SIGKILL if it does not exit."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
