"""Tasks by name; ``make_task`` builds one for a robot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sim_bridge_core.config import from_mapping
from sim_bridge_core.models import ModelError, RobotModel
from sim_bridge_core.tasks.base import ControlHistory, HoldTask, Task, TaskOutcome, TaskSettings
from sim_bridge_core.tasks.locomotion import LocomotionTask
from sim_bridge_core.tasks.pendulum import PendulumTask
from sim_bridge_core.tasks.reach import ReachTask
from sim_bridge_core.tasks.terms import ObservationSources, ObservationTerm

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (HoldTask, ReachTask, PendulumTask, LocomotionTask)}


def make_task(name: str, robot: RobotModel, settings: Mapping[str, Any] | None = None) -> Task:
    """The task called ``name`` on ``robot`` with its settings (a robot config's ``tasks.<name>``:
    ConfigError naming the key if one is bad); a task that does not fit the robot raises ModelError."""
    if name not in TASKS:
        raise ModelError(f"unknown task '{name}' (choose from {', '.join(TASKS)})")
    cls = TASKS[name]
    return cls(robot, from_mapping(cls.Settings, settings or {}, f"tasks.{name}"))


__all__ = [
    "TASKS",
    "ControlHistory",
    "HoldTask",
    "LocomotionTask",
    "ObservationSources",
    "ObservationTerm",
    "PendulumTask",
    "ReachTask",
    "Task",
    "TaskOutcome",
    "TaskSettings",
    "make_task",
]
