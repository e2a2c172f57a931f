"""Tasks by name; ``make_task`` builds one for a robot."""

from __future__ import annotations

from sim_bridge_core.models import ModelError, RobotModel
from sim_bridge_core.tasks.base import HoldTask, Task, TaskOutcome
from sim_bridge_core.tasks.pendulum import PendulumTask
from sim_bridge_core.tasks.reach import ReachTask

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (HoldTask, ReachTask, PendulumTask)}


def make_task(name: str, robot: RobotModel) -> Task:
    """The task called ``name`` on ``robot``; a task that does not fit the robot raises ModelError."""
    if name not in TASKS:
        raise ModelError(f"unknown task '{name}' (choose from {', '.join(TASKS)})")
    return TASKS[name](robot)


__all__ = ["TASKS", "HoldTask", "PendulumTask", "ReachTask", "Task", "TaskOutcome", "make_task"]
