"""Fixtures of the tests beside this file: the stand-in real robot (stand_ins/robot.py) as a process."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import RosProcess

STAND_IN = Path(__file__).resolve().parent / "stand_ins" / "robot.py"


@pytest.fixture
def start_robot(tmp_path: Path) -> Iterator[Callable[..., RosProcess]]:
    """start_robot(*args) -> the stand-in's process once it says it is ready; stopped after the test."""
    started: list[RosProcess] = []

    def start(*args: str) -> RosProcess:
        process = RosProcess([sys.executable, str(STAND_IN), *args], tmp_path / f"robot-{len(started)}.log")
        started.append(process)
        process.wait_for_output("stand-in robot ready", timeout=20)
        return process

    yield start
    for process in started:
        process.stop()
