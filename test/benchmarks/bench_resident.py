"""Device-resident worlds against host arrays, on one machine, in one run.

For each task (pendulum, arm7 reach) at --worlds worlds on Warp's --device (default cpu):
  env      BatchedEnv steps/s under random actions, observation read every step: the warp backend
           with its arrays copied to numpy every step (``host``, the simulator node's path) and
           resident (torch tensors on Warp's memory, the fused training path); mujoco.batch
           (``cpu``) beside them as the reference;
  ppo      fused PPO env-steps/s end to end over --ppo-steps env steps, on each of the three.

Prints one table and writes --json. On Warp's CPU device this answers "is the resident path
slower than copying?"; on a GPU bench_gpu.py is the one to run.

    python test/benchmarks/bench_resident.py [--worlds 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from typing import Any

import numpy as np
from sim_bridge_core.arrays import on_device
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.learning import PpoConfig, train
from sim_bridge_core.models import load_robot
from sim_bridge_core.sim.backends import make_backend
from sim_bridge_core.tasks import make_task

TASKS = {"pendulum": "pendulum", "reach": "arm7"}
KINDS = ("cpu", "host", "resident")


def make_env(kind: str, task: str, worlds: int, device: str) -> BatchedEnv:
    robot = load_robot(TASKS[task])
    backend = make_backend(
        "cpu" if kind == "cpu" else "warp", robot, worlds, 0.02, device=device, resident=kind == "resident"
    )
    return BatchedEnv(backend, make_task(task, robot), episode_length_s=2.0, seed=0)


def env_rate(env: BatchedEnv, seconds: float) -> float:
    rng = np.random.default_rng(0)
    shape = (env.num_envs, env.task.robot.num_joints)
    actions = [on_device(rng.uniform(-1, 1, shape), env.observation()) for _ in range(8)]
    env.step(env.task.action_to_targets(actions[0]))  # compiles what is left to compile
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(env.task.action_to_targets(actions[steps % 8]))
        env.observation()
        steps += 1
    return steps * env.num_envs / (time.perf_counter() - start)


def ppo_rate(env: BatchedEnv, env_steps: int) -> float:
    config = PpoConfig(num_steps=16, actor_hidden=[64, 64], critic_hidden=[64, 64], threads=1)
    return train(env, config, max_env_steps=env_steps, progress=False).env_steps_per_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worlds", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="Warp device of host and resident worlds")
    parser.add_argument("--measure-s", type=float, default=5.0)
    parser.add_argument("--ppo-steps", type=int, default=100_000)
    parser.add_argument("--json", default="bench_resident.json")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    print(f"{'task':<9} {'stage':<5} " + " ".join(f"{kind:>10}" for kind in KINDS) + "   resident / host")
    for task in TASKS:
        for stage in ("env", "ppo"):
            figures = {}
            for kind in KINDS:
                env = make_env(kind, task, args.worlds, args.device)
                measure = env_rate(env, args.measure_s) if stage == "env" else ppo_rate(env, args.ppo_steps)
                figures[kind] = measure
            ratio = figures["resident"] / figures["host"]
            rows.append({"task": task, "stage": stage, "worlds": args.worlds, **figures, "vs_host": ratio})
            cells = " ".join(f"{figures[kind]:>10,.0f}" for kind in KINDS)
            print(f"{task:<9} {stage:<5} {cells}   {ratio:.2f}")
    header = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": args.device}
    with open(args.json, "w") as out:
        json.dump({**header, "unit": "env-steps/s", "rows": rows}, out, indent=2)


if __name__ == "__main__":
    main()
