"""System identification of a robot whose true parameters are known, validated on a run of another kind.

The robot is arm7 changed as test/stand_ins/robot.py changes it (--damping-scale 3 --armature-add 0.05
--frictionloss-add 0.3 --kp-scale 0.6 --command-delay-s 0.008: softer servos, more damping, armature
and friction, commands late), or with every joint's values drawn at random (--truth random --seed N).

  --robot in-process (default): the simulator in this process, excited exactly as `bringup excite`
      does (sim_bridge_core.sysid.simulated: config/excite.yaml's excitation, 500 Hz joint states).
  --robot stand-in: test/stand_ins/robot.py in its own process (its own MuJoCo stepped on the wall
      clock, a 500 Hz trajectory controller interpolating linearly, commands delayed on arrival), driven
      over DDS by the exciter node as `bringup excite simulate:=false` starts it.

Two runs are recorded: the identification excitation (config/excite.yaml's defaults, --duration s) and
a run of another kind, a faster multi-sine (0.5-5 Hz, up to 40 rad/s^2, 3 sines per joint, other
phases, 20 s). `bringup sysid`'s job (run_sysid, config/sysid.yaml's settings) identifies the robot
from the first, given only the nominal arm7, with the second as validation_bags. Reported:

  wall           the job's time, bag reading to outputs written
  held out       joint position RMS error on the excitation's windows the fit never saw
  another kind   the same on the faster multi-sine's windows (each 2 s, open loop from its recorded
                 start), nominal vs identified; in-process also the whole run replayed through the
                 simulator built from the written robot.yaml as `bringup sim robot:=S/robot.yaml` builds it
  parameters     per parameter: true, nominal, identified (what robot.yaml holds), and why it stays
                 nominal where the data does not identify it

Run: python test/benchmarks/bench_sysid.py [--robot in-process|stand-in] [--duration 30] [--json out.json]
     [--work DIR (keep the bags and sysid's outputs)]
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

import numpy as np
import yaml
from sim_bridge_core.bringup.description import describe
from sim_bridge_core.config import from_mapping
from sim_bridge_core.jobs.sysid import run_sysid
from sim_bridge_core.models import load_robot
from sim_bridge_core.simulator.core import SimulatorConfig
from sim_bridge_core.sysid.bags import read_run
from sim_bridge_core.sysid.config import ExcitationConfig, SysidConfig
from sim_bridge_core.sysid.identify import nominal_values
from sim_bridge_core.sysid.simulated import record_excitation, replay_bag

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
STAND_IN = {
    "--damping-scale": 3.0,
    "--armature-add": 0.05,
    "--frictionloss-add": 0.3,
    "--kp-scale": 0.6,
    "--command-delay-s": 0.008,
}
# The run of another kind: faster, other frequencies and phases.
FASTER = {
    "duration_s": 20.0,
    "seed": 7,
    "sines": 3,
    "min_frequency_hz": 0.5,
    "max_frequency_hz": 5.0,
    "max_acceleration": 40.0,
    "velocity_fraction": 0.6,
}
TRAJECTORY_TOPIC = "/joint_trajectory_controller/joint_trajectory"


def stand_in_truth() -> dict:
    """arm7's parameters as the stand-in robot's STAND_IN arguments change them (kv is left as it is)."""
    return {
        "joints": {
            joint: {
                "damping": values["damping"] * STAND_IN["--damping-scale"],
                "armature": values["armature"] + STAND_IN["--armature-add"],
                "frictionloss": values["frictionloss"] + STAND_IN["--frictionloss-add"],
                "kp": values["kp"] * STAND_IN["--kp-scale"],
                "kv": values["kv"],
            }
            for joint, values in nominal_values(load_robot("arm7")).items()
        },
        "command_delay_s": STAND_IN["--command-delay-s"],
    }


def random_truth(seed: int) -> dict:
    """arm7's nominal values, each joint's changed at random, and a delay of 2-5 physics steps."""
    robot = load_robot("arm7")
    rng = np.random.default_rng(seed)
    joints = {}
    for j, (name, values) in enumerate(nominal_values(robot).items()):
        force = float(np.abs(robot.model.actuator_forcerange[robot.actuator_ids[j]]).max())
        joints[name] = {
            "damping": values["damping"] * rng.uniform(0.5, 3.0),
            "armature": values["armature"] * rng.uniform(0.8, 1.6),
            "frictionloss": rng.uniform(0.0, 0.02) * force,
            "kp": values["kp"] * rng.uniform(0.7, 1.3),
            "kv": values["kv"] * rng.uniform(0.7, 1.3),
        }
    return {"joints": joints, "command_delay_s": float(rng.integers(2, 6) * robot.physics_dt)}


def excitation_settings() -> dict:
    """config/excite.yaml's excitation settings, as `bringup excite` gives them to the exciter."""
    node = describe("excite", {}, CONFIG).nodes[-1]
    return {
        k.removeprefix("excitation."): v for k, v in node.parameters.items() if k.startswith("excitation.")
    }


