"""System identification of a robot whose true parameters are known, validated on a run of another kind.

  --robot stand-in (default): test/stand_ins/robot.py running arm7 in its own process (its own MuJoCo
      stepped on the wall clock, a 500 Hz trajectory controller that interpolates as
      joint_trajectory_controller does) with softer servos, more damping, armature and friction and an
      8 ms actuation delay (STAND_IN); its true parameters are the ones it prints. The exciter node
      drives it over DDS as `bringup excite simulate:=false` starts it, and records the bags.
  --robot in-process: the simulator in this process with every joint's values drawn at random (--seed)
      and a delay of a few physics steps, excited exactly as `bringup excite` does
      (sim_bridge_core.sysid.simulated).

Two runs are recorded: the identification excitation (config/excite.yaml's settings, --duration s) and
a run of another kind, a faster multi-sine (FASTER: 0.5-5 Hz, up to 40 rad/s^2, 3 sines per joint,
other phases, 20 s). `bringup sysid`'s job (run_sysid, config/sysid.yaml's settings) identifies the
robot from the first, given only the nominal arm7, with the second as its validation bag. Reported:

  wall           the job's time, bag reading to outputs written
  held out       joint position RMS error on the excitation's windows the fit never saw
  another kind   the same on the faster run's windows (each rolled out open loop from its recorded
                 start): nominal vs robot.yaml's model
  parameters     per parameter: true, nominal, first fit, written to robot.yaml, and why it stays nominal

Run: python test/benchmarks/bench_sysid.py [--robot stand-in|in-process] [--duration 30] [--json out.json]
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
from sim_bridge_core.sysid.config import ExcitationConfig, SysidConfig
from sim_bridge_core.sysid.identify import nominal_values
from sim_bridge_core.sysid.simulated import record_excitation

sys.path.insert(0, str(Path(__file__).parent))
from ros_processes import isolate_dds, node_executable, start_logged, stop_process, wait_for_line

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
STAND_IN = {
    "--damping-scale": 3.0,
    "--armature-add": 0.05,
    "--frictionloss-add": 0.3,
    "--kp-scale": 0.6,
    "--actuation-delay-s": 0.008,
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
PARAMETERS_LINE = "stand-in robot parameters: "


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


def in_process_bags(work: Path, truth: dict, duration_s: float) -> tuple[Path, Path]:
    robot = SimulatorConfig(
        model="arm7", control_dt=0.002, task="none", model_parameters=yaml.safe_dump(truth)
    )
    excitation = ExcitationConfig(**{**excitation_settings(), "duration_s": duration_s})
    bag = record_excitation(work / "bag", robot, excitation, start_s=0.5)
    other = record_excitation(
        work / "other", robot, ExcitationConfig(**{**excitation_settings(), **FASTER}), 0.5
    )
    return bag, other


def run_exciter(work: Path, name: str, excitation: dict) -> Path:
    """The exciter node as `bringup excite simulate:=false` starts it, on the stand-in; its bag."""
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


def stand_in_bags(work: Path, duration_s: float) -> tuple[Path, Path, dict]:
    """Both runs on the stand-in, and its true parameters (the delay: its actuation delay)."""
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
    lines = log.read_text().splitlines()
    printed = json.loads(
        next(line for line in lines if line.startswith(PARAMETERS_LINE))[len(PARAMETERS_LINE) :]
    )
    print(lines[-1])
    truth = {"joints": printed["joints"], "command_delay_s": printed["actuation_delay_s"]}
    return bag, other, truth


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
                "first_fit": entry["first_fit"],
                "written": entry["applied"] if name == "command_delay_s" else entry["identified"],
                "why_nominal": entry["why_nominal"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--robot", choices=("stand-in", "in-process"), default="stand-in")
    parser.add_argument("--seed", type=int, default=1, help="draws the unknown parameters (in-process)")
    parser.add_argument("--duration", type=float, default=30.0, help="identification excitation, s")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--work", type=Path, default=None, help="keep the bags and outputs here")
    args = parser.parse_args()

    settings = describe("sysid", {}, CONFIG).nodes[0].parameters  # config/sysid.yaml's
    with tempfile.TemporaryDirectory() as folder:
        work = args.work or Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if args.robot == "stand-in":
            bag, other, truth = stand_in_bags(work, args.duration)
        else:
            truth = random_truth(args.seed)
            bag, other = in_process_bags(work, truth, args.duration)
        recorded_s = time.perf_counter() - started
        values = {k: v for k, v in settings.items() if k != "use_sim_time"}
        values |= {"bags": [str(bag)], "validation_bags": [str(other)], "output_dir": str(work / "sysid")}
        started = time.perf_counter()
        result = run_sysid(from_mapping(SysidConfig, values, "sysid"), log=print)["result"]
        wall_s = time.perf_counter() - started
        summary = json.loads((work / "sysid" / "sysid.json").read_text())
    report(args, truth, result, summary, recorded_s, wall_s)


def report(args, truth, result, summary, recorded_s, wall_s) -> None:
    rows = parameter_rows(summary, truth)
    errors = {part: result.errors[part] for part in ("held_out", "validation")}
    figures = {
        "robot": args.robot,
        "duration_s": args.duration,
        "record_s": recorded_s,
        "wall_s": wall_s,
        "iterations": result.iterations,
        "parameters": len(result.unknowns),
        "written": sum(row["why_nominal"] is None for row in rows),
        **{
            f"{part}_{which}_rad": errors[part][which]["position_rms_rad"]
            for part in errors
            for which in ("nominal", "identified", "all_fitted")
        },
        **{f"{part}_ratio": errors[part]["ratio"] for part in errors},
        "validation_per_joint": {
            w: errors["validation"][w]["position_rms_rad_per_joint"] for w in ("nominal", "identified")
        },
        "rows": rows,
    }
    print(
        f"\nsysid ({args.robot}) on a {args.duration:g} s excitation: {wall_s:.1f} s, "
        f"{result.iterations} iterations (recording: {recorded_s:.1f} s); robot.yaml takes "
        f"{figures['written']} of {len(rows)} parameters"
    )
    for part, what in (("held_out", "held out (same kind)"), ("validation", "another kind (faster)")):
        print(
            f"  {what}: {figures[f'{part}_nominal_rad']:.3g} rad nominal -> "
            f"{figures[f'{part}_identified_rad']:.3g} rad robot.yaml (x{figures[f'{part}_ratio']:.3g}; "
            f"every parameter as fitted: {figures[f'{part}_all_fitted_rad']:.3g} rad)"
        )
    print(
        "\n| parameter | true | nominal | first fit | robot.yaml | why nominal |\n|---|---|---|---|---|---|"
    )
    for row in rows:
        print(
            f"| {row['parameter']} | {row['true']:.4g} | {row['nominal']:.4g} | {row['first_fit']:.4g} "
            f"| {row['written']:.4g} | {row['why_nominal'] or ''} |"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
