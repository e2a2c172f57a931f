"""Scale-out costs: one learner over simulator shards, and a shard on another (emulated) host.

1. shards  ``ros2 launch sim_bridge training.launch.py transport:=ros num_shards:=K`` (every node its
           own process) for K = 1 and 2, N worlds in all and the same env-step budget: env-steps/s
           and the evaluation's success. On a 2-core machine the second shard's process shows the
           cost of sharding, not a speed-up: there is no idle core for it.
2. link    the lockstep's stepping rate (fixed targets, no learning) of one learner over one
           simulator shard: both on this host (shared memory, as in part 1), then on two emulated
           hosts (test/stand_ins/hosts.py: network namespaces, UDP only) joined by a veth
           pair (0 ms: with the system's and with 4 MiB socket buffers) or a delay line of 1 and
           5 ms each way.
3. model   throughput with K hosts of N worlds each, from what parts 1 and 2 measured: the learner's
           cost per control step grows with the K x N worlds it serves (policy, messages, PPO update),
           a shard's does not, so the learner becomes the bottleneck once K x (its cost for N worlds)
           passes one shard's step plus the link's round trip.

Run (part 2 needs root): python test/benchmarks/bench_scale_out.py [--num-envs 2048]
     [--max-env-steps 2000000] [--link-envs 64,1024] [--delays 0,1,5] [--parts shards,link] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ros_processes import client_node, isolate_dds, node_executable, stop_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stand_ins"))
from hosts import SOCKETS_SIZE, EmulatedHosts, can_emulate_hosts  # test/stand_ins/hosts.py

NUM_STEPS = 24  # config/training.yaml: ppo.num_steps
SIMULATOR = {
    "model": "arm7",
    "task": "reach",
    "mode": "lockstep",
    "control_dt": 0.02,
    "episode_length_s": 3.0,
}


# 1. shards --------------------------------------------------------------------------------------


def train_over_shards(shards: int, args: argparse.Namespace, work: Path) -> dict[str, float]:
    """One training launch over ``shards`` simulator processes; its summary's figures."""
    run = work / f"shards_{shards}"
    command = [
        "ros2", "launch", "sim_bridge", "training.launch.py", "transport:=ros", f"num_shards:={shards}",
        f"num_envs:={args.num_envs}", f"max_env_steps:={args.max_env_steps}", "max_wall_s:=100000",
        f"eval_episodes:={args.eval_episodes}", "record:=false", f"seed:={args.seed}", f"output_dir:={run}",
    ]  # fmt: skip
    log = work / f"shards_{shards}.log"
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=3600)
    if done.returncode != 0:
        sys.exit(f"training over {shards} shards failed:\n{log.read_text()[-3000:]}")
    summary = json.loads((run / "summary.json").read_text())
    import torch

    history = torch.load(run / "checkpoint.pt", weights_only=True)["metadata"]["history"]
    steady = history[1:]  # the first iteration warms up
    return {
        "env_steps_per_s": summary["env_steps_per_s"],
        "wall_s": summary["wall_s"],
        "eval_success_nominal": summary["eval_success_rate_nominal"],
        "step_s": statistics.mean(r["rollout_s"] for r in steady) / NUM_STEPS,
        "update_s": statistics.mean(r["update_s"] for r in steady),
    }


# 2. link ----------------------------------------------------------------------------------------


def step_loop(num_envs: int, steps: int) -> dict[str, float]:
    """Step one simulator shard (namespace shard_0) ``steps`` times in lockstep; the step times."""
    import numpy as np
    from sim_bridge_core.models import load_robot
    from sim_bridge_core.ros.batch_topics import connect_sharded_worlds
    from sim_bridge_core.tasks import make_task

    sys.setswitchinterval(1e-4)  # as every node process (sim_bridge_core.ros.run)
    with client_node("bench_scale_out") as (node, executor):
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        task = make_task(SIMULATOR["task"], load_robot(SIMULATOR["model"]))
        worlds = connect_sharded_worlds(
            node, task, ["shard_0"], num_envs, control_dt=0.02, episode_length_s=3.0, timeout_s=60.0
        )
        worlds.observation()  # discovered
        targets = np.tile(task.robot.home, (num_envs, 1))
        times = []
        for step in range(steps + 10):
            start = time.perf_counter()
            worlds.step(targets)
            if step >= 10:  # warm-up steps left out
                times.append(time.perf_counter() - start)
        executor.shutdown(timeout_sec=2.0)  # the spinning thread ends before the context does
        spinner.join(timeout=5.0)
    return {
        "median_step_ms": 1e3 * statistics.median(times),
        "env_steps_per_s": num_envs * steps / sum(times),
    }


