"""Stable-Baselines3 PPO on the same arm7 reach, with the same wall budget as bench_train_reach.py.

SB3 trains through its own VecEnv API; ``BatchedVecEnv`` below adapts a BatchedEnv to it
(vectorized: one ``BatchedEnv.step`` per SB3 step, the final observation of a finished
episode in ``terminal_observation`` and timeouts flagged as ``TimeLimit.truncated``, so
SB3 bootstraps them). Observations are normalized by ``VecNormalize`` (rewards are not),
networks and PPO settings mirror our defaults where SB3 has the knob (no adaptive learning
rate in SB3: a fixed one). Evaluation is the same as ours: deterministic actions, success
at the episode's last step, fresh episodes of a separately seeded env.

Run: python test/benchmarks/bench_sb3_reach.py [--num-envs 2048] [--max-wall-s 180] [--seed 0]
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from cli import world_parser
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.envs.gym import SimBridgeVectorEnv, make_batched_env
from sim_bridge_core.learning import PpoConfig
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize


class BatchedVecEnv(VecEnv):
    """All worlds of a BatchedEnv as one SB3 VecEnv (same-step auto-reset, as SB3 expects)."""

    def __init__(self, env: BatchedEnv) -> None:
        spaces = SimBridgeVectorEnv(env)
        super().__init__(env.num_envs, spaces.single_observation_space, spaces.single_action_space)
        self.env = env
        self.returns = np.zeros(env.num_envs)
        self.ended_returns: list[float] = []
        self.ended_success: list[bool] = []
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        self.env.reset()
        self.returns[:] = 0.0
        return self.env.observation()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        result = self.env.step(self.env.task.action_to_targets(self._actions))
        done = result.done
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        self.returns += result.reward
        if done.any():
            final = result.final_observations
            for row, world in enumerate(np.flatnonzero(done)):
                infos[world] = {
                    "terminal_observation": final[row],
                    "TimeLimit.truncated": bool(result.truncated[world]),
                }
            self.ended_returns.extend(self.returns[done].tolist())
            self.ended_success.extend(result.success[done].tolist())
            self.returns[done] = 0.0
        return self.env.observation(), result.reward.astype(np.float32), done, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * self.num_envs

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self, method_name)(*args, **kwargs)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * self.num_envs


class WallClock(BaseCallback):
    """Stops training at the wall budget; prints progress now and then."""

    def __init__(self, venv: BatchedVecEnv, max_wall_s: float, start: float) -> None:
        super().__init__()
        self.venv, self.max_wall_s, self.start = venv, max_wall_s, start
        self.last_print = start

    def _on_step(self) -> bool:
        now = time.perf_counter()
        if now - self.last_print > 15 and self.venv.ended_success:
            window = self.venv.ended_success[-2000:]
            print(
                f"  {now - self.start:6.1f} s  {self.num_timesteps:9d} steps  "
                f"mean return {np.mean(self.venv.ended_returns[-2000:]):7.2f}  success {np.mean(window):.1%}",
                flush=True,
            )
            self.last_print = now
        return now - self.start < self.max_wall_s


def evaluate_sb3(env: BatchedEnv, model: PPO, normalizer: VecNormalize, episodes: int) -> float:
    env.reset()
    ended = successes = 0
    while ended < episodes:
        observations = normalizer.normalize_obs(env.observation())
        actions, _ = model.predict(observations, deterministic=True)
        result = env.step(env.task.action_to_targets(actions))
        ended += int(result.done.sum())
        successes += int(result.success[result.done].sum())
    return successes / ended


def main() -> None:
    parser = world_parser(__doc__, num_envs=2048, episode_length_s=3.0)
    parser.add_argument("--max-wall-s", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=2048)
    args = parser.parse_args()

    ours = PpoConfig()
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    env = make_batched_env(
        args.model, args.task, args.num_envs, "cpu", args.control_dt, args.episode_length_s, args.seed
    )
    venv = BatchedVecEnv(env)
    normalized = VecNormalize(venv, norm_obs=True, norm_reward=False, clip_obs=1e6, gamma=ours.gamma)
    rollout = ours.num_steps * args.num_envs
    model = PPO(
        "MlpPolicy",
        normalized,
        learning_rate=ours.learning_rate,
        n_steps=ours.num_steps,
        batch_size=rollout // ours.num_minibatches,
        n_epochs=ours.num_epochs,
        gamma=ours.gamma,
        gae_lambda=ours.gae_lambda,
        clip_range=ours.clip,
        ent_coef=ours.entropy_coef,
        vf_coef=ours.value_coef,
        max_grad_norm=ours.max_grad_norm,
        target_kl=None,
        policy_kwargs={
            "net_arch": {"pi": list(ours.actor_hidden), "vf": list(ours.critic_hidden)},
            "activation_fn": torch.nn.ELU,
            "log_std_init": ours.init_log_std,
        },
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=10**12, callback=WallClock(venv, args.max_wall_s, start))
    wall = time.perf_counter() - start
    steps = model.num_timesteps

    eval_env = make_batched_env(
        args.model,
        args.task,
        min(args.num_envs, args.eval_episodes),
        "cpu",
        args.control_dt,
        args.episode_length_s,
        args.seed + 1000,
    )
    success = evaluate_sb3(eval_env, model, normalized, args.eval_episodes)
    print(f"SB3 PPO {args.model}/{args.task} x {args.num_envs} worlds, episode {args.episode_length_s} s")
    print(f"wall time (training)       {wall:10.1f} s")
    print(f"env steps                  {steps:10d}")
    print(f"env-steps/s (training)     {steps / wall:10.0f}")
    print(f"eval success rate          {success:10.1%}  ({args.eval_episodes}+ episodes, deterministic)")


if __name__ == "__main__":
    main()
