"""Batched episodes: a backend and a task, with episode clocks and auto-reset of finished worlds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_bridge_core.backends import SimBackend
from sim_bridge_core.tasks import Task


@dataclass(frozen=True)
class StepResult:
    """What one control step did to every world.

    Worlds that finished (``terminated | truncated``) were already reset: the env's
    state and inputs are those of their next episode, and ``final_positions`` /
    ``final_velocities`` hold the last state of the episode that ended.
    """

    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    final_positions: np.ndarray
    final_velocities: np.ndarray
    final_inputs: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class BatchedEnv:
    """N worlds running one task; sim time runs on across resets."""

    def __init__(self, backend: SimBackend, task: Task, episode_length_s: float, seed: int = 0) -> None:
        self.backend = backend
        self.task = task
        self.num_envs = backend.num_envs
        self.episode_steps = max(1, round(episode_length_s / backend.control_dt))
        self.rng = np.random.default_rng(seed)
        self.inputs = np.zeros((self.num_envs, len(task.input_names)))
        self.episode_step = np.zeros(self.num_envs, dtype=np.int64)
        self.steps = 0
        self.reset()

    @property
    def time_ns(self) -> int:
        """Sim time in integer nanoseconds (exact, never goes backwards)."""
        return self.steps * round(self.backend.control_dt * 1e9)

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, ids: np.ndarray | None = None) -> None:
        """Start new episodes in worlds ``ids`` (all by default) from the task's reset distribution."""
        ids = np.arange(self.num_envs) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return
        positions, inputs = self.task.sample_initial(self.rng, ids.size)
        self.backend.reset(ids, positions)
        self.inputs[ids] = inputs
        self.episode_step[ids] = 0

    def step(self, targets: np.ndarray) -> StepResult:
        """Hold joint position targets (N, J) for one control period, then reset finished worlds."""
        self.backend.step(targets)
        self.steps += 1
        self.episode_step += 1
        outcome = self.task.evaluate(self.backend, self.inputs)
        truncated = (self.episode_step >= self.episode_steps) & ~outcome.terminated
        done_ids = np.flatnonzero(outcome.terminated | truncated)
        final_positions = self.backend.joint_positions()[done_ids]
        final_velocities = self.backend.joint_velocities()[done_ids]
        final_inputs = self.inputs[done_ids]
        self.reset(done_ids)
        return StepResult(
            reward=outcome.reward,
            terminated=outcome.terminated,
            truncated=truncated,
            success=outcome.success,
            final_positions=final_positions,
            final_velocities=final_velocities,
            final_inputs=final_inputs,
        )

    def observation(self) -> np.ndarray:
        """The task's observation of every world's current state."""
        return self.task.observation(
            self.backend.joint_positions(), self.backend.joint_velocities(), self.inputs
        )
