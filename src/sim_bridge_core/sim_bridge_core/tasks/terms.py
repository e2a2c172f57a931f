"""Terms that tasks share: observation terms (name, size, function) and reward terms.

An observation is an ordered tuple of ``ObservationTerm``: the task concatenates their values and
publishes their names and sizes as the policy's contract, so the layout is written once. A reward
term is a function of batched arrays, (N,) per world, that a task weighs by its ``reward_weights``;
the terms here serve several tasks, a task's own terms live with it. Every term works on numpy
arrays and on device tensors alike (``sim_bridge_core.arrays``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sim_bridge_core.arrays import like, namespace
from sim_bridge_core.sim.sensors import imu_gravity as gravity_in_imu_frame

if TYPE_CHECKING:
    from sim_bridge_core.models import RobotModel
    from sim_bridge_core.tasks.base import ControlHistory


@dataclass
class ObservationSources:
    """What an observation is built from, the same in training and deployment: joint positions and
    velocities (N, J), the task inputs (N, K), the IMU (N, 10: orientation x, y, z, w, angular
    velocity, linear acceleration) for tasks that read it, and the policy's control history."""

    positions: np.ndarray
    velocities: np.ndarray
    inputs: np.ndarray
    imu: np.ndarray | None = None
    history: ControlHistory | None = None
    _derived: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def derived(self, name: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """A value that several terms read (reach: the end-effector position), computed once per
        observation."""
        if name not in self._derived:
            self._derived[name] = compute()
        return self._derived[name]

    def require_imu(self, term: str) -> np.ndarray:
        """The IMU rows, or ValueError naming the term: a caller that left them out built the wrong
        observation."""
        if self.imu is None:
            raise ValueError(f"the observation term '{term}' needs the IMU")
        return self.imu

    def require_history(self, term: str) -> ControlHistory:
        """The control history, or ValueError naming the term that needs it."""
        if self.history is None:
            raise ValueError(f"the observation term '{term}' needs the policy's control history")
        return self.history


@dataclass(frozen=True)
class ObservationTerm:
    """One named block of the observation: ``compute`` gives its (N, size) values."""

    name: str
    size: int
    compute: Callable[[ObservationSources], np.ndarray]


def joint_position_minus_home(robot: RobotModel) -> ObservationTerm:
    return ObservationTerm(
        "joint_position_minus_home", robot.num_joints, lambda s: s.positions - like(robot.home, s.positions)
    )


def joint_velocity(robot: RobotModel) -> ObservationTerm:
    return ObservationTerm("joint_velocity", robot.num_joints, lambda s: s.velocities)


def task_inputs(names: tuple[str, ...]) -> tuple[ObservationTerm, ...]:
    """One term per task input, in the order of the task's ``input_names``."""
    return tuple(
        ObservationTerm(name, 1, lambda s, column=column: s.inputs[:, column : column + 1])
        for column, name in enumerate(names)
    )


def imu_gravity() -> ObservationTerm:
    """Gravity's direction in the IMU's frame, from its orientation."""
    return ObservationTerm("imu_gravity", 3, lambda s: gravity_in_imu_frame(s.require_imu("imu_gravity")))


def imu_angular_velocity() -> ObservationTerm:
    return ObservationTerm("imu_angular_velocity", 3, lambda s: s.require_imu("imu_angular_velocity")[:, 4:7])


def previous_action(robot: RobotModel, action_scale: float) -> ObservationTerm:
    """The policy's previous targets about home, in action units (what it output last period)."""

    def compute(sources: ObservationSources) -> np.ndarray:
        previous = sources.require_history("previous_action").previous_targets
        return (previous - like(robot.home, previous)) / action_scale

    return ObservationTerm("previous_action", robot.num_joints, compute)


def joint_position_about_home(positions: np.ndarray, home: np.ndarray) -> np.ndarray:
    """Squared distance of the joints (N, J) from the home pose."""
    return namespace(positions).sum((positions - like(home, positions)) ** 2, axis=1)


def joint_speed(velocities: np.ndarray) -> np.ndarray:
    """Sum of the joints' absolute velocities (N, J)."""
    xp = namespace(velocities)
    return xp.sum(xp.abs(velocities), axis=1)


def joint_torque(efforts: np.ndarray) -> np.ndarray:
    """Sum of the joints' squared efforts (N, J)."""
    return namespace(efforts).sum(efforts**2, axis=1)


def action_rate(targets: np.ndarray, previous: np.ndarray, action_scale: float) -> np.ndarray:
    """Squared change of the action (targets in action units) from one period to the next."""
    return namespace(targets).sum(((targets - previous) / action_scale) ** 2, axis=1)


def tilt(gravity: np.ndarray) -> np.ndarray:
    """Squared horizontal part of gravity's direction (N, 3) in a base's frame: zero when level."""
    return namespace(gravity).sum(gravity[:, :2] ** 2, axis=1)
