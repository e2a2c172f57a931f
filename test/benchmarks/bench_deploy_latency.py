"""Deploy latency, separate processes: a ``joint_states`` publish -> the policy's ``joint_trajectory`` for it.

The policy node runs as its own process (``install/sim_bridge_policy/lib/sim_bridge_policy/policy``,
mode deploy) on an arm7 reach checkpoint written here from an untrained ActorCritic of the default
size (untrained weights cost exactly what trained ones do to run), trained for the node's control
period; ``--runtime onnx`` deploys its ``policy.onnx`` export on onnxruntime instead of torch.
This process plays the robot:
an rclpy node publishes ``sensor_msgs/JointState`` for arm7's seven joints (a slow sine around the
home pose, with velocities and efforts, header stamp = now), sends one goal, and subscribes raw to
``joint_trajectory``.

Matching a command to the state it answers: the node runs with a velocity limit of 1e-9 rad/s, so
its safety filter makes every command equal, within 1e-11 rad, to the measured positions it answers
(the network still runs in full on every cycle; only the final clip changes), and every state's
positions are unique (1e-9 rad apart at least).

How often the node answers: on a JointState it commands when its control schedule is due (once
per period), from that (freshest) state. So with states faster than the control rate (a robot's
joint_state_broadcaster at 500 Hz, the policy at 250 Hz: the defaults) one state in
rate/control_rate is answered.

Latency = time.perf_counter() just before ``publish`` of the state -> at the start of the command's
callback, both in this process, for each answered state. It spans two DDS hops, both processes'
executors, message conversion and the node's work, so it bounds the node's internal latency from
above. Variants, each timing ``--cycles`` commands after ``--warmup``:

* paced     states at ``--rate-hz`` on a fixed schedule, as a joint_state_broadcaster publishes;
* pingpong  the next state goes out once the last one's command is in, but no sooner than 1.1
            control periods after the last state (the node answers at most one state per period),
            so one message is in flight at a time.

``--record both`` (the default) runs every variant twice in one run, with a fresh node each time:
without recording and with ``record:=true`` (the node's own bag of joint_states, commands, /goal
and /clock, written by its writer thread); ``on`` or ``off`` runs one of them.

For comparison (after the node is stopped), the same work timed in this process: ``core`` is
``Deployment.on_joint_state`` + ``tick`` (what the node calls), ``node work`` adds what the
callback does around it (JointState bytes decoded, the command encoded to bytes); executor
wake-up and DDS are what remains of the end-to-end figure.

Run: python test/benchmarks/bench_deploy_latency.py [--cycles 10000] [--rate-hz 500] [--control-rate-hz 250]
     [--mode both|paced|pingpong] [--record both|on|off] [--runtime torch|onnx] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cli import add_ros_arguments
from ros_processes import cpu_seconds, isolate_dds, start_node, stop_process

MODEL, TASK = "arm7", "reach"
GOAL = (0.5, 0.1, 0.4)
AMPLITUDE, FREQUENCY_HZ = 0.3, 0.2  # the state trajectory: home + 0.3 rad sine at 0.2 Hz, phase per joint


# Setup ---------------------------------------------------------------------------------------------


# What the policy node logs at shutdown in deploy mode.
NODE_LATENCY = re.compile(r"deploy latency \(joint_states callback -> command published\): (.*)")
MATCH_TOLERANCE = 1e-10  # a command is within this of the state it answers (see the docstring)


def write_untrained_policy(directory: Path, control_rate_hz: float, runtime: str) -> Path:
    """An arm7 reach checkpoint with freshly initialized weights (default network size) trained,
    as far as its contract says, at ``control_rate_hz``; or its ONNX export."""
    from sim_bridge_core.deploy.contract import PolicyContract, policy_metadata
    from sim_bridge_core.envs.batched import BatchedEnv
    from sim_bridge_core.learning import (
        ActorCritic,
        PpoConfig,
        export_policy,
        save_checkpoint,
    )
    from sim_bridge_core.learning.checkpoint import load_checkpoint
    from sim_bridge_core.models import load_robot
    from sim_bridge_core.sim.backends import make_backend
    from sim_bridge_core.tasks import make_task

    robot = load_robot(MODEL)
    backend = make_backend("cpu", robot, 1, 1.0 / control_rate_hz)
    env = BatchedEnv(backend, make_task(TASK, robot), 5.0)
    config = PpoConfig()
    model = ActorCritic(
        env.task.observation_size,
        robot.num_joints,
        config.actor_hidden,
        config.critic_hidden,
        config.init_log_std,
    )
    checkpoint = save_checkpoint(directory / "checkpoint.pt", model, config, policy_metadata(env))
    if runtime == "torch":
        return checkpoint
    return export_policy(model, directory, PolicyContract.of_checkpoint(load_checkpoint(checkpoint)))["onnx"]


def node_parameters(args: argparse.Namespace, checkpoint: Path) -> dict[str, Any]:
    return {
        "mode": "deploy",
        "checkpoint": str(checkpoint),
        "control_rate_hz": args.control_rate_hz,
        "velocity_limits": [1e-9],  # command == the measured positions it answers (see the docstring)
        "state_timeout_s": 0.1,
        "start_enabled": True,  # no operator to call ~/enable
        "home_ramp_s": 0.0,  # the states start where the policy takes over: time the policy alone
    }


def busy_cpu_seconds() -> float:
    """CPU time all processes on the machine have used (user, system, irq, steal), from /proc/stat."""
    try:
        ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class States:
    """The robot's states: unique positions per cycle, in the model's joint order."""

    def __init__(self) -> None:
        from sim_bridge_core.models import load_robot

        robot = load_robot(MODEL)
        self.names = list(robot.joint_names)
        self.home = np.asarray(robot.home, float)
        self.phase = np.arange(robot.num_joints, dtype=float)
        lower, upper = np.asarray(robot.lower), np.asarray(robot.upper)
        assert np.all(self.home - AMPLITUDE > lower) and np.all(self.home + AMPLITUDE < upper)

    def at(self, cycle: int, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        angle = 2 * math.pi * FREQUENCY_HZ * t + self.phase
        position = self.home + AMPLITUDE * np.sin(angle)
        position[0] += cycle * 1e-9  # unique per cycle even where the sine repeats
        velocity = AMPLITUDE * 2 * math.pi * FREQUENCY_HZ * np.cos(angle)
        effort = -10.0 * (position - self.home)
        return position, velocity, effort


# Measurement --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One variant: send and receive times (perf_counter s) per cycle, NaN where none."""

    name: str
    send: np.ndarray
    receive: np.ndarray
    positions: dict[int, np.ndarray] = field(default_factory=dict)  # sent positions by cycle
    answered: int = 0  # states with a command
    repeats: int = 0  # commands for a state already answered (watchdog)
    unknown: int = 0  # commands matching no state sent in this run
    wall_s: float = 0.0
    node_cpu: float = float("nan")
    client_cpu: float = float("nan")
    other_cpu: float = float("nan")  # every other process on the machine (CPUs' worth)
    last: int = -1  # the last cycle sent

    def match(self, command: np.ndarray) -> int | None:
        """The recent cycle whose state this command answers (the node answers recent states)."""
        for cycle in range(self.last, max(self.last - 256, -1), -1):
            sent = self.positions.get(cycle)
            if sent is not None and np.abs(sent - command).max() < MATCH_TOLERANCE:
                return cycle
        return None


