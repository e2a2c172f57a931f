"""ROS plumbing shared by the benchmarks: DDS isolation, node processes, a client node.

Imported by the ROS benchmarks beside this file (they run as ``python test/benchmarks/<name>.py``).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def isolate_dds(domain_id: int | None) -> int:
    """Own ROS_DOMAIN_ID, localhost discovery; set before rclpy.init and inherited by children."""
    domain = domain_id if domain_id is not None else random.SystemRandom().randint(1, 100)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return domain


def node_executable(package: str, name: str) -> str:
    """An installed node (``ros2 run <package> <name>``), found through the ament index."""
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix(package), "lib", package, name)
    if not path.exists():
        sys.exit(f"{path} is not built: run `make setup`")
    return str(path)


def start_node(package: str, name: str, parameters: dict[str, Any], log_path: Path) -> subprocess.Popen:
    """The node as its own process (own process group), output to ``log_path``."""
    args = [node_executable(package, name), "--ros-args"]
    for key, value in parameters.items():
        args += ["-p", f"{key}:={value}"]
    with open(log_path, "w") as log:
        return subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy()
        )


def start_simulator(parameters: dict[str, Any], log_path: Path) -> subprocess.Popen:
    return start_node("sim_bridge_sim", "simulator", parameters, log_path)


def start_logged(args: list[str], log: Path) -> subprocess.Popen:
    """A process (its own process group) whose output goes to ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    """Until ``text`` is in ``log``; exit with the log if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{log.name}: no '{text}':\n{log.read_text()}")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc; NaN where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


@contextlib.contextmanager
def client_node(name: str) -> Iterator[tuple[Any, Any]]:
    """(node, single-threaded executor) on a context of their own, torn down on exit."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"{name}_{os.getpid()}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        context.try_shutdown()
