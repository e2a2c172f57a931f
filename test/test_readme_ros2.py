"""The README's ros2 commands, run exactly as written (bash, the real ros2 CLI) against the nodes they name.

The commands are read from README.md's bash blocks, so the README cannot drift from what works.
They run with the ROS 2 daemon, as a user's would; the test starts it first (a fresh daemon
answers "Node not found" until discovery has run) and stops it at the end.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from sim_bridge_core.models import load_robot

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_command(prefix: str) -> str:
    """The one command of the README's bash blocks that starts with ``prefix``, as written."""
    commands, current = [], ""
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            current += line + "\n"
            if not (current.rstrip().endswith("\\") or current.count('"') % 2):  # a whole command
                commands.append(current.strip())
                current = ""
    matches = [command for command in commands if command.startswith(prefix)]
    assert len(matches) == 1, f"README commands starting with {prefix!r}: {matches}"
    return matches[0]


class Shell:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd

    def run(self, command: str, timeout: float = 60.0) -> str:
        """Run ``command`` in bash as a user would type it; its output, failing the test if it fails."""
        result = subprocess.run(
            ["bash", "-c", command],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        return result.stdout

    def publish_until(self, command: str, arrived: Callable[[], bool], what: str, tries: int = 3) -> None:
        """Run a ``ros2 topic pub --once`` command until its effect shows. It exits 0.1 s after
        publishing to the first subscription it matched; on a loaded machine that can be before the
        subscriber has matched it back, and the one message is lost. A user would run it again."""
        for _ in range(tries):
            self.run(command)
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline:
                if arrived():
                    return
                time.sleep(0.1)
        raise AssertionError(f"{what}: not seen after running {tries} times: {command}")

    def wait_for_node(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while name not in self.run("ros2 node list").split():
            assert time.monotonic() < deadline, f"{name} not discovered by the ros2 daemon"
            time.sleep(0.5)


@pytest.fixture
def shell(ros2_tooling: dict[str, str], tmp_path: Path) -> Iterator[Shell]:
    shell = Shell(ros2_tooling, tmp_path)
    shell.run("ros2 daemon start")
    try:
        yield shell
    finally:
        shell.run("ros2 daemon stop")


def test_simulator_commands_do_what_the_readme_says(shell, start_executable, ros_client):
    states = ros_client.collect(JointState, "/joint_states")
    clock = ros_client.collect(Clock, "/clock")
    start_executable("sim_bridge", "bringup", "sim")  # = ros2 launch sim_bridge sim.launch.py
    ros_client.wait_until(lambda: states, timeout=60, what="joint_states")
    shell.wait_for_node("/simulator")
    home = load_robot("arm7").home  # where a reset puts the arm (the first state seen may have sagged)

    target = [0, -0.5, 0, -2.0, 0, 1.6, 0.8]
    shell.publish_until(
        readme_command("ros2 topic pub --once /joint_trajectory"),
        lambda: np.allclose(states[-1].position, target, atol=0.05),
        what="the arm at the target",
    )
    echoed = shell.run(readme_command("ros2 topic echo --once /joint_states"))
    assert "name:\n- joint1\n- joint2" in echoed and "position:" in echoed
    assert "Integer value is: 1" in shell.run(readme_command("ros2 param get /simulator num_envs"))
    changed = shell.run(readme_command("ros2 param set /simulator randomization_enabled false"))
    assert "Set parameter successful" in changed

    assert "success=True, message='paused'" in shell.run(readme_command("ros2 service call /simulator/pause"))
    # The /clock sent before the pause may still be on its way on a loaded machine: wait until it
    # has all come (a simulator that still stepped would send one every 2 ms and never fall silent).
    seen = [len(clock), time.monotonic()]

    def silent() -> bool:
        if len(clock) != seen[0]:
            seen[:] = [len(clock), time.monotonic()]
        return time.monotonic() - seen[1] > 0.3

    ros_client.wait_until(silent, timeout=10, what="/clock to stop after the pause")
    paused_at, count = clock[-1].clock, len(clock)
    time.sleep(0.5)
    assert len(clock) == count, "/clock went on while paused"
    assert "success=True" in shell.run(readme_command("ros2 service call /simulator/step"))
    ros_client.wait_until(lambda: len(clock) > count, timeout=10, what="/clock after a step")
    step_ns = (clock[-1].clock.sec - paused_at.sec) * 10**9 + clock[-1].clock.nanosec - paused_at.nanosec
    assert step_ns == 2_000_000  # one control period of config/sim.yaml
    assert "success=True" in shell.run(readme_command("ros2 service call /simulator/reset"))
    ros_client.wait_until(
        lambda: np.allclose(states[-1].position, home, atol=1e-6), timeout=10, what="the arm back at home"
    )


def test_deploy_commands_do_what_the_readme_says(shell, start_executable, small_checkpoint):
    deploy = start_executable("sim_bridge", "bringup", "deploy", f"checkpoint:={small_checkpoint}")
    shell.wait_for_node("/policy")
    shell.publish_until(
        readme_command("ros2 topic pub --once /goal"),
        lambda: "goal in effect: [0.5, 0.1, 0.4]" in deploy.output(),
        what="the goal in effect",
    )
    held = shell.run(readme_command("ros2 service call /policy/enable"))
    assert "success=True, message='holding position'" in held
