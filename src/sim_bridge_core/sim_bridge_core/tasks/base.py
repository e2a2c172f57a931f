"""What a task is: reset distribution, inputs, observation, reward, termination, action mapping.

All methods work on whole batches ((N, ...) arrays). The observation builder takes only
what a real robot exposes (joint positions and velocities from JointState, the IMU for tasks
that use it) plus the task inputs (a goal, a velocity command) and the policy's own previous
targets, so the same function serves training and deployment.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sim_bridge_core.models import RobotModel
from sim_bridge_core.sim.backends import SimBackend


@dataclass(frozen=True)
class TaskOutcome:
    """Per-world result of one control step."""

    reward: np.ndarray
    terminated: np.ndarray
    success: np.ndarray


@dataclass(frozen=True)
class PolicyMemory:
    """What a policy keeps of its own per world, in training and in deployment alike: the targets
    it commanded last period (N, J) and the time since its episode began (N,), seconds (deployed:
    since it began commanding)."""

    previous_targets: np.ndarray
    elapsed_s: np.ndarray


@dataclass(frozen=True)
class NoSettings:
    """A task without settings of its own."""


class Task(ABC):
    """A task on one robot; ``input_names`` are the per-world inputs JointState lacks.

    ``Settings`` is the task's config schema: what a robot config's ``tasks.<name>`` may set.
    ``input_message`` is how an operator sends the inputs: ``goal`` (geometry_msgs/PointStamped)
    or ``cmd_vel`` (geometry_msgs/Twist: linear x, y and angular z). ``uses_imu``: the
    observation reads the IMU (sensor_msgs/Imu) besides JointState.
    """

    name: ClassVar[str]
    input_names: ClassVar[tuple[str, ...]] = ()
    input_message: ClassVar[str] = "goal"
    uses_imu: ClassVar[bool] = False
    action_scale: ClassVar[float] = 0.5
    # False: worlds run on without episodes (no truncation, no auto-reset), like a real robot.
    episodic: ClassVar[bool] = True
    Settings: ClassVar[type] = NoSettings

    def __init__(self, robot: RobotModel, settings: Any = None) -> None:
        self.robot = robot
        self.settings = settings if settings is not None else self.Settings()

    @property
    def observation_terms(self) -> tuple[tuple[str, int], ...]:
        """The observation's layout, (name, size) in order: what a policy's contract publishes."""
        joints = self.robot.num_joints
        return (
            ("joint_position_minus_home", joints),
            ("joint_velocity", joints),
            *((name, 1) for name in self.input_names),
        )

    @property
    def observation_size(self) -> int:
        return sum(size for _, size in self.observation_terms)

    @abstractmethod
    def sample_initial(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Initial joint positions (count, J) and task inputs (count, K) for worlds being reset."""

    def reset_episodes(self, ids: np.ndarray, num_envs: int) -> None:
        """New episodes begin in worlds ``ids`` of ``num_envs``: clear what a task keeps per episode."""
        return  # most tasks keep nothing per episode

    @abstractmethod
    def evaluate(self, backend: SimBackend, inputs: np.ndarray, memory: PolicyMemory) -> TaskOutcome:
        """Reward, termination and success of every world at the backend's current state, after
        the period that executed ``memory.previous_targets`` (N, J), ``memory.elapsed_s`` into
        each world's episode."""

    def observation(
        self,
        positions: np.ndarray,
        velocities: np.ndarray,
        inputs: np.ndarray,
        imu: np.ndarray | None = None,
        memory: PolicyMemory | None = None,
    ) -> np.ndarray:
        """(N, observation_size) float32: joint positions about home, velocities, task inputs.

        ``imu`` (N, 10: orientation x, y, z, w, angular velocity, linear acceleration) and the
        policy's ``memory`` serve the tasks that observe them."""
        return np.concatenate([positions - self.robot.home, velocities, inputs], axis=-1, dtype=np.float32)

    def inputs_from_goal(self, goal: np.ndarray) -> np.ndarray:
        """Task inputs from a deployment goal point (x, y, z); tasks without inputs ignore it."""
        return np.zeros(0)

    def goal_from_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """The goal point (x, y, z) that gives these task inputs (what an operator would send)."""
        return np.zeros(3)

    def action_to_targets(self, actions: np.ndarray) -> np.ndarray:
        """Normalized actions in [-1, 1] to joint position targets (offsets about home, clamped)."""
        return self.robot.clamp(self.robot.home + self.action_scale * np.clip(actions, -1.0, 1.0))


class HoldTask(Task):
    """No objective and no episodes: worlds start at home and run until reset. Serves any model."""

    name = "none"
    episodic = False

    def sample_initial(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        return np.tile(self.robot.home, (count, 1)), np.zeros((count, 0))

    def evaluate(self, backend: SimBackend, inputs: np.ndarray, memory: PolicyMemory) -> TaskOutcome:
        zeros = np.zeros(backend.num_envs, dtype=bool)
        return TaskOutcome(reward=np.zeros(backend.num_envs), terminated=zeros, success=zeros)
