"""Why training must execute actions as the robot's controller will: each command interface's
checkpoint, evaluated through each interface.

A policy trained with commands executed as a joint_trajectory_controller executes them (the setpoint
ramps from the measured position to the target over the period) and one trained as a forward
position controller executes them (the setpoint steps to the target) are both evaluated under both
executions: fused arm7 reach worlds, nominal physics, deterministic actions, the same seed. The
diagonal is what the command contract guarantees; the other two cells are what a policy meets when
it is deployed through the other controller.

Without checkpoints it trains both first, as `make demo` does (`bringup training`, 2048 worlds,
--train-s of wall time each).

Run: python test/benchmarks/bench_contract_mismatch.py [--trajectory CKPT --position CKPT]
     [--train-s 180] [--episodes 1024]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from sim_bridge_core.envs.gym import make_batched_env
from sim_bridge_core.learning.checkpoint import load_checkpoint
from sim_bridge_core.learning.runner import evaluate

ROOT = Path(__file__).resolve().parents[2]
INTERFACES = ("trajectory", "position")


def train(interface: str, seconds: float, folder: Path) -> Path:
    output = folder / interface
    bringup = ROOT / "install" / "sim_bridge" / "lib" / "sim_bridge" / "bringup"
    subprocess.run(
        [
            str(bringup),
            "training",
            f"command_interface:={interface}",
            f"max_wall_s:={seconds}",
            "record:=false",
            f"output_dir:={output}",
        ],
        check=True,
    )
    return output / "checkpoint.pt"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for interface in INTERFACES:
        parser.add_argument(f"--{interface}", type=Path, help=f"a checkpoint trained through {interface}")
    parser.add_argument("--train-s", type=float, default=180.0, help="training wall time, if trained here")
    parser.add_argument("--episodes", type=int, default=1024)
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_contract_") as tmp:
        checkpoints = {
            interface: getattr(args, interface) or train(interface, args.train_s, Path(tmp))
            for interface in INTERFACES
        }
        print(f"arm7 reach, {args.episodes} fused episodes each, nominal physics, seed {args.seed}")
        print(f"{'trained through':18s}" + "".join(f"{'run through ' + i:>26s}" for i in INTERFACES))
        for trained, path in checkpoints.items():
            model = load_checkpoint(path).build_model()
            rates = []
            for executed in INTERFACES:
                env = make_batched_env(
                    num_envs=args.num_envs, episode_length_s=3.0, seed=args.seed, command_interface=executed
                )
                rates.append(evaluate(env, model, args.episodes))
            print(f"{trained:18s}" + "".join(f"{rate:>26.1%}" for rate in rates))


if __name__ == "__main__":
    main()