class Client:
    """The robot side: JointState publisher, goal publisher, raw joint_trajectory subscriber."""

    def __init__(self, names: list[str]) -> None:
        import rclpy
        from geometry_msgs.msg import PointStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from sim_bridge_core.simulator.wire import JointStateEncoder, JointTrajectoryDecoder
        from trajectory_msgs.msg import JointTrajectory

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"bench_deploy_latency_{os.getpid()}", context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.states = self.node.create_publisher(JointState, "joint_states", reliable)
        self.goals = self.node.create_publisher(PointStamped, "goal", reliable)
        self.commands = self.node.create_subscription(
            JointTrajectory,
            "joint_trajectory",
            self._on_command,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
            raw=True,
        )
        self.encoder = JointStateEncoder(names)
        self.decoder = JointTrajectoryDecoder(names)
        self.run: Run | None = None
        self.received = 0
        self.answered = threading.Event()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_command(self, data: bytes) -> None:
        now = time.perf_counter()
        self.received += 1
        run = self.run
        if run is None:
            return
        index = run.match(self.decoder.decode(data).points[0].positions)
        if index is None:
            run.unknown += 1
        elif math.isnan(run.receive[index]):
            run.receive[index] = now
            run.answered += 1
            self.answered.set()
        else:
            run.repeats += 1

    def send_state(self, run: Run, cycle: int, position: np.ndarray, velocity, effort) -> None:
        data = self.encoder.encode(time.time_ns(), position, velocity, effort)
        run.positions[cycle] = position
        run.last = cycle
        run.send[cycle] = time.perf_counter()
        self.states.publish(data)

    def send_goal(self) -> None:
        from geometry_msgs.msg import PointStamped

        goal = PointStamped()
        goal.header.stamp = self.node.get_clock().now().to_msg()
        goal.point.x, goal.point.y, goal.point.z = GOAL
        self.goals.publish(goal)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()