def measure_link(
    num_envs: int, delay_ms: float | None, sockets_size: int, args: argparse.Namespace, work: Path
) -> dict:
    """``step_loop`` against a simulator on this host (``delay_ms`` None) or on an emulated host,
    Fast DDS's UDP sockets ``sockets_size`` bytes (0: the system's default)."""
    parameters = {**SIMULATOR, "num_envs": num_envs, "mirror_envs": "[0]"}
    simulator = [node_executable("sim_bridge_sim", "simulator"), "--ros-args", "-r", "__ns:=/shard_0"]
    simulator += [arg for key, value in parameters.items() for arg in ("-p", f"{key}:={value}")]
    learner = [sys.executable, __file__, "--step-loop", str(num_envs), "--steps", str(args.steps)]
    hosts = EmulatedHosts(delay_ms) if delay_ms is not None else None
    env = dict(os.environ)
    log = work / f"simulator_{num_envs}_{delay_ms}.log"
    with hosts or contextlib.nullcontext():
        if hosts is not None:
            env = hosts.host_env(os.environ, int(os.environ["ROS_DOMAIN_ID"]), sockets_size)
            simulator, learner = (
                hosts.command(hosts.simulator, simulator),
                hosts.command(hosts.learner, learner),
            )
        with open(log, "w") as out:
            proc = subprocess.Popen(
                simulator, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            done = subprocess.run(learner, env=env, capture_output=True, text=True, timeout=600)
        finally:
            stop_process(proc)
    if done.returncode != 0:
        sys.exit(f"step loop failed:\n{done.stdout}{done.stderr}\n{log.read_text()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def shard_step_ms(num_envs: int, steps: int = 200) -> float:
    """One shard's own work per control step for ``num_envs`` worlds, in-process: take the batch
    command, step, and build the batch state and task messages (what the simulator node does)."""
    import numpy as np
    from sim_bridge_core.simulator.core import Simulator, SimulatorConfig
    from sim_bridge_core.simulator.wire import JointTrajectoryEncoder

    settings = {key: value for key, value in SIMULATOR.items() if key != "mode"}
    sim = Simulator(SimulatorConfig(num_envs=num_envs, **settings))
    names = [f"env_{i}/{joint}" for i in range(num_envs) for joint in sim.robot.joint_names]
    encoder = JointTrajectoryEncoder(names)
    targets = np.tile(sim.robot.home, (num_envs, 1))
    start = time.perf_counter()
    for _ in range(steps):
        sim.apply_batch_command(encoder.encode(sim.time_ns, targets), expected_stamp_ns=sim.time_ns)
        sim.step()
        sim.batch_joint_states()
        sim.task_signals()
    return 1e3 * (time.perf_counter() - start) / steps


# 3. model ---------------------------------------------------------------------------------------


def scaling_model(figures: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Throughput at K hosts of N worlds: N K / (K L + P + RTT), L the learner's cost per step for N
    worlds (its share of a step, plus the PPO update spread over the rollout), P a shard's step."""
    one = figures["shards"]["1"]
    n = args.num_envs
    shard_ms = figures["shard_step_ms"]
    learner_ms = 1e3 * one["step_s"] - shard_ms + 1e3 * one["update_s"] / NUM_STEPS
    model: dict[str, Any] = {"worlds_per_host": n, "learner_ms_per_step": learner_ms, "shard_ms": shard_ms}
    for rtt_ms in (0.2, 2.0, 10.0):
        rows = {k: n * k / (1e-3 * (k * learner_ms + shard_ms + rtt_ms)) for k in (1, 2, 4, 8, 16, 32)}
        model[f"rtt_{rtt_ms}_ms"] = {
            "env_steps_per_s": rows,
            "learner_bound_from_hosts": (shard_ms + rtt_ms) / learner_ms,
            "ceiling_env_steps_per_s": n / (1e-3 * learner_ms),
        }
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-envs", type=int, default=2048, help="part 1: worlds in all")
    parser.add_argument("--max-env-steps", type=int, default=2_000_000, help="part 1: training budget")
    parser.add_argument("--eval-episodes", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--link-envs", default="64,1024", help="part 2: worlds of the shard")
    parser.add_argument("--delays", default="0,1,5", help="part 2: one-way link delays, ms")
    parser.add_argument("--steps", type=int, default=300, help="part 2: steps per measurement")
    parser.add_argument("--parts", default="shards,link")
    parser.add_argument("--domain-id", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--step-loop", type=int, default=None, help=argparse.SUPPRESS)  # part 2's learner
    args = parser.parse_args()
    if args.step_loop is not None:
        print(json.dumps(step_loop(args.step_loop, args.steps)))
        return
    isolate_dds(args.domain_id)
    parts = args.parts.split(",")
    figures: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench_scale_out_") as folder:
        work = Path(folder)
        if "shards" in parts:
            figures["shards"] = {}
            for shards in (1, 2):
                print(f"training over {shards} shard(s), {args.num_envs} worlds in all...", flush=True)
                figures["shards"][str(shards)] = train_over_shards(shards, args, work)
            figures["shard_step_ms"] = shard_step_ms(args.num_envs)
            figures["model"] = scaling_model(figures, args)
        if "link" in parts:
            why_not = can_emulate_hosts()
            # (one-way delay, socket buffers): this host, the veth pair with the default buffers,
            # then every delay with the buffers docs/scale-out.md recommends
            links: list[tuple[float | None, int]] = [(None, 0)]
            if why_not:
                print(f"emulated hosts skipped: {why_not}")
            else:
                links += [(0.0, 0), *((float(delay), SOCKETS_SIZE) for delay in args.delays.split(","))]
            figures["link"] = {}
            for num_envs in map(int, args.link_envs.split(",")):
                for delay, sockets_size in links:
                    label = "this host" if delay is None else f"{delay:g} ms link"
                    label += ", default buffers" if delay is not None and not sockets_size else ""
                    print(f"stepping {num_envs} worlds, {label}...", flush=True)
                    figures["link"][f"{num_envs}/{label}"] = measure_link(
                        num_envs, delay, sockets_size, args, work
                    )
    report(figures, args)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **figures}, indent=2)
        )


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\n{figures['date']}, {figures['cores']} cores, arm7 reach, "
        f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}"
    )
    if "shards" in figures:
        print(
            f"\n1. one learner over K shards, {args.num_envs} worlds in all, {args.max_env_steps} env steps"
        )
        print(
            f"{'shards':>6} {'env-steps/s':>12} {'wall s':>7} {'step ms':>8} {'update s':>9} "
            f"{'eval success':>13}"
        )
        for k, row in figures["shards"].items():
            print(
                f"{k:>6} {row['env_steps_per_s']:12.0f} {row['wall_s']:7.1f} {1e3 * row['step_s']:8.1f} "
                f"{row['update_s']:9.2f} {row['eval_success_nominal']:13.1%}"
            )
        model = figures["model"]
        print(
            f"\n3. model, {model['worlds_per_host']} worlds per host: "
            f"learner {model['learner_ms_per_step']:.1f} ms "
            f"and shard {model['shard_ms']:.1f} ms per control step"
        )
        for key, row in model.items():
            if key.startswith("rtt_"):
                rates = ", ".join(f"K={k}: {rate / 1e3:.0f}k" for k, rate in row["env_steps_per_s"].items())
                print(
                    f"  round trip {key[4:-3]} ms: {rates} env-steps/s; learner-bound from K = "
                    f"{row['learner_bound_from_hosts']:.1f}, "
                    f"ceiling {row['ceiling_env_steps_per_s'] / 1e3:.0f}k"
                )
    if "link" in figures:
        print("\n2. lockstep stepping, one learner and one shard (no learning)")
        print(f"{'worlds / where':>40} {'median step ms':>15} {'env-steps/s':>12}")
        for key, row in figures["link"].items():
            print(f"{key:>40} {row['median_step_ms']:15.2f} {row['env_steps_per_s']:12.0f}")


if __name__ == "__main__":
    main()
