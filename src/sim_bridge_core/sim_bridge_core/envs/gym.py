"""Gymnasium front ends over the same batched core, so existing RL libraries can train on it.

Actions are normalized to [-1, 1] and mapped to joint targets by the task; observations
are the task's observation builder. The vector env auto-resets in the same step
(``AutoresetMode.SAME_STEP``): the last observation of a finished episode is in
``info["final_obs"]``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.models import load_robot
from sim_bridge_core.sim.backends import make_backend
from sim_bridge_core.tasks import make_task


def make_batched_env(
    model: str = "arm7",
    task: str = "reach",
    num_envs: int = 1,
    backend: str = "cpu",
    control_dt: float = 0.02,
    episode_length_s: float = 5.0,
    seed: int = 0,
    command_interface: str = "trajectory",
) -> BatchedEnv:
    robot = load_robot(model)
    return BatchedEnv(
        make_backend(backend, robot, num_envs, control_dt),
        make_task(task, robot),
        episode_length_s,
        seed,
        command_interface=command_interface,
    )


def _spaces(env: BatchedEnv) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    joints = env.backend.robot.num_joints
    action = gym.spaces.Box(-1.0, 1.0, (joints,), dtype=np.float32)
    observation = gym.spaces.Box(-np.inf, np.inf, (env.task.observation_size,), dtype=np.float32)
    return action, observation


class SimBridgeVectorEnv(VectorEnv):
    """All worlds of a BatchedEnv as one Gymnasium VectorEnv."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env: BatchedEnv) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.single_action_space, self.single_observation_space = _spaces(env)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self.env.seed(seed)
        self.env.reset()
        return self.env.observation(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        result = self.env.step(self.env.task.action_to_targets(actions))
        every = np.ones(self.num_envs, dtype=bool)
        info: dict[str, Any] = {"success": result.success, "_success": every}
        done = result.done
        if done.any():
            final = np.empty(self.num_envs, dtype=object)
            for world, obs in zip(np.flatnonzero(done), result.final_observations, strict=True):
                final[world] = obs
            # As Gymnasium's own vector envs: the ended episodes' last observation and info, masked.
            info["final_obs"], info["_final_obs"] = final, done
            info["final_info"] = {"success": result.success, "_success": done}
            info["_final_info"] = done
        return self.env.observation(), result.reward, result.terminated, result.truncated, info


class SimBridgeEnv(gym.Env):
    """One world as a Gymnasium Env (passes ``gymnasium.utils.env_checker.check_env``)."""

    def __init__(self, **kwargs: Any) -> None:
        self.env = make_batched_env(num_envs=1, **kwargs)
        self.action_space, self.observation_space = _spaces(self.env)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self.env.seed(seed)
        self.env.reset()
        return self.env.observation()[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        result = self.env.step(self.env.task.action_to_targets(action[None]))
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        observation = self.env.observation()[0]
        if terminated or truncated:
            observation = result.final_observations[0]
        return (
            observation,
            float(result.reward[0]),
            terminated,
            truncated,
            {"success": bool(result.success[0])},
        )