def check_alive(proc: subprocess.Popen, log_path: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"policy node exited ({proc.returncode}):\n{log_path.read_text()}")


def wait_for_commands(client: Client, states: States, proc: subprocess.Popen, log_path: Path, timeout: float):
    """Discovery, then the goal, then states until commands flow."""
    deadline = time.monotonic() + timeout
    while not (
        client.states.get_subscription_count()
        and client.goals.get_subscription_count()
        and client.commands.get_publisher_count()
    ):
        check_alive(proc, log_path)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the policy node was not discovered within {timeout} s:\n{log_path.read_text()}"
            )
        time.sleep(0.05)
    probe = Run("probe", np.full(1 << 16, np.nan), np.full(1 << 16, np.nan))
    client.run, cycle, last_goal = probe, 0, -math.inf
    client.received = 0  # counts this node's commands (the client outlives a node)
    while client.received == 0:
        check_alive(proc, log_path)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no joint_trajectory within {timeout} s:\n{log_path.read_text()}")
        if time.monotonic() - last_goal > 0.5:
            client.send_goal()
            last_goal = time.monotonic()
        client.send_state(probe, cycle % probe.send.size, *states.at(cycle, time.perf_counter()))
        cycle += 1
        time.sleep(0.01)
    time.sleep(0.2)
    client.run = None


def measure(
    client: Client,
    states: States,
    proc: subprocess.Popen,
    log_path: Path,
    name: str,
    args: argparse.Namespace,
) -> Run:
    """Send states until ``warmup + cycles`` of them have been answered (paced) or one by one (pingpong)."""
    total = args.warmup + args.cycles
    states_per_command = math.ceil(args.rate_hz / args.control_rate_hz) if name == "paced" else 1
    capacity = total * (states_per_command + 1) + 1000
    run = Run(name, np.full(capacity, np.nan), np.full(capacity, np.nan))
    client.run = run
    period = 1.0 / args.rate_hz
    min_gap = 1.1 / args.control_rate_hz  # the node answers at most one state per control period
    cpu_start = (cpu_seconds(proc.pid), cpu_seconds(os.getpid()), busy_cpu_seconds())
    start = time.perf_counter()
    cycle = 0
    while run.answered < total and cycle < capacity and (name == "paced" or cycle < total):
        if cycle % 500 == 0:
            check_alive(proc, log_path)
        if name == "paced":
            due = start + cycle * period
        elif cycle:
            client.answered.wait(timeout=args.answer_timeout)  # no answer: NaN receive time, counted
            due = run.send[cycle - 1] + min_gap
        else:
            due = start
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        client.answered.clear()
        client.send_state(run, cycle, *states.at(cycle, time.perf_counter() - start))
        cycle += 1
    time.sleep(max(0.5, 10 * period))  # stragglers
    run.wall_s = time.perf_counter() - start
    client.run = None
    run.node_cpu = (cpu_seconds(proc.pid) - cpu_start[0]) / run.wall_s
    run.client_cpu = (cpu_seconds(os.getpid()) - cpu_start[1]) / run.wall_s
    run.other_cpu = (busy_cpu_seconds() - cpu_start[2]) / run.wall_s - run.node_cpu - run.client_cpu
    return run


