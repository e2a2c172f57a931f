"""Fused PPO training of arm7 reach on the cpu backend, beside the raw physics of the same model and N.

In one run:
  1. raw physics: ``mujoco.batch.Batch.step(nstep=substeps)`` with ctrl written from numpy, the same
     model, N, substeps and threads as the training env (measured before and after training, the
     mean of both is the baseline);
  2. fused training (``sim_bridge_core.learning.train``) for ``--max-wall-s`` seconds;
  3. deterministic evaluation of the final policy on fresh episodes of a separately seeded env,
     success = end-effector within 2 cm of the goal at the episode's last step;
  4. time to 90 %: the policy is snapshotted after every iteration (in memory, off the clock);
     afterwards every 5th snapshot is evaluated (1024 episodes) until one reaches 90 %.

Run: python test/benchmarks/bench_train_reach.py [--num-envs 2048] [--max-wall-s 180] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Callable

import mujoco
import numpy as np
from cli import world_parser
from mujoco.batch import Batch
from sim_bridge_core.deploy.contract import PolicyContract
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.envs.gym import make_batched_env
from sim_bridge_core.learning import (
    PpoConfig,
    PpoLearner,
    evaluate,
    export_policy,
    load_checkpoint,
    plot_training_curve,
    train,
)
from sim_bridge_core.models import RobotModel


def raw_physics_rate(robot: RobotModel, num_envs: int, substeps: int, seconds: float) -> float:
    """Env-steps/s of bare ``mujoco.batch`` stepping with random position targets."""
    batch = Batch(robot.model, num_envs, os.cpu_count() or 1)
    ctrl, qpos, qvel = batch.bind("ctrl"), batch.bind("qpos"), batch.bind("qvel")
    qpos[:, robot.qpos_adr] = robot.home
    batch.forward()
    rng = np.random.default_rng(0)
    targets = [
        robot.clamp(robot.home + rng.uniform(-0.5, 0.5, (num_envs, robot.num_joints))) for _ in range(8)
    ]
    batch.step(nstep=substeps)  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        ctrl[:, robot.actuator_ids] = targets[steps % 8] * robot.ctrl_per_rad
        batch.step(nstep=substeps, stage=mujoco.mjtStage.mjSTAGE_NONE)
        qpos[:, robot.qpos_adr], qvel[:, robot.dof_adr]
        steps += 1
    return steps * num_envs / (time.perf_counter() - start)


def env_factory(args: argparse.Namespace) -> Callable[[int, int], BatchedEnv]:
    """Worlds as the command line gives them (model, task, control period, episode length, command
    interface), for ``num_envs`` worlds and a seed."""

    def make_env(num_envs: int, seed: int) -> BatchedEnv:
        return make_batched_env(
            args.model,
            args.task,
            num_envs,
            "cpu",
            args.control_dt,
            args.episode_length_s,
            seed,
            args.command_interface,
        )

    return make_env


def main() -> None:
    parser = world_parser(__doc__, num_envs=2048, episode_length_s=3.0)
    parser.add_argument("--command-interface", choices=("trajectory", "position"), default="trajectory")
    parser.add_argument("--max-wall-s", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=2048)
    parser.add_argument("--raw-seconds", type=float, default=5.0, help="raw physics measurement, each time")
    parser.add_argument("--ppo", default="{}", help="PpoConfig overrides as JSON, e.g. '{\"num_epochs\": 5}'")
    parser.add_argument("--out", default="", help="folder for checkpoint.pt, curve.png, exported policy")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    make_env = env_factory(args)

    ppo = PpoConfig.from_dict({"seed": args.seed, **json.loads(args.ppo)})
    env = make_env(args.num_envs, args.seed)
    robot, substeps = env.backend.robot, env.backend.substeps
    raw_before = raw_physics_rate(robot, args.num_envs, substeps, args.raw_seconds)

    snapshots: list[tuple[float, int, dict]] = []
    first_train_90: list[float] = []

    def on_iteration(record: dict[str, float], learner: PpoLearner) -> None:
        snapshots.append(
            (record["wall_s"], int(record["env_steps"]), copy.deepcopy(learner.model.state_dict()))
        )
        if not first_train_90 and record["success_rate"] >= 0.9:
            first_train_90.append(record["wall_s"])

    result = train(
        env,
        ppo,
        max_wall_s=args.max_wall_s,
        on_iteration=on_iteration,
        checkpoint_path=os.path.join(args.out, "checkpoint.pt") if args.out else None,
        progress=not args.no_progress,
    )
    raw_after = raw_physics_rate(robot, args.num_envs, substeps, args.raw_seconds)
    raw = (raw_before + raw_after) / 2

    eval_env = make_env(min(args.num_envs, args.eval_episodes), args.seed + 1000)
    success = evaluate(eval_env, result.model, args.eval_episodes)

    # Every 5th iteration's snapshot, in order, until one reaches 90 % (the curve is not monotonic).
    time_to_90 = None
    probe = copy.deepcopy(result.model)
    for wall_s, steps, state in snapshots[4::5]:
        probe.load_state_dict(state)
        if evaluate(eval_env, probe, 1024) >= 0.9:
            time_to_90 = (wall_s, steps)
            break

    if args.out:
        plot_training_curve(result.history, os.path.join(args.out, "curve.png"))
        contract = PolicyContract.of_checkpoint(load_checkpoint(os.path.join(args.out, "checkpoint.pt")))
        export_policy(result.model, args.out, contract)

    fps = result.env_steps_per_s
    print(
        f"{args.model}/{args.task} x {args.num_envs} worlds, cpu backend, {os.cpu_count()} cores, "
        f"control_dt {args.control_dt} s ({substeps} substeps), episode {args.episode_length_s} s, "
        f"command interface {args.command_interface}"
    )
    print(f"ppo: {json.dumps(ppo.to_dict())}")
    print(f"wall time (training)       {result.wall_s:10.1f} s  ({len(result.history)} iterations)")
    print(f"env steps                  {result.env_steps:10d}")
    print(f"env-steps/s (training)     {fps:10.0f}")
    print(f"raw physics env-steps/s    {raw:10.0f}  (before {raw_before:.0f}, after {raw_after:.0f})")
    print(f"ratio training / raw       {fps / raw:10.2f}")
    print(f"eval success rate          {success:10.1%}  ({args.eval_episodes}+ episodes, deterministic)")
    if first_train_90:
        print(f"training episodes >= 90 %  {first_train_90[0]:10.1f} s  (stochastic policy)")
    if time_to_90:
        print(f"time to 90 % eval success  {time_to_90[0]:10.1f} s  ({time_to_90[1]} env steps)")
    else:
        print("time to 90 % eval success  not reached")


if __name__ == "__main__":
    main()
