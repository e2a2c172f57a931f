"""System identification on a 60 s bag of arm7 with parameters sysid is not told (target: <= 5 min).

The robot: the simulator running arm7 with every joint's damping, armature, frictionloss and servo
kp/kv drawn at random (--seed) and a command delay of a few physics steps. It is excited exactly as
`bringup excite` does (the in-process recorder, sim_bridge_core.sysid.simulated), for --duration
seconds, and `bringup sysid`'s job (run_sysid, the config/sysid.yaml settings) identifies it from
that bag, given only the nominal arm7. Reported:

  wall         the job's time, bag reading to outputs written
  held out     joint position RMS error on the windows the fit never saw: nominal vs identified
  unseen run   the same on a second excitation (another seed), replayed through the simulator
               built from the written robot.yaml as `bringup sim robot:=S/robot.yaml` builds it
  parameters   how many the data identified, and the largest relative error among them

Run: python test/benchmarks/bench_sysid.py [--duration 60] [--seed 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from sim_bridge_core.bringup.description import describe
from sim_bridge_core.config import from_mapping
from sim_bridge_core.jobs.sysid import run_sysid
from sim_bridge_core.models import load_robot
from sim_bridge_core.simulator.core import SimulatorConfig
from sim_bridge_core.sysid.bags import read_run
from sim_bridge_core.sysid.config import ExcitationConfig, SysidConfig
from sim_bridge_core.sysid.simulated import record_excitation, replay_bag

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"


def unknown_robot(seed: int) -> dict:
    """arm7's nominal values, each joint's changed at random, and a delay of 2-5 physics steps."""
    robot = load_robot("arm7")
    rng = np.random.default_rng(seed)
    m = robot.model
    joints = {}
    for j, name in enumerate(robot.joint_names):
        dof, act = robot.dof_adr[j], robot.actuator_ids[j]
        force = float(np.abs(m.actuator_forcerange[act]).max())
        joints[name] = {
            "damping": float(m.dof_damping[dof] * rng.uniform(0.5, 3.0)),
            "armature": float(m.dof_armature[dof] * rng.uniform(0.8, 1.6)),
            "frictionloss": float(rng.uniform(0.0, 0.02) * force),
            "kp": float(m.actuator_gainprm[act, 0] * rng.uniform(0.7, 1.3)),
            "kv": float(-m.actuator_biasprm[act, 2] * rng.uniform(0.7, 1.3)),
        }
    return {"joints": joints, "command_delay_s": float(rng.integers(2, 6) * robot.physics_dt)}


def replay_error(sim_parameters: dict, bag: Path) -> float:
    """RMS joint position error of a Simulator built from a bringup node description, fed the bag's
    commands at their times, against the bag's joint states."""
    values = {k: v for k, v in sim_parameters.items() if k != "use_sim_time"}
    replayed = replay_bag(from_mapping(SimulatorConfig, values, "simulator"), bag)
    recorded = read_run(bag, load_robot("arm7")).positions
    return float(np.sqrt(np.mean((replayed - recorded) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="excitation length, s")
    parser.add_argument("--seed", type=int, default=1, help="draws the unknown parameters")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    truth = unknown_robot(args.seed)
    robot = SimulatorConfig(
        model="arm7", control_dt=0.002, task="none", model_parameters=yaml.safe_dump(truth)
    )
    settings = describe("sysid", {}, CONFIG).nodes[0].parameters  # config/sysid.yaml's
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        started = time.perf_counter()
        bag = record_excitation(work / "bag", robot, ExcitationConfig(duration_s=args.duration), start_s=0.5)
        recorded_s = time.perf_counter() - started
        config = from_mapping(
            SysidConfig,
            {
                **{k: v for k, v in settings.items() if k != "use_sim_time"},
                "bags": [str(bag)],
                "output_dir": str(work / "sysid"),
            },
            "sysid",
        )
        started = time.perf_counter()
        outcome = run_sysid(config, log=lambda line: None)
        wall_s = time.perf_counter() - started
        result = outcome["result"]
        summary = json.loads((work / "sysid" / "sysid.json").read_text())
        unseen = record_excitation(
            work / "unseen", robot, ExcitationConfig(duration_s=20.0, seed=args.seed + 100), start_s=0.5
        )
        nominal_sim = describe("sim", {}, CONFIG).nodes[0].parameters
        identified_sim = (
            describe("sim", {"robot": str(work / "sysid" / "robot.yaml")}, CONFIG).nodes[0].parameters
        )
        unseen_before, unseen_after = replay_error(nominal_sim, unseen), replay_error(identified_sim, unseen)

    errors = []
    for name, entry in summary["parameters"].items():
        if entry["identified_by_data"]:
            joint, _, kind = name.partition(".")
            true = truth["command_delay_s"] if name == "command_delay_s" else truth["joints"][joint][kind]
            errors.append(abs(entry["identified"] - true) / max(abs(true), 1e-9))
    held_out = result.errors["held_out"]
    figures = {
        "duration_s": args.duration,
        "seed": args.seed,
        "record_s": recorded_s,
        "wall_s": wall_s,
        "iterations": result.iterations,
        "parameters": len(result.unknowns),
        "fit_windows": len([w for w in result.windows if not w.held_out]),
        "held_out_windows": held_out["nominal"]["windows"],
        "held_out_nominal_rad": held_out["nominal"]["position_rms_rad"],
        "held_out_identified_rad": held_out["identified"]["position_rms_rad"],
        "held_out_ratio": held_out["ratio"],
        "unseen_nominal_rad": unseen_before,
        "unseen_identified_rad": unseen_after,
        "unseen_ratio": unseen_after / unseen_before,
        "identified_parameters": len(errors),
        "identified_max_relative_error": max(errors) if errors else None,
        "delay_true_s": truth["command_delay_s"],
        "delay_identified_s": summary["parameters"]["command_delay_s"]["identified"],
    }
    print(
        f"sysid on a {args.duration:g} s arm7 bag ({figures['parameters']} parameters, "
        f"{figures['fit_windows']} windows fitted, {figures['held_out_windows']} held out): "
        f"{wall_s:.1f} s, {result.iterations} iterations (recording the bag: {recorded_s:.1f} s)\n"
        f"  held out: {figures['held_out_nominal_rad']:.3g} rad nominal -> "
        f"{figures['held_out_identified_rad']:.3g} rad identified (x{figures['held_out_ratio']:.2g})\n"
        f"  unseen run through robot.yaml: {unseen_before:.3g} rad nominal -> {unseen_after:.3g} rad "
        f"identified (x{figures['unseen_ratio']:.2g})\n"
        f"  {len(errors)} parameters identified by the data, largest relative error "
        f"{figures['identified_max_relative_error']:.2g}; delay {figures['delay_identified_s'] * 1e3:.2f} ms "
        f"(true {truth['command_delay_s'] * 1e3:.0f} ms)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
