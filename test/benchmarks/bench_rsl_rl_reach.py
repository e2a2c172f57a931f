"""rsl_rl's PPO (``OnPolicyRunner`` over ``envs.rsl_rl.RslRlVecEnv``) against ours (``learning.train``)
on reach from a robot config, with the same worlds, world count and wall budget.

In one run, one after the other:
  1. ours: ``sim_bridge_core.learning.train`` for ``--max-wall-s`` seconds (PpoConfig defaults);
  2. rsl_rl: ``OnPolicyRunner.learn`` one iteration at a time until ``--max-wall-s`` has passed, with
     the settings mirrored from PpoConfig where rsl_rl has the knob (horizon, epochs, minibatches,
     learning rate and its adaptive schedule, KL target, clip, discount, GAE lambda, networks,
     observation normalization, initial action std). Left as rsl_rl has them: a linear action
     mean (ours is tanh-squashed), a learning-rate ceiling of 1e-2 (ours 3e-3), and torch on every
     core throughout (ours acts on one thread, leaving the other cores to the physics);
  3. both evaluated the same way: ``sim_bridge_core.learning.evaluate`` (deterministic actions,
     success at the episode's last step) on fresh episodes of a separately seeded env.

Run: python test/benchmarks/bench_rsl_rl_reach.py [--robot arm7] [--num-envs 2048] [--max-wall-s 180]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
from rsl_rl.runners import OnPolicyRunner
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.envs.gym import make_batched_env
from sim_bridge_core.envs.rsl_rl import OBSERVATION_GROUP, RslRlVecEnv
from sim_bridge_core.learning import PpoConfig, evaluate, train
from tensordict import TensorDict


def rsl_rl_train_cfg(ppo: PpoConfig) -> dict:
    """rsl_rl 5.x's training config with our PPO settings where it has the knob."""

    def network(hidden: list[int]) -> dict:
        return {
            "class_name": "MLPModel",
            "hidden_dims": list(hidden),
            "activation": "elu",
            "obs_normalization": ppo.normalize_observations,
        }

    distribution = {
        "class_name": "GaussianDistribution",
        "init_std": math.exp(ppo.init_log_std),
        "std_type": "log",
    }
    return {
        "num_steps_per_env": ppo.num_steps,
        "save_interval": 10**9,
        "obs_groups": {"actor": [OBSERVATION_GROUP], "critic": [OBSERVATION_GROUP]},
        "actor": {**network(ppo.actor_hidden), "distribution_cfg": distribution},
        "critic": network(ppo.critic_hidden),
        "algorithm": {
            "class_name": "PPO",
            "num_learning_epochs": ppo.num_epochs,
            "num_mini_batches": ppo.num_minibatches,
            "learning_rate": ppo.learning_rate,
            "schedule": ppo.schedule,
            "desired_kl": ppo.desired_kl,
            "gamma": ppo.gamma,
            "lam": ppo.gae_lambda,
            "clip_param": ppo.clip,
            "value_loss_coef": ppo.value_coef,
            "use_clipped_value_loss": ppo.clip_value_loss,
            "entropy_coef": ppo.entropy_coef,
            "max_grad_norm": ppo.max_grad_norm,
        },
    }


class RslRlPolicy(torch.nn.Module):
    """rsl_rl's inference policy behind the ``act_inference`` that ``learning.evaluate`` calls."""

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def act_inference(self, observations: torch.Tensor) -> torch.Tensor:
        group = TensorDict({OBSERVATION_GROUP: observations}, batch_size=[len(observations)])
        return self.policy(group)


def train_rsl_rl(env: BatchedEnv, ppo: PpoConfig, max_wall_s: float) -> tuple[OnPolicyRunner, float, int]:
    """The runner after ``max_wall_s`` of whole iterations; its wall time and env steps."""
    torch.manual_seed(ppo.seed)
    start = time.perf_counter()
    runner = OnPolicyRunner(RslRlVecEnv(env), rsl_rl_train_cfg(ppo), log_dir=None, device="cpu")
    iterations = 0
    while time.perf_counter() - start < max_wall_s:
        # As ours: episodes staggered once, at the start.
        runner.learn(num_learning_iterations=1, init_at_random_ep_len=iterations == 0)
        iterations += 1
    return runner, time.perf_counter() - start, iterations * ppo.num_steps * env.num_envs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--robot", default="arm7", help="a robot config: a name under config/robots or a YAML path"
    )
    parser.add_argument("--task", default="reach")
    parser.add_argument("--num-envs", type=int, default=2048)
    parser.add_argument("--control-dt", type=float, default=0.02)
    parser.add_argument("--episode-length-s", type=float, default=3.0)
    parser.add_argument("--max-wall-s", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=2048)
    args = parser.parse_args()

    def make_env(num_envs: int, seed: int) -> BatchedEnv:
        return make_batched_env(
            None, args.task, num_envs, "cpu", args.control_dt, args.episode_length_s, seed, robot=args.robot
        )

    ppo = PpoConfig(seed=args.seed)
    eval_worlds, eval_seed = min(args.num_envs, args.eval_episodes), args.seed + 1000
    torch.set_num_threads(os.cpu_count() or 1)

    ours = train(make_env(args.num_envs, args.seed), ppo, max_wall_s=args.max_wall_s, progress=False)
    ours_success = evaluate(make_env(eval_worlds, eval_seed), ours.model, args.eval_episodes)

    torch.set_num_threads(os.cpu_count() or 1)  # ours sets its own count for its update
    runner, wall_s, steps = train_rsl_rl(make_env(args.num_envs, args.seed), ppo, args.max_wall_s)
    policy = RslRlPolicy(runner.get_inference_policy())
    rsl_rl_success = evaluate(make_env(eval_worlds, eval_seed), policy, args.eval_episodes)

    print(
        f"robot {args.robot}, task {args.task} x {args.num_envs} worlds, cpu backend, "
        f"{os.cpu_count()} cores, episode {args.episode_length_s} s, wall budget {args.max_wall_s} s each"
    )
    print(f"{'':28s}{'ours':>12s}{'rsl_rl':>12s}")
    print(f"{'wall time (training), s':28s}{ours.wall_s:12.1f}{wall_s:12.1f}")
    print(f"{'env steps':28s}{ours.env_steps:12d}{steps:12d}")
    print(f"{'env-steps/s (training)':28s}{ours.env_steps_per_s:12.0f}{steps / wall_s:12.0f}")
    print(f"{'eval success rate':28s}{ours_success:12.1%}{rsl_rl_success:12.1%}")
    print(f"({args.eval_episodes}+ episodes each, deterministic, the same episodes: env seeded {eval_seed})")


if __name__ == "__main__":
    main()
