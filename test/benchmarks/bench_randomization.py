"""Cost of domain randomization: BatchedEnv stepping with and without a spec, same run, alternating.

  plain       BatchedEnv.step + observation, no randomizer
  randomized  the same with a Randomizer (default spec: model fields per world, set_const on
              every reset, action delay and noise, sensor noise and bias, initial offsets,
              pushes) under its schedule (reset by default)

Both envs auto-reset (the short default episode makes every world reset several times in
each measurement, so the reset schedule's redraws are in the figure). Target: <= 10 %.

Run: python test/benchmarks/bench_randomization.py [--spec config/randomization/default.yaml]
     [--num-envs 1024] [--repeats 5]
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cli import world_parser
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.models import load_robot
from sim_bridge_core.randomization import Randomizer, load_spec
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.tasks import make_task
from timing import rate

DEFAULT_SPEC = Path(__file__).resolve().parents[2] / "config" / "randomization" / "default.yaml"


def main() -> None:
    parser = world_parser(__doc__, num_envs=1024)
    parser.add_argument("--spec", default=str(DEFAULT_SPEC))
    parser.add_argument("--schedule", default="", help="override the spec's schedule")
    parser.add_argument("--episode-length-s", type=float, default=0.5, help="short, so worlds reset often")
    parser.add_argument("--steps", type=int, default=50, help="control steps per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    robot = load_robot(args.model)
    n, threads = args.num_envs, os.cpu_count() or 1
    spec = load_spec(args.spec)
    if args.schedule:
        from dataclasses import replace

        spec = replace(spec, schedule=args.schedule)
    rng = np.random.default_rng(0)
    targets = [robot.clamp(robot.home + rng.uniform(-0.2, 0.2, (n, robot.num_joints))) for _ in range(8)]

    def make_env(randomized: bool) -> BatchedEnv:
        backend = CpuBackend(robot, n, args.control_dt, threads=threads)
        randomizer = Randomizer(spec, backend) if randomized else None
        task = make_task(args.task, robot)
        return BatchedEnv(backend, task, args.episode_length_s, seed=0, randomizer=randomizer)

    envs = {"plain": make_env(False), "randomized": make_env(True)}
    resets = {name: 0 for name in envs}

    def stepper(name: str) -> Callable[[int], None]:
        env = envs[name]

        def step(i: int) -> None:
            result = env.step(targets[i % 8])
            env.observation()
            resets[name] += int(result.done.sum())

        return step

    contenders = {name: stepper(name) for name in envs}
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, step in contenders.items():
            rates[name].append(rate(step, args.steps, n))

    substeps = round(args.control_dt / robot.physics_dt)
    columns = len(envs["randomized"].randomizer.names)
    print(
        f"{args.model} x {n} worlds, task {args.task}, {threads} threads, control_dt {args.control_dt} s "
        f"({substeps} physics steps), episodes {args.episode_length_s} s with auto-reset; "
        f"median of {args.repeats} x {args.steps} steps, alternating"
    )
    print(
        f"spec {Path(args.spec).name}: schedule {spec.schedule}, {len(spec.parameters)} parameters, "
        f"{columns} applied values per world"
    )
    baseline = statistics.median(rates["plain"])
    print(f"{'contender':<11} {'env-steps/s':>12} {'vs plain':>9} {'cost':>7} {'resets':>8}")
    for name, values in rates.items():
        median = statistics.median(values)
        share = median / baseline
        print(f"{name:<11} {median:12.0f} {share:9.1%} {1 - share:7.1%} {resets[name]:8d}")


if __name__ == "__main__":
    main()