def in_process_bags(work: Path, truth: dict, duration_s: float) -> tuple[Path, Path, SimulatorConfig]:
    robot = SimulatorConfig(
        model="arm7", control_dt=0.002, task="none", model_parameters=yaml.safe_dump(truth)
    )
    excitation = ExcitationConfig(**{**excitation_settings(), "duration_s": duration_s})
    bag = record_excitation(work / "bag", robot, excitation, start_s=0.5)
    other = record_excitation(
        work / "other", robot, ExcitationConfig(**{**excitation_settings(), **FASTER}), 0.5
    )
    return bag, other, robot


def run_exciter(work: Path, name: str, excitation: dict) -> Path:
    """The exciter node as `bringup excite simulate:=false` starts it, on the stand-in; its bag."""
    sys.path.insert(0, str(Path(__file__).parent))
    from ros_processes import node_executable

    overrides = {"simulate": False, "state_topic": "/joint_states", "command_topic": TRAJECTORY_TOPIC}
    node = describe("excite", {**overrides, "output_dir": str(work / name)}, CONFIG).nodes[-1]
    parameters = {**node.parameters, **{f"excitation.{k}": v for k, v in excitation.items()}}
    args = [node_executable(node.package, node.executable), "--ros-args", "-r", f"__node:={node.name}"]
    args += [item for key, value in parameters.items() for item in ("-p", f"{key}:={value}")]
    args += [item for source, target in node.remappings for item in ("-r", f"{source}:={target}")]
    timeout = parameters["excitation.duration_s"] + 60.0
    with open(work / f"{name}.log", "w") as log:
        code = subprocess.run(
            args, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, env=os.environ
        ).returncode
    if code != 0:
        sys.exit(f"exciter {name} exited {code}:\n{(work / f'{name}.log').read_text()}")
    return work / name / "rollouts"


def stand_in_bags(work: Path, duration_s: float) -> tuple[Path, Path]:
    sys.path.insert(0, str(Path(__file__).parent))
    from ros_processes import isolate_dds, start_logged, stop_process, wait_for_line

    isolate_dds(None)
    arguments = [item for key, value in STAND_IN.items() for item in (key, str(value))]
    log = work / "robot.log"
    robot = start_logged(
        [
            sys.executable,
            str(ROOT / "test/stand_ins/robot.py"),
            "--model",
            load_robot("arm7").path,
            *arguments,
        ],
        log,
    )
    try:
        wait_for_line(log, "stand-in robot ready", robot, 60.0)
        time.sleep(1.0)  # the robot settles under gravity, as before any bringup excite
        bag = run_exciter(work, "bag", {"duration_s": duration_s})
        other = run_exciter(work, "other", FASTER)
    finally:
        stop_process(robot)
    print(log.read_text().strip().splitlines()[-1])
    return bag, other


def replay_error(robot_file: str, bag: Path) -> float:
    """RMS joint position error of the simulator `bringup sim robot:=<robot_file>` builds, fed the bag's
    commands at their times, against the bag's joint states."""
    parameters = describe("sim", {"robot": robot_file}, CONFIG).nodes[0].parameters
    sim = from_mapping(SimulatorConfig, {k: v for k, v in parameters.items() if k != "use_sim_time"}, "sim")
    replayed = replay_bag(sim, bag)
    recorded = read_run(bag, load_robot("arm7")).positions
    return float(np.sqrt(np.mean((replayed - recorded) ** 2)))


