"""Gymnasium front ends over the same batched core, so existing RL libraries can train on it.

``make_batched_env`` builds the worlds: from a built-in model (``model=``), or from a robot config
(``robot=``: a name under config/robots or a YAML path) exactly as the simulator builds them from
it: its model, joints, home, sites, cameras, gains, model parameters and ``tasks.<task>`` settings.
Actions are normalized to [-1, 1] and mapped to joint targets by the task; observations
are the task's observation builder. The vector env auto-resets in the same step
(``AutoresetMode.SAME_STEP``): the last observation of a finished episode is in
``info["final_obs"]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from sim_bridge_core.config import ConfigError
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.models import ModelError, RobotModel, load_robot, load_robot_config
from sim_bridge_core.randomization import RandomizationSpec, Randomizer, load_spec
from sim_bridge_core.sim.backends import make_backend
from sim_bridge_core.tasks import Task, make_task

DEFAULT_MODEL = "arm7"


def default_config_dir() -> Path:
    """The config/ folder whose robots/ a robot name is looked up in: the installed ``sim_bridge``
    package's share (where bringup reads it), else this source tree's."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:  # pragma: no cover - ament_index ships with ROS and the lock
        return Path(__file__).resolve().parents[4] / "config"
    try:
        return Path(get_package_share_directory("sim_bridge"), "config")
    except PackageNotFoundError:
        return Path(__file__).resolve().parents[4] / "config"


def robot_and_task(
    robot: str | os.PathLike, task: str, config_dir: str | os.PathLike | None = None
) -> tuple[RobotModel, Task]:
    """The robot a robot config describes and its ``task`` with the config's ``tasks.<task>``, as the
    simulator builds them from the same file; ConfigError naming the file and the key."""
    directory = default_config_dir() if config_dir is None else Path(config_dir)
    config, path, model = load_robot_config(os.fspath(robot), directory)
    try:
        return model, make_task(task, model, config.tasks.get(task))
    except (ModelError, ConfigError) as exc:
        raise ConfigError(f"{path.name}: {exc}") from exc


def make_batched_env(
    model: str | None = None,
    task: str = "reach",
    num_envs: int = 1,
    backend: str = "cpu",
    control_dt: float = 0.02,
    episode_length_s: float = 5.0,
    seed: int = 0,
    command_interface: str = "trajectory",
    *,
    robot: str | os.PathLike | None = None,
    config_dir: str | os.PathLike | None = None,
    randomization: str | Path | Mapping[str, Any] | RandomizationSpec | None = None,
) -> BatchedEnv:
    """N worlds of ``task`` on a built-in model or MJCF/URDF file (``model``, default arm7) or on a
    robot config (``robot``: a name under ``config_dir``/robots, default the installed configs, or
    a YAML path). ``randomization``: a spec (YAML path, mapping or spec) applied as the simulator
    applies it; None = nominal physics."""
    if model is not None and robot is not None:
        raise ValueError("give model or robot, not both: a robot config names its own model")
    if robot is None:
        robot_model = load_robot(model or DEFAULT_MODEL)
        built_task = make_task(task, robot_model)
    else:
        robot_model, built_task = robot_and_task(robot, task, config_dir)
    env = BatchedEnv(
        make_backend(backend, robot_model, num_envs, control_dt),
        built_task,
        episode_length_s,
        seed,
        command_interface=command_interface,
    )
    if randomization is not None:
        # As the simulator: the randomizer comes after the first reset, visual parameters only with cameras.
        env.randomizer = Randomizer(load_spec(randomization), env.backend, visual=bool(robot_model.cameras))
    return env


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
