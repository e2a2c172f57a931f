"""Shared test fixtures: DDS isolation per test run, real ROS processes and a client node.

Every run gets its own ROS_DOMAIN_ID and keeps discovery on localhost, so parallel runs
on one machine never see each other's topics. Processes started by a test are stopped
(SIGINT, then SIGKILL) when the test ends, whatever its outcome.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


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
    """A node started as its own process; its output goes to a log file the test can read."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

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

    def stop(self) -> int:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
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

    @staticmethod
    def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.01)

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