def parameter_rows(summary: dict, truth: dict) -> list[dict]:
    rows = []
    for name, entry in summary["parameters"].items():
        joint, _, kind = name.partition(".")
        true = truth["command_delay_s"] if name == "command_delay_s" else truth["joints"][joint][kind]
        rows.append(
            {
                "parameter": name,
                "true": true,
                "nominal": entry["nominal"],
                "identified": entry["applied"] if name == "command_delay_s" else entry["identified"],
                "written": entry["written"],
                "why_nominal": entry["why_nominal"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--robot", choices=("in-process", "stand-in"), default="in-process")
    parser.add_argument("--truth", choices=("stand-in", "random"), default="stand-in")
    parser.add_argument("--seed", type=int, default=1, help="draws the unknown parameters (--truth random)")
    parser.add_argument("--duration", type=float, default=30.0, help="identification excitation, s")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--work", type=Path, default=None, help="keep the bags and outputs here")
    args = parser.parse_args()
    if args.robot == "stand-in" and args.truth != "stand-in":
        parser.error("--robot stand-in has the stand-in's truth only")

    truth = stand_in_truth() if args.truth == "stand-in" else random_truth(args.seed)
    settings = describe("sysid", {}, CONFIG).nodes[0].parameters  # config/sysid.yaml's
    with tempfile.TemporaryDirectory() as folder:
        work = args.work or Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if args.robot == "stand-in":
            bag, other = stand_in_bags(work, args.duration)
        else:
            bag, other, _ = in_process_bags(work, truth, args.duration)
        recorded_s = time.perf_counter() - started
        values = {k: v for k, v in settings.items() if k != "use_sim_time"}
        values |= {"bags": [str(bag)], "validation_bags": [str(other)], "output_dir": str(work / "sysid")}
        config = from_mapping(SysidConfig, values, "sysid")
        started = time.perf_counter()
        result = run_sysid(config, log=print)["result"]
        wall_s = time.perf_counter() - started
        summary = json.loads((work / "sysid" / "sysid.json").read_text())
        replay = None
        if args.robot == "in-process":
            replay = (replay_error("arm7", other), replay_error(str(work / "sysid" / "robot.yaml"), other))
    report(args, truth, result, summary, recorded_s, wall_s, replay)


def report(args, truth, result, summary, recorded_s, wall_s, replay) -> None:
    rows = parameter_rows(summary, truth)
    errors = {part: result.errors[part] for part in ("held_out", "validation")}
    figures = {
        "robot": args.robot,
        "truth": args.truth,
        "duration_s": args.duration,
        "record_s": recorded_s,
        "wall_s": wall_s,
        "iterations": result.iterations,
        "parameters": len(result.unknowns),
        "written": sum(row["written"] for row in rows),
        **{
            f"{part}_{which}_rad": errors[part][which]["position_rms_rad"]
            for part in errors
            for which in ("nominal", "identified")
        },
        **{f"{part}_ratio": errors[part]["ratio"] for part in errors},
        "validation_per_joint": {
            w: errors["validation"][w]["position_rms_rad_per_joint"] for w in ("nominal", "identified")
        },
        "replay_nominal_rad": replay[0] if replay else None,
        "replay_identified_rad": replay[1] if replay else None,
        "rows": rows,
    }
    print(
        f"\nsysid ({args.robot}, truth {args.truth}) on a {args.duration:g} s excitation: {wall_s:.1f} s, "
        f"{result.iterations} iterations (recording: {recorded_s:.1f} s); "
        f"{figures['written']} of {len(rows)} parameters identified and written"
    )
    for part, what in (("held_out", "held out (same kind)"), ("validation", "another kind (faster)")):
        print(
            f"  {what}: {figures[f'{part}_nominal_rad']:.3g} rad nominal -> "
            f"{figures[f'{part}_identified_rad']:.3g} rad identified (x{figures[f'{part}_ratio']:.3g})"
        )
    if replay:
        print(
            f"  another kind replayed through robot.yaml: {replay[0]:.3g} -> {replay[1]:.3g} rad "
            f"(x{replay[1] / replay[0]:.3g})"
        )
    print("\n| parameter | true | nominal | identified (robot.yaml) | why nominal |\n|---|---|---|---|---|")
    for row in rows:
        shown = f"**{row['identified']:.4g}**" if row["written"] else f"{row['identified']:.4g} (nominal)"
        print(
            f"| {row['parameter']} | {row['true']:.4g} | {row['nominal']:.4g} | {shown} "
            f"| {row['why_nominal'] or ''} |"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
