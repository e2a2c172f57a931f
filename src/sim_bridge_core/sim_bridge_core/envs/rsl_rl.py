"""rsl_rl's ``VecEnv`` over a ``BatchedEnv``, so ``rsl_rl.runners.OnPolicyRunner`` trains on our worlds.

rsl_rl (PyPI ``rsl-rl-lib``, the 5.x line the lock pins) steps a ``VecEnv``: torch tensors in and
out, observations as a ``TensorDict`` of observation groups, finished worlds reset inside ``step``,
and time limits reported apart from terminations (``extras["time_outs"]``) so that PPO bootstraps
them::

    from rsl_rl.runners import OnPolicyRunner
    from sim_bridge_core.envs.gym import make_batched_env
    from sim_bridge_core.envs.rsl_rl import RslRlVecEnv

    env = RslRlVecEnv(make_batched_env(robot="arm7", task="reach", num_envs=1024))
    runner = OnPolicyRunner(env, train_cfg, log_dir=None, device="cpu")
    runner.learn(num_learning_iterations=200, init_at_random_ep_len=True)

- The one observation group, ``policy``, is the task's observation: the vector a deployed policy
  sees (``obs_groups = {"actor": ["policy"], "critic": ["policy"]}``).
- Actions are those of the Gymnasium front ends: normalized, clipped to [-1, 1], mapped to joint
  targets about home by ``task.action_to_targets``.
- ``episode_length_buf`` is the worlds' own episode clock: ``init_at_random_ep_len`` staggers the
  episodes as ``BatchedEnv.reset(stagger=True)`` does for our PPO.
- ``extras["log"]``, at the steps where episodes end, holds their success and each weighted
  reward term's sum per episode (``Episode/success``, ``Episode_Reward/<term>`` in TensorBoard).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from sim_bridge_core.envs.batched import BatchedEnv, StepResult

OBSERVATION_GROUP = "policy"


@dataclass(frozen=True)
class WorldsCfg:
    """What the worlds are, for rsl_rl's ``env.cfg`` (its W&B and Neptune writers store it)."""

    model: str
    task: str
    num_envs: int
    control_dt: float
    episode_length_s: float
    command_interface: str
    joint_names: tuple[str, ...]
    observation_terms: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RslRlVecEnv(VecEnv):
    """All worlds of a BatchedEnv as one rsl_rl ``VecEnv``; tensors on ``device``."""

    def __init__(self, env: BatchedEnv, device: str | torch.device = "cpu") -> None:
        self.env = env
        task = env.task
        self.num_envs = env.num_envs
        self.num_actions = task.robot.num_joints
        self.max_episode_length = env.episode_steps
        self.device = torch.device(device)
        self.cfg = WorldsCfg(
            model=task.robot.name,
            task=task.name,
            num_envs=env.num_envs,
            control_dt=float(env.control_dt),
            episode_length_s=float(env.episode_steps * env.control_dt),
            command_interface=env.command_interface,
            joint_names=tuple(task.robot.joint_names),
            observation_terms=task.observation_terms,
        )
        # Each world's reward terms summed over its episode so far (for extras["log"]).
        self._term_sums: dict[str, np.ndarray] = {}

    @property
    def episode_length_buf(self) -> torch.Tensor:
        """(N,) control steps into each world's episode: on the CPU, a view of the worlds' own clock."""
        return torch.from_numpy(self.env.episode_step).to(self.device)

    @episode_length_buf.setter
    def episode_length_buf(self, steps: torch.Tensor) -> None:
        self.env.episode_step[:] = steps.cpu().numpy()

    def get_observations(self) -> TensorDict:
        observations = torch.from_numpy(self.env.observation()).to(self.device)
        return TensorDict({OBSERVATION_GROUP: observations}, batch_size=[self.num_envs], device=self.device)

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        """One control period of every world; worlds whose episode ended are already reset, and
        ``dones`` marks them (terminated or timed out, ``extras["time_outs"]`` the latter)."""
        result = self.env.step(self.env.task.action_to_targets(actions.detach().cpu().numpy()))
        extras: dict[str, Any] = {"time_outs": torch.from_numpy(result.truncated).to(self.device)}
        log = self._episode_log(result)
        if log:
            extras["log"] = log
        rewards = torch.from_numpy(result.reward).to(self.device, torch.float32)
        dones = torch.from_numpy(result.done).to(self.device, torch.long)
        return self.get_observations(), rewards, dones, extras

    def _episode_log(self, result: StepResult) -> dict[str, torch.Tensor]:
        """Success and reward-term sums of the episodes that ended at this step (empty if none)."""
        for name, values in result.reward_terms.items():
            self._term_sums.setdefault(name, np.zeros(self.num_envs))
            self._term_sums[name] += values
        done = result.done
        if not done.any():
            return {}
        log = {"Episode/success": torch.from_numpy(result.success[done]).float()}
        for name, sums in self._term_sums.items():
            log[f"Episode_Reward/{name}"] = torch.from_numpy(sums[done]).float()
            sums[done] = 0.0
        return log
