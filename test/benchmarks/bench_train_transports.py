"""PPO training throughput over the two transports: fused (in-process BatchedEnv) and ros (RemoteWorlds).

Both runs use the same ``learning.train`` loop, PpoConfig, seed and number of iterations:

1. fused  a BatchedEnv in this process (``make_batched_env``), arrays handed over in memory;
2. ros    the simulator node as its own process in mode lockstep, reached through ``batch/joint_states``,
          ``batch/task`` and ``batch/joint_trajectory`` as serialized bytes (``connect_remote_worlds``),
          this process's executor spinning on a second thread.

Reported: env-steps/s of each (this call's env steps over its wall time, the simulator's start-up
excluded; "steady" also leaves out the first iteration's warm-up), mean rollout and update seconds
per iteration, and ros / fused (target >= 0.6). Episode starts are not staggered in either run
(the ros transport cannot stagger).

Run: python test/benchmarks/bench_train_transports.py [--num-envs 1024] [--iterations 15] [--seed 0]
     [--ppo '{"num_epochs": 5}'] [--domain-id N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cli import add_ros_arguments, world_parser
from ros_processes import client_node, isolate_dds, start_simulator, stop_process


def train_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from sim_bridge_core.learning import PpoConfig

    ppo = PpoConfig.from_dict({"seed": args.seed, **json.loads(args.ppo)})
    steps = args.iterations * ppo.num_steps * args.num_envs
    return {"config": ppo, "max_env_steps": steps, "progress": False, "stagger_episodes": False}


def summarize(label: str, result: Any) -> dict[str, float]:
    history = result.history
    first, last = history[0], history[-1]  # steady state: after the first iteration's warm-up
    steady = (last["env_steps"] - first["env_steps"]) / (last["wall_s"] - first["wall_s"])
    return {
        f"{label}_env_steps_per_s": result.env_steps_per_s,
        f"{label}_steady_env_steps_per_s": steady,
        f"{label}_wall_s": result.run_wall_s,
        f"{label}_iterations": float(len(history)),
        f"{label}_rollout_s": sum(r["rollout_s"] for r in history) / len(history),
        f"{label}_update_s": sum(r["update_s"] for r in history) / len(history),
        # The last iteration in which episodes ended: both runs should learn alike (same seed, lockstep).
        f"{label}_mean_return": next(
            (r["mean_return"] for r in reversed(history) if r["episodes"]), float("nan")
        ),
    }


def bench_fused(args: argparse.Namespace) -> dict[str, float]:
    from sim_bridge_core.envs.gym import make_batched_env
    from sim_bridge_core.learning import train

    env = make_batched_env(
        args.model, args.task, args.num_envs, "cpu", args.control_dt, args.episode_length_s, args.seed
    )
    return summarize("fused", train(env, **train_kwargs(args)))


def bench_ros(args: argparse.Namespace, log_dir: Path) -> dict[str, float]:
    from sim_bridge_core.learning import train
    from sim_bridge_core.models import load_robot
    from sim_bridge_core.ros.batch_topics import connect_remote_worlds
    from sim_bridge_core.tasks import make_task

    parameters = {
        "model": args.model, "task": args.task, "num_envs": args.num_envs, "mode": "lockstep",
        "control_dt": args.control_dt, "episode_length_s": args.episode_length_s, "seed": args.seed,
    }  # fmt: skip
    log_path = log_dir / "simulator.log"
    proc = start_simulator(parameters, log_path)
    try:
        with client_node("bench_transports") as (node, executor):
            threading.Thread(target=executor.spin, daemon=True).start()
            task = make_task(args.task, load_robot(args.model))
            worlds = connect_remote_worlds(
                node,
                task,
                args.num_envs,
                args.control_dt,
                args.episode_length_s,
                timeout_s=args.startup_timeout,
            )
            start = time.perf_counter()
            worlds.observation()  # the simulator is up and discovered
            print(f"  simulator ready after {time.perf_counter() - start:.1f} s", flush=True)
            worlds.timeout_s = 30.0
            figures = summarize("ros", train(worlds, **train_kwargs(args)))
            figures["ros_rejected"] = float(worlds.rejected)
            return figures
    except Exception:
        print(log_path.read_text())
        raise
    finally:
        stop_process(proc)


def main() -> None:
    parser = world_parser(__doc__, num_envs=1024, episode_length_s=3.0)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ppo", default="{}", help="PpoConfig overrides as JSON")
    add_ros_arguments(parser)
    args = parser.parse_args()
    isolate_dds(args.domain_id)

    print("fused...", flush=True)
    figures = bench_fused(args)
    print("ros...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_transports_") as log_dir:
        figures |= bench_ros(args, Path(log_dir))
    figures["ros_vs_fused"] = figures["ros_env_steps_per_s"] / figures["fused_env_steps_per_s"]
    figures["ros_vs_fused_steady"] = (
        figures["ros_steady_env_steps_per_s"] / figures["fused_steady_env_steps_per_s"]
    )

    print(
        f"\n{args.model}/{args.task} x {args.num_envs} worlds, control_dt {args.control_dt} s, "
        f"{args.iterations} iterations, {os.cpu_count()} cores, ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}"
    )
    print(f"ppo: {json.dumps(train_kwargs(args)['config'].to_dict())}")
    print(
        f"{'':8} {'env-steps/s':>12} {'steady':>8} {'wall s':>7} {'rollout s/it':>13} {'update s/it':>12} "
        f"{'last return':>12}"
    )
    for label in ("fused", "ros"):
        print(
            f"{label:8} {figures[f'{label}_env_steps_per_s']:12.0f} "
            f"{figures[f'{label}_steady_env_steps_per_s']:8.0f} {figures[f'{label}_wall_s']:7.1f} "
            f"{figures[f'{label}_rollout_s']:13.2f} {figures[f'{label}_update_s']:12.2f} "
            f"{figures[f'{label}_mean_return']:12.1f}"
        )
    print(
        f"ros / fused {figures['ros_vs_fused']:.2f}, steady state {figures['ros_vs_fused_steady']:.2f} "
        f"(target >= 0.6); rejected messages: {figures['ros_rejected']:.0f}"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "figures": figures}, indent=2)
        )


if __name__ == "__main__":
    main()