def measure_in_process(policy: Path, states: States, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The node's work without executor and DDS, timed here on the same states (seconds per cycle)."""
    from sim_bridge_core.deploy.policy import PolicyConfig, load_deployment
    from sim_bridge_core.simulator.wire import JointStateDecoder, JointStateEncoder, JointTrajectoryEncoder

    deployment = load_deployment(PolicyConfig(**node_parameters(args, policy))).deployment
    deployment.on_goal(GOAL, 0.0)  # a goal does not expire
    names = list(deployment.robot.joint_names)
    encoder, decoder = JointStateEncoder(states.names), JointStateDecoder(names)
    command_encoder = JointTrajectoryEncoder(names)
    period_ns = round(1e9 / args.control_rate_hz)
    total = args.warmup + args.cycles
    core, node = np.empty(total), np.empty(total)
    for cycle in range(total):
        position, velocity, effort = states.at(cycle, cycle / args.rate_hz)
        stamp_s = (cycle + 1) / args.control_rate_hz  # one state per control period: each is answered
        data = encoder.encode(round(stamp_s * 1e9), position, velocity, effort)
        t0 = time.perf_counter()
        deployment.on_joint_state(stamp_s, stamp_s, names, position, velocity)
        command, reason = deployment.tick(stamp_s)
        t1 = time.perf_counter()
        assert command is not None, reason
        core[cycle] = t1 - t0

        stamp_s += 0.5 / args.control_rate_hz  # the same state again, half a period later: not due
        t0 = time.perf_counter()
        state = decoder.decode(data)
        deployment.on_joint_state(stamp_s, 0.0, state.names, state.position, state.velocity)
        command, _ = deployment.tick(stamp_s)
        command_encoder.encode(0, command.positions, period_ns)
        node[cycle] = time.perf_counter() - t0
        assert np.abs(command.positions - position).max() < MATCH_TOLERANCE, "command != measured positions"
    return {"core": core[args.warmup :], "node work": node[args.warmup :]}


# Report --------------------------------------------------------------------------------------------


def latency_figures(values_s: np.ndarray) -> dict[str, float]:
    ms = values_s * 1e3
    if ms.size == 0:
        return {key: float("nan") for key in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms")}
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "p999_ms": float(np.percentile(ms, 99.9)),
        "max_ms": float(np.max(ms)),
        "mean_ms": float(np.mean(ms)),
    }


def summarize(run: Run, args: argparse.Namespace) -> dict[str, float]:
    """Latency of the answered states after the first ``warmup`` answers, and the counts."""
    sent = int(np.count_nonzero(~np.isnan(run.send)))
    answered = np.flatnonzero(~np.isnan(run.receive))
    measured = answered[args.warmup : args.warmup + args.cycles]
    figures = latency_figures(run.receive[measured] - run.send[measured])
    span = run.send[measured[-1]] - run.send[measured[0]] if measured.size > 1 else float("nan")
    figures.update(
        measured=float(measured.size),
        states=float(sent),
        answered=float(answered.size),
        repeats=float(run.repeats),
        unknown=float(run.unknown),
        commands_per_s=float((measured.size - 1) / span),
        node_cpu=run.node_cpu,
        client_cpu=run.client_cpu,
        other_cpu=run.other_cpu,
    )
    return figures


def print_report(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> None:
    print(
        f"\n{MODEL} {TASK}, untrained ActorCritic (default size) on {args.runtime}, "
        "policy node in its own process, "
        f"control_rate_hz {args.control_rate_hz:g}, states {args.rate_hz:g} Hz (paced), "
        f"{args.cycles} commands timed after {args.warmup} warm-up, "
        f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )
    header = f"{'':38}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>8}{'max':>8}{'mean':>8}  (ms)"
    print(header)
    labels = {
        "paced": "state publish -> command (paced)",
        "pingpong": "state publish -> command (ping-pong)",
        "paced, recording": "  the same, recording (paced)",
        "pingpong, recording": "  the same, recording (ping-pong)",
        "core": "in-process: core",
        "node work": "in-process: node work",
    }
    for name, figures in results.items():
        row = "".join(
            f"{figures[key]:8.3f}" for key in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms")
        )
        print(f"{labels.get(name, name):38}{row}")
    for name in ("paced", "pingpong", "paced, recording", "pingpong, recording"):
        if name in results:
            f = results[name]
            print(
                f"{name}: {f['measured']:.0f} commands timed ({f['commands_per_s']:.1f}/s); "
                f"{f['states']:.0f} states sent, {f['answered']:.0f} answered, "
                f"{f['repeats']:.0f} watchdog repeats, {f['unknown']:.0f} unmatched; "
                f"cpu node {f['node_cpu']:.0%}, client {f['client_cpu']:.0%}, "
                f"other processes {max(f['other_cpu'], 0.0):.0%}"
            )
    print("target: p99 <= 2 ms on CPU (end to end above; it includes two DDS hops and this process)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=10_000, help="commands timed per variant")
    parser.add_argument("--warmup", type=int, default=500, help="commands before the timed ones")
    parser.add_argument("--rate-hz", type=float, default=500.0, help="paced state rate")
    parser.add_argument(
        "--control-rate-hz",
        type=float,
        default=None,
        help="the node's control_rate_hz; default --rate-hz / 2",
    )
    parser.add_argument("--mode", choices=("both", "paced", "pingpong"), default="both")
    parser.add_argument(
        "--record", choices=("both", "on", "off"), default="both", help="the node's record:=true, or both"
    )
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch", help="the node's runtime")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="deploy this instead of an untrained one"
    )
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process comparison")
    parser.add_argument(
        "--answer-timeout", type=float, default=0.5, help="ping-pong: give up on a state after"
    )
    add_ros_arguments(parser)
    args = parser.parse_args()
    if args.control_rate_hz is None:
        args.control_rate_hz = args.rate_hz / 2
    if args.cycles < 2 or args.warmup < 0 or args.rate_hz <= 0 or not 0.1 <= args.control_rate_hz <= 5000:
        parser.error("--cycles >= 2, --warmup >= 0, --rate-hz > 0, --control-rate-hz in [0.1, 5000]")
    return args


def main() -> None:
    args = parse_args()
    isolate_dds(args.domain_id)
    states = States()
    results: dict[str, dict[str, float]] = {}
    in_node: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench_deploy_latency_") as tmp:
        checkpoint = args.checkpoint or write_untrained_policy(Path(tmp), args.control_rate_hz, args.runtime)
        client = Client(states.names)
        try:
            for record in (False, True):
                if args.record != "both" and record != (args.record == "on"):
                    continue
                suffix = ", recording" if record else ""
                log_path = Path(tmp, f"policy{suffix}.log")
                parameters = node_parameters(args, checkpoint)
                if record:
                    parameters.update(record=True, output_dir=str(Path(tmp, "run")))
                proc = start_node("sim_bridge_policy", "policy", parameters, log_path)
                try:
                    wait_for_commands(client, states, proc, log_path, args.startup_timeout)
                    for name in ("paced", "pingpong"):
                        if args.mode in (name, "both"):
                            run = measure(client, states, proc, log_path, name, args)
                            results[name + suffix] = summarize(run, args)
                finally:
                    stop_process(proc)
                found = NODE_LATENCY.search(log_path.read_text())
                if found:
                    in_node["recording" if record else "not recording"] = found.group(1)
        finally:
            client.close()
        if not args.no_in_process:
            for name, values in measure_in_process(checkpoint, states, args).items():
                results[name] = latency_figures(values)
    print_report(args, results)
    for setting, figures in in_node.items():  # the node's own measurement, every state-triggered command
        print(f"in the node ({setting}), joint_states callback -> command published: {figures}")
    if args.json is not None:
        settings = {key: str(value) for key, value in vars(args).items()}
        args.json.write_text(json.dumps({"args": settings, "figures": results}, indent=2))


if __name__ == "__main__":
    main()
