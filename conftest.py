"""Shared test fixtures: DDS isolation per test run, real ROS processes and a client node.

Every run gets its own ROS_DOMAIN_ID and keeps discovery on localhost, so parallel runs
on one machine never see each other's topics. Processes started by a test are stopped
(SIGINT, then SIGKILL, to their whole process group) when the test ends, whatever its outcome.

``ros2`` commands (``ros2 launch``, ``ros2 topic`` ...) need the ROS 2 launch and CLI tooling:
a ROS 2 install, or the wheels ``make setup`` installs from ``ROS_TOOLING_WHEELS``. Without it
those tests skip, saying why; with ``SIM_BRIDGE_REQUIRE_ROS_TOOLING=1`` (set by ``make test``
where the tooling was installed) they fail instead, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sim_bridge_core  # noqa: F401  (picks MuJoCo's GL backend before a test module imports mujoco)


def _claim_domain() -> tuple[int, object]:
    """A ROS domain no other test run on this machine holds: a random free one, locked for the run."""
    candidates = list(range(1, 101))
    random.SystemRandom().shuffle(candidates)
    for domain in candidates:
        lock = open(f"/tmp/sim_bridge_ros_domain_{domain}.lock", "w")  # held until the run exits
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            continue
        return domain, lock
    raise RuntimeError("all ROS domains 1-100 are held by other test runs")


_DOMAIN, _DOMAIN_LOCK = _claim_domain()
os.environ["ROS_DOMAIN_ID"] = str(_DOMAIN)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


def executable(package: str, name: str) -> str:
    """Path of an installed ROS executable (``ros2 run`` location), found through the ament index."""
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix(package), "lib", package, name)
    if not path.exists():
        pytest.fail(f"{path} is not built: run `make setup`")
    return str(path)


class RosProcess:
    """A process (node, ``ros2 launch`` ...) in its own process group; its output goes to a log file."""

    def __init__(
        self, args: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=cwd
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_for_output(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline:
                raise AssertionError(f"'{text}' not in process output:\n{self.output()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_exit(self, timeout: float = 120.0) -> int:
        """The exit code once the process ends by itself; fails the test with its output if it does not."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s:\n{self.output()}") from None

    def interrupt(self) -> None:
        """SIGINT to the whole process group, as Ctrl-C in a terminal sends it."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def stop(self) -> int:
        if self.alive():
            self.interrupt()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):  # also what the process left behind in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_executable(tmp_path: Path) -> Iterator[Callable[..., RosProcess]]:
    """start_executable(package, executable, *args) -> RosProcess, stopped after the test."""
    started: list[RosProcess] = []

    def start(package: str, name: str, *args: str) -> RosProcess:
        process = RosProcess([executable(package, name), *args], tmp_path / f"{name}-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


# composition_interfaces: launch_ros.actions imports it; `make setup` builds it where no ROS 2 install has it.
ROS2_TOOLING = (
    "ros2cli",
    "ros2launch",
    "launch_ros",
    "ros2topic",
    "ros2param",
    "ros2service",
    "composition_interfaces",
)


def ros2_tooling_missing() -> str | None:
    """Why ``ros2 launch`` and the ros2 CLI cannot run here, or None when they can."""
    if shutil.which("ros2") is None:
        return "no `ros2` command"
    missing = [name for name in ROS2_TOOLING if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed" if missing else None


@pytest.fixture
def ros2_tooling() -> dict[str, str]:
    """The environment for ``ros2`` commands; skips the test without the tooling (fails if required)."""
    missing = ros2_tooling_missing()
    if missing:
        reason = (
            f"ROS 2 launch/CLI tooling unavailable ({missing}): source a ROS 2 Jazzy install, or "
            "`make setup ROS_TOOLING_WHEELS=<folder of the Jazzy launch/ros2cli wheels>`"
        )
        if os.environ.get("SIM_BRIDGE_REQUIRE_ROS_TOOLING") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return dict(os.environ)


@pytest.fixture
def start_ros2(tmp_path: Path, ros2_tooling: dict[str, str]) -> Iterator[Callable[..., RosProcess]]:
    """start_ros2(*args) -> RosProcess running ``ros2 <args>`` in tmp_path; its group is killed at the end."""
    started: list[RosProcess] = []

    def start(*args: str) -> RosProcess:
        log = tmp_path / f"ros2-{args[0]}-{len(started)}.log"
        process = RosProcess(["ros2", *args], log, env=ros2_tooling, cwd=tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An arm7 reach policy trained here in seconds: for tests that need one, not a good one."""
    from sim_bridge_core.deploy.policy import PolicyConfig
    from sim_bridge_core.jobs.training import TrainingJob
    from sim_bridge_core.learning import PpoConfig
    from sim_bridge_core.simulator.core import SimulatorConfig

    run = tmp_path_factory.mktemp("small_checkpoint")
    policy = PolicyConfig(mode="train", output_dir=str(run), max_env_steps=512, eval_episodes=8)
    sim = SimulatorConfig(task="reach", num_envs=32, episode_length_s=1.0)
    TrainingJob(policy, PpoConfig(num_steps=8), sim, progress=False).run()
    return run / "checkpoint.pt"


@pytest.fixture
def start_node(start_executable: Callable[..., RosProcess]) -> Callable[..., RosProcess]:
    """start_node(package, executable, *extra_ros_args, **parameters) -> RosProcess, stopped at the end."""

    def start(package: str, name: str, *extra: str, **parameters: Any) -> RosProcess:
        args = ["--ros-args"]
        for key, value in parameters.items():
            args += ["-p", f"{key}:={_param_text(value)}"]
        return start_executable(package, name, *args, *extra)

    return start


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    return str(value)


class RosClient:
    """A test-side rclpy node spun on a background thread, with waiting helpers."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"test_client_{os.getpid()}", context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def collect(self, msg_type: type, topic: str, qos: Any = 10, raw: bool = False) -> list:
        """Start recording a topic; the returned list fills as messages arrive."""
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos, raw=raw)
        return received

    def call(self, srv_type: type, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            assert time.monotonic() < deadline, f"service {name} did not answer"
            time.sleep(0.01)
        return future.result()

    def publish_until(
        self,
        publisher: Any,
        message: Callable[[], Any],
        condition: Callable[[], Any],
        timeout: float = 10.0,
        what: str = "it",
    ) -> Any:
        """Publish ``message()`` (stamped afresh) every 0.1 s until ``condition`` holds: a best-effort
        subscriber that has not yet matched a new publisher (discovery is not symmetric) drops it."""
        return self.wait_until(lambda: publisher.publish(message()) or condition(), timeout, what, period=0.1)

    @staticmethod
    def wait_until(
        condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition", period: float = 0.01
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(period)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def ros_client() -> Iterator[RosClient]:
    client = RosClient()
    yield client
    client.close()
