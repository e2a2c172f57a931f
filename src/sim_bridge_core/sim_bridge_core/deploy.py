"""Deployment without ROS: JointState in, safe joint targets out, one control cycle at a time.

The policy node feeds every JointState and goal into ``Deployment`` and asks ``tick`` for
the command of each control period. The observation is built by the task's own builder
(the one training used); the safety filter stands between the policy and the robot:

* joints are mapped by name (any order, extra joints ignored; a missing joint means no command);
* a state with NaN/inf or mismatched lengths is refused and changes nothing;
* targets are clipped to the position limits and to ``max_position_step`` from the measured position;
* a state older than ``state_timeout_s`` (or ``enable = False``) stops commands, after one
  hold-current-position command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sim_bridge_core.models import RobotModel
from sim_bridge_core.tasks import Task

Policy = Callable[[np.ndarray], np.ndarray]


class StateError(ValueError):
    """A JointState or goal that was refused; the message is the reason for the log."""


@dataclass(frozen=True)
class Command:
    """Joint position targets in the robot's joint order; ``hold`` marks a hold-position command."""

    positions: np.ndarray
    hold: bool = False


class JointNameMap:
    """Maps a JointState's names onto the robot's joints, cached per name list."""

    def __init__(self, joint_names: Sequence[str]) -> None:
        self.joint_names = tuple(joint_names)
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def indices(self, names: Sequence[str]) -> np.ndarray:
        """Index into ``names`` of each robot joint; StateError if one is missing or named twice."""
        key = tuple(names)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if len(set(key)) != len(key):
            raise StateError("joint_states names a joint twice")
        where = {name: i for i, name in enumerate(key)}
        missing = [name for name in self.joint_names if name not in where]
        if missing:
            raise StateError(f"joint_states lacks required joints {', '.join(missing)}")
        indices = np.array([where[name] for name in self.joint_names])
        if len(self._cache) < 16:
            self._cache[key] = indices
        return indices


class SafetyFilter:
    """Position limits and a per-period step limit around the measured position."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray, max_position_step: float) -> None:
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)
        self.max_position_step = max_position_step

    def __call__(self, targets: np.ndarray, measured: np.ndarray) -> np.ndarray:
        stepped = np.clip(targets, measured - self.max_position_step, measured + self.max_position_step)
        return np.clip(stepped, self.lower, self.upper)


class Deployment:
    """Turns the latest JointState and goal into one safe command per control period."""

    def __init__(
        self,
        robot: RobotModel,
        task: Task,
        policy: Policy,
        max_position_step: float,
        state_timeout_s: float,
        position_limits: Sequence[float] = (),
    ) -> None:
        self.robot, self.task, self.policy = robot, task, policy
        self.names = JointNameMap(robot.joint_names)
        lower, upper = robot.lower, robot.upper
        if len(position_limits):
            limits = np.asarray(position_limits, float).reshape(robot.num_joints, 2)
            lower, upper = np.maximum(lower, limits[:, 0]), np.minimum(upper, limits[:, 1])
        self.safety = SafetyFilter(lower, upper, max_position_step)
        self.state_timeout_s = state_timeout_s
        self.enabled = True
        self.positions: np.ndarray | None = None
        self.velocities = np.zeros(robot.num_joints)
        self.state_time = -np.inf
        self.inputs: np.ndarray | None = None if task.input_names else np.zeros(0)
        self._holding = False

    def on_joint_state(
        self, now_s: float, names: Sequence[str], positions: Sequence[float], velocities: Sequence[float]
    ) -> None:
        """Take a measurement (robot order is found by name); StateError leaves the last one in place."""
        positions = np.asarray(positions, float)
        velocities = np.asarray(velocities, float)
        if len(positions) != len(names) or len(velocities) not in (0, len(names)):
            raise StateError(
                f"joint_states has {len(names)} names, {len(positions)} positions, "
                f"{len(velocities)} velocities"
            )
        index = self.names.indices(names)
        q = positions[index]
        qd = velocities[index] if len(velocities) else np.zeros_like(q)
        if not (np.isfinite(q).all() and np.isfinite(qd).all()):
            raise StateError("joint_states contains NaN or inf for a required joint")
        self.positions, self.velocities, self.state_time = q, qd, now_s

    def on_goal(self, goal: Sequence[float]) -> np.ndarray:
        """Set the task input from a goal point; returns the input in effect (clamped by the task)."""
        goal = np.asarray(goal, float)
        if not np.isfinite(goal).all():
            raise StateError("goal contains NaN or inf")
        self.inputs = self.task.inputs_from_goal(goal)
        return self.inputs

    def set_enabled(self, enabled: bool) -> Command | None:
        """Enable or disable; disabling returns the one hold command to send."""
        self.enabled = enabled
        if enabled:
            self._holding = False
            return None
        return self._hold()

    def tick(self, now_s: float) -> tuple[Command | None, str]:
        """The command for this control period, or None and the reason there is none."""
        if not self.enabled:
            return None, "disabled"
        if self.positions is None:
            return None, "no joint_states received yet"
        if now_s - self.state_time > self.state_timeout_s:
            return self._hold(), f"joint_states older than {self.state_timeout_s} s"
        if self.inputs is None:
            return None, "no goal received yet"
        self._holding = False
        observation = self.task.observation(self.positions[None], self.velocities[None], self.inputs[None])
        targets = self.task.action_to_targets(self.policy(observation))[0]
        return Command(self.safety(targets, self.positions)), ""

    def _hold(self) -> Command | None:
        """Hold where the robot is, once; nothing more until commands resume."""
        if self._holding or self.positions is None:
            return None
        self._holding = True
        return Command(self.safety(self.positions, self.positions), hold=True)
