"""What a task is: reset distribution, inputs, observation, reward, termination, action mapping.

All methods work on whole batches ((N, ...) arrays). The observation builder takes only
what a real robot exposes (joint positions and velocities from JointState, the IMU for tasks
that use it) plus the task inputs (a goal, a velocity command) and the policy's own control
history, so the same function serves training and deployment. The observation is an ordered
tuple of named terms and the reward a sum of named terms times weights (``tasks.<name>.reward_weights``
of a robot config over the task's defaults), so the policy's contract and the reward's log follow
from what a task declares once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from sim_bridge_core.arrays import like, namespace, zeros
from sim_bridge_core.config import ConfigError, setting
from sim_bridge_core.models import RobotModel
from sim_bridge_core.sim.backends import SimBackend
from sim_bridge_core.tasks import terms
from sim_bridge_core.tasks.terms import ObservationSources, ObservationTerm


@dataclass(frozen=True)
class TaskOutcome:
    """Per-world result of one control step; ``reward_terms`` holds each reward term times its
    weight (name -> (N,)), which sum to ``reward``."""

    reward: np.ndarray
    terminated: np.ndarray
    success: np.ndarray
    reward_terms: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class ControlHistory:
    """What a policy keeps of its own per world, in training and in deployment alike: the targets
    it commanded last period (N, J) and the time since its episode began (N,), seconds (deployed:
    since it began commanding)."""

    previous_targets: np.ndarray
    elapsed_s: np.ndarray


@dataclass(frozen=True)
class TaskSettings:
    """What a robot config's ``tasks.<name>`` may set for every task; tasks with settings of their
    own extend it."""

    reward_weights: dict = setting(
        {}, "weights of the reward's terms by name, over the task's defaults ({} = the defaults)"
    )


class Task(ABC):
    """A task on one robot; ``input_names`` are the per-world inputs JointState lacks.

    ``Settings`` is the task's config schema: what a robot config's ``tasks.<name>`` may set.
    ``input_message`` is how an operator sends the inputs: ``goal`` (geometry_msgs/PointStamped)
    or ``cmd_vel`` (geometry_msgs/Twist: linear x, y and angular z). ``uses_imu``: the
    observation reads the IMU (sensor_msgs/Imu) besides JointState. ``default_reward_weights``
    names the reward's terms, in the order the task computes them, with their weights.
    """

    name: ClassVar[str]
    input_names: ClassVar[tuple[str, ...]] = ()
    input_message: ClassVar[str] = "goal"
    uses_imu: ClassVar[bool] = False
    action_scale: ClassVar[float] = 0.5
    # False: worlds run on without episodes (no truncation, no auto-reset), like a real robot.
    episodic: ClassVar[bool] = True
    Settings: ClassVar[type[TaskSettings]] = TaskSettings
    default_reward_weights: ClassVar[Mapping[str, float]] = {}

    def __init__(self, robot: RobotModel, settings: TaskSettings | None = None) -> None:
        self.robot = robot
        self.settings = settings if settings is not None else self.Settings()
        self.reward_weights = self._reward_weights(self.settings.reward_weights)

    def _reward_weights(self, overrides: Mapping[str, Any]) -> dict[str, float]:
        """The defaults with a robot config's overrides; ConfigError naming a term the task lacks."""
        section = f"tasks.{self.name}.reward_weights"
        weights = dict(self.default_reward_weights)
        for term, weight in overrides.items():
            if term not in weights:
                known = ", ".join(self.default_reward_weights) or "none"
                raise ConfigError(f"{section}.{term}: unknown reward term (known: {known})")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ConfigError(f"{section}.{term}: must be a finite number, got {weight!r}")
            weights[term] = float(weight)
        return weights

    def weighted(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each reward term's values (N,) times its weight: what ``TaskOutcome.reward_terms`` holds."""
        return {name: self.reward_weights[name] * value for name, value in values.items()}

    def observation_layout(self) -> tuple[ObservationTerm, ...]:
        """The observation's terms in order: joint positions about home, velocities, the task
        inputs. A task that observes more returns its own."""
        return (
            terms.joint_position_minus_home(self.robot),
            terms.joint_velocity(self.robot),
            *terms.task_inputs(self.input_names),
        )

    @cached_property
    def _layout(self) -> tuple[ObservationTerm, ...]:
        return self.observation_layout()

    @property
    def observation_terms(self) -> tuple[tuple[str, int], ...]:
        """The observation's layout, (name, size) in order: what a policy's contract publishes."""
        return tuple((term.name, term.size) for term in self._layout)

    @property
    def observation_size(self) -> int:
        return sum(term.size for term in self._layout)

    @abstractmethod
    def sample_initial(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Initial joint positions (count, J) and task inputs (count, K) for worlds being reset."""

    def reset_episodes(self, ids: np.ndarray, num_envs: int) -> None:
        """New episodes begin in worlds ``ids`` of ``num_envs``: clear what a task keeps per episode."""
        return  # most tasks keep nothing per episode

    @abstractmethod
    def outcome(self, backend: SimBackend, inputs: np.ndarray, history: ControlHistory) -> TaskOutcome:
        """Reward (with its weighted terms), termination and success of every world at the backend's
        current state, after the period that executed ``history.previous_targets`` (N, J),
        ``history.elapsed_s`` into each world's episode."""

    def observation(
        self,
        positions: np.ndarray,
        velocities: np.ndarray,
        inputs: np.ndarray,
        imu: np.ndarray | None = None,
        history: ControlHistory | None = None,
    ) -> np.ndarray:
        """(N, observation_size) float32: the terms of ``observation_layout`` side by side.

        ``imu`` (N, 10: orientation x, y, z, w, angular velocity, linear acceleration) and the
        policy's control ``history`` serve the tasks that observe them."""
        sources = ObservationSources(positions, velocities, inputs, imu, history)
        xp = namespace(positions)
        return xp.astype(xp.concat([term.compute(sources) for term in self._layout], axis=-1), xp.float32)

    def inputs_from_goal(self, goal: np.ndarray) -> np.ndarray:
        """Task inputs from a deployment goal point (x, y, z); tasks without inputs ignore it."""
        return np.zeros(0)

    def goal_from_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """The goal point (x, y, z) that gives these task inputs (what an operator would send)."""
        return np.zeros(3)

    def action_to_targets(self, actions: np.ndarray) -> np.ndarray:
        """Normalized actions in [-1, 1] to joint position targets (offsets about home, clamped)."""
        xp = namespace(actions)
        offsets = self.action_scale * xp.clip(actions, -1.0, 1.0)
        return self.robot.clamp(like(self.robot.home, actions) + offsets)


class HoldTask(Task):
    """No objective and no episodes: worlds start at home and run until reset. Serves any model."""

    name = "none"
    episodic = False

    def sample_initial(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        return np.tile(self.robot.home, (count, 1)), np.zeros((count, 0))

    def outcome(self, backend: SimBackend, inputs: np.ndarray, history: ControlHistory) -> TaskOutcome:
        never = zeros((backend.num_envs,), inputs, "bool")
        return TaskOutcome(reward=zeros((backend.num_envs,), inputs), terminated=never, success=never)
