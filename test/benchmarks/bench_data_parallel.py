"""Data-parallel learners on this host: one process with N worlds against torchrun's K ranks with
N/K worlds each, at the same env-step budget, seed, PPO settings and evaluation.

Both run the installed ``bringup training`` (transport fused, no recording); the ranks run under
``python -m torch.distributed.run --standalone --nproc_per_node=K`` (gloo on the CPU). The figures
come from each run's summary.json: env-steps/s (rank 0's, counting every rank's steps), the
training's wall time, and eval success with nominal physics (rank 0 evaluates alone); "command s"
is the whole command, start-up and evaluation included.

The K ranks share this host's cores with each other as the one process had them to itself, so on a
small machine (2 cores) this shows what data parallelism costs (a gradient all-reduce per minibatch,
K processes' acting and updates), not a speed-up: that needs cores (or a GPU) for every rank. (A
ratio a little above 1 probably comes from one rank acting on one thread while another steps its physics,
which one process does in turn.)

Run: python test/benchmarks/bench_data_parallel.py [--num-envs 2048] [--max-env-steps 2000000]
     [--ranks 2] [--eval-episodes 512] [--seeds 0 1] [--domain-id N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ros_processes import isolate_dds, node_executable

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]

NOTE = (
    "On this {cores}-core host the {ranks} ranks share the cores the single process had: the rows show "
    "what data-parallel learning costs (all-reduces, {ranks} processes), not a speed-up, which needs "
    "cores or a GPU per rank. A ratio a little above 1 probably comes from one rank acting (one "
    "thread) while another steps its physics, which one process does in turn."
)


def train(args: argparse.Namespace, ranks: int, seed: int, out: Path) -> dict[str, Any]:
    """One `bringup training` (under torchrun when ``ranks`` > 1): its summary and the command's time."""
    run = out / f"ranks{ranks}_seed{seed}"
    arguments = [
        "training", "transport:=fused", "record:=false", f"num_envs:={args.num_envs // ranks}",
        f"max_env_steps:={args.max_env_steps}", "max_wall_s:=1000000", f"eval_episodes:={args.eval_episodes}",
        f"seed:={seed}", f"output_dir:={run}",
    ]  # fmt: skip
    command = [node_executable("sim_bridge", "bringup"), *arguments]
    if ranks > 1:
        command = [*TORCHRUN, f"--nproc_per_node={ranks}", *command]
    log = out / f"ranks{ranks}_seed{seed}.log"
    start = time.perf_counter()
    with open(log, "w") as output:
        code = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False).returncode
    command_s = time.perf_counter() - start
    if code != 0:
        sys.exit(f"{' '.join(command)} exited {code}:\n{log.read_text()[-4000:]}")
    summary = json.loads((run / "summary.json").read_text())
    return {"ranks": ranks, "seed": seed, "command_s": command_s, **summary}


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| learners | worlds | seed | env steps | training s | env-steps/s | eval success (nominal) "
        "| command s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        learners = "1 process" if row["world_size"] == 1 else f"torchrun {row['world_size']} ranks"
        worlds = f"{row['num_envs'] // row['world_size']} x {row['world_size']}"
        lines.append(
            f"| {learners} | {worlds} | {row['seed']} | {row['env_steps']:,} | {row['wall_s']:.1f} "
            f"| {row['env_steps_per_s']:,.0f} | {row['eval_success_rate_nominal']:.1%} "
            f"| {row['command_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-envs", type=int, default=2048, help="worlds in all (a rank: num_envs / ranks)")
    parser.add_argument("--max-env-steps", type=int, default=2_000_000, help="budget, every rank's steps")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--eval-episodes", type=int, default=512)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: random)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.num_envs % args.ranks:
        sys.exit(f"--num-envs {args.num_envs} does not split over {args.ranks} ranks")
    isolate_dds(args.domain_id)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_data_parallel_") as folder:
        for seed in args.seeds:
            for ranks in (1, args.ranks):
                rows.append(train(args, ranks, seed, Path(folder)))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    single = [row["env_steps_per_s"] for row in rows if row["world_size"] == 1]
    parallel = [row["env_steps_per_s"] for row in rows if row["world_size"] > 1]
    print(f"\nenv-steps/s, {args.ranks} ranks / 1 process: {sum(parallel) / sum(single):.2f}")
    print(NOTE.format(cores=os.cpu_count(), ranks=args.ranks))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
