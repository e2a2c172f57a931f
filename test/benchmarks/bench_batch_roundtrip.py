"""Lockstep ``batch/joint_states`` -> ``batch/joint_trajectory`` round trip across two processes.

What is measured, one after the other (the machine has few cores, so nothing runs concurrently):

1. core     ``Simulator.step()`` in a loop without ROS, then the same plus the per-step encoding the
            node does (``batch_joint_states()`` + ``task_signals()``): env-steps/s and ms per step.
2. convert  in this process, what per-step Python message conversion would cost against the numpy
            wire codec: building a sensor_msgs/JointState (trajectory_msgs/JointTrajectory) object
            from the arrays + ``rclpy.serialization.serialize_message``, and
            ``deserialize_message`` + numpy, for the states the simulator sends and the command it
            reads (and the client's mirror image of both).
3. ros      the simulator node as its own process in mode lockstep; here an rclpy node subscribes raw
            to ``batch/joint_states``, decodes it with JointStateDecoder and answers every state at
            once with a raw JointTrajectoryEncoder message that echoes its stamp (home pose plus a
            little noise, the targets the core run uses). After a warm-up, states arriving in a fixed
            wall-time window are counted: env-steps/s = worlds x answered steps / window. Per step:
            cycle (state arrival to next state arrival), simulator side (answer sent to next state
            arrival: command transport, step, encode, state transport) and client side (state
            arrival to answer sent: decode, encode, publish), p50 and p99.

Run: python test/benchmarks/bench_batch_roundtrip.py [--num-envs 1024] [--warmup 3] [--duration 15]
     [--threads 0] [--subscribe-task] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cli import add_ros_arguments, world_parser
from ros_processes import client_node, isolate_dds, start_simulator, stop_process

NS = 1_000_000_000


@dataclass
class RoundTrip:
    """What the client saw: per answered state, when it arrived and when the answer left."""

    num_envs: int
    control_dt_ns: int
    window_start: float = 0.0
    window_end: float = float("inf")
    arrivals: list[float] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    repeats: int = 0  # states arriving again with a stamp already answered (a resend)
    gaps: int = 0  # stamps that skipped a control period


# Setup --------------------------------------------------------------------------------------------


def noisy_targets(model: str, num_envs: int, count: int = 8) -> list[np.ndarray]:
    """``count`` (N, J) target sets: home plus uniform noise of 0.2 rad, clamped to the limits."""
    from sim_bridge_core.models import load_robot

    robot = load_robot(model)
    rng = np.random.default_rng(0)
    shape = (num_envs, robot.num_joints)
    return [robot.clamp(robot.home + rng.uniform(-0.2, 0.2, shape)) for _ in range(count)]


# 1. Core -------------------------------------------------------------------------------------------


def timed_steps(step: Callable[[int], object], seconds: float) -> tuple[int, float]:
    """Call ``step(i)`` for about ``seconds`` (at least 3 calls); return calls and elapsed time."""
    step(0)  # first touch of buffers and threads
    start = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - start < seconds:
        step(calls)
        calls += 1
    return calls, time.perf_counter() - start


def core_contenders(args: argparse.Namespace, targets: list[np.ndarray]) -> dict[str, Callable[[int], None]]:
    """Simulator stepping without ROS: step only, step plus the node's per-step encoding, encoding only."""
    from sim_bridge_core.simulator.core import Simulator, SimulatorConfig

    config = SimulatorConfig(
        model=args.model, task=args.task, num_envs=args.num_envs, control_dt=args.control_dt,
        threads=args.threads, mode="lockstep",
    )  # fmt: skip
    sim = Simulator(config)

    def step(i: int) -> None:
        sim.command_all(targets[i % len(targets)])
        sim.step()

    def encode(_i: int) -> None:
        sim.batch_joint_states()
        sim.task_signals()

    def step_encode(i: int) -> None:
        step(i)
        encode(i)

    return {"step": step, "step_encode": step_encode, "encode": encode}


def bench_core(args: argparse.Namespace, targets: list[np.ndarray], label: str) -> dict[str, float]:
    """Median over rounds, the contenders alternating so that machine noise hits them alike."""
    contenders = core_contenders(args, targets)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.core_rounds):
        for name, fn in contenders.items():
            seconds = args.core_seconds / args.core_rounds / (4 if name == "encode" else 1)
            calls, elapsed = timed_steps(fn, seconds)
            rates[name].append(calls * args.num_envs / elapsed)
    figures = {}
    for name, values in rates.items():
        rate = float(np.median(values))
        figures[f"{label}_{name}_env_steps_per_s"] = rate
        figures[f"{label}_{name}_ms"] = 1e3 * args.num_envs / rate
    return figures


# 2. Message conversion -----------------------------------------------------------------------------


def per_call_ms(fn: Callable[[], object], seconds: float = 0.5) -> float:
    calls, elapsed = timed_steps(lambda _i: fn(), seconds)
    return 1e3 * elapsed / calls


def bench_conversion(args: argparse.Namespace, targets: list[np.ndarray]) -> dict[str, float]:
    """Per-message cost of rclpy message objects + (de)serialization against the wire codec."""
    from builtin_interfaces.msg import Duration, Time
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import JointState
    from sim_bridge_core.models import load_robot
    from sim_bridge_core.simulator.wire import (
        JointStateDecoder,
        JointStateEncoder,
        JointTrajectoryDecoder,
        JointTrajectoryEncoder,
    )
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    joints = load_robot(args.model).joint_names
    names = [f"env_{i}/{joint}" for i in range(args.num_envs) for joint in joints]
    q, qd, tau = targets[0], targets[1], targets[2]
    stamp = 123 * NS + 456

    def state_object() -> bytes:
        msg = JointState()
        msg.header.stamp = Time(sec=stamp // NS, nanosec=stamp % NS)
        msg.name = names
        msg.position, msg.velocity, msg.effort = q.ravel().tolist(), qd.ravel().tolist(), tau.ravel().tolist()
        return serialize_message(msg)

    def command_object() -> bytes:
        point = JointTrajectoryPoint(positions=q.ravel().tolist(), time_from_start=Duration())
        msg = JointTrajectory(joint_names=names, points=[point])
        msg.header.stamp = Time(sec=stamp // NS, nanosec=stamp % NS)
        return serialize_message(msg)

    state_bytes, command_bytes = state_object(), command_object()

    def state_from_object() -> np.ndarray:
        msg = deserialize_message(state_bytes, JointState)
        assert msg.name == names
        return np.asarray(msg.position)

    def command_from_object() -> np.ndarray:
        msg = deserialize_message(command_bytes, JointTrajectory)
        assert msg.joint_names == names
        return np.asarray(msg.points[0].positions)

    state_enc, state_dec = JointStateEncoder(names), JointStateDecoder(names)
    command_enc, command_dec = JointTrajectoryEncoder(names), JointTrajectoryDecoder(names)
    cases = {
        "state_encode": (state_object, lambda: state_enc.encode(stamp, q, qd, tau)),
        "state_decode": (state_from_object, lambda: state_dec.decode(state_bytes)),
        "command_encode": (command_object, lambda: command_enc.encode(stamp, q)),
        "command_decode": (command_from_object, lambda: command_dec.decode(command_bytes)),
    }
    figures = {"state_bytes": float(len(state_bytes)), "command_bytes": float(len(command_bytes))}
    for name, (objects, wire) in cases.items():
        figures[f"{name}_objects_ms"] = per_call_ms(objects)
        figures[f"{name}_wire_ms"] = per_call_ms(wire)
    return figures


# 3. ROS round trip ---------------------------------------------------------------------------------


def make_answerer(
    node: Any, record: RoundTrip, targets: list[np.ndarray], names: tuple[str, ...]
) -> Callable[[bytes], None]:
    """The batch/joint_states callback: decode, answer with the echoed stamp, record the times."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sim_bridge_core.simulator.wire import JointStateDecoder, JointTrajectoryEncoder
    from trajectory_msgs.msg import JointTrajectory

    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    publisher = node.create_publisher(JointTrajectory, "batch/joint_trajectory", qos)
    decoder, encoder = JointStateDecoder(names), JointTrajectoryEncoder(names)
    last = {"stamp": -1, "count": 0}

    def on_state(data: bytes) -> None:
        arrival = time.perf_counter()
        state = decoder.decode(data)
        if state.stamp_ns <= last["stamp"]:
            record.repeats += 1
        elif last["stamp"] >= 0 and state.stamp_ns - last["stamp"] != record.control_dt_ns:
            record.gaps += 1
        last["count"] += 1
        publisher.publish(encoder.encode(state.stamp_ns, targets[last["count"] % len(targets)]))
        sent = time.perf_counter()
        if state.stamp_ns > last["stamp"] and record.window_start <= arrival < record.window_end:
            record.arrivals.append(arrival)
            record.answered.append(sent)
            record.stamps.append(state.stamp_ns)
        last["stamp"] = max(last["stamp"], state.stamp_ns)

    return on_state


def first_state_names(node: Any, executor: Any, timeout: float) -> tuple[str, ...]:
    """Wait for the simulator's first (resent, unanswered) state and return its joint names."""
    from sensor_msgs.msg import JointState
    from sim_bridge_core.simulator.wire import decode_joint_state

    got: list[bytes] = []
    sub = node.create_subscription(JointState, "batch/joint_states", got.append, 10, raw=True)
    deadline = time.monotonic() + timeout
    while not got:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no batch/joint_states within {timeout} s")
        executor.spin_once(timeout_sec=0.1)
    node.destroy_subscription(sub)
    return decode_joint_state(got[0]).names


def bench_ros(args: argparse.Namespace, targets: list[np.ndarray], log_dir: Path) -> dict[str, float]:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float32MultiArray

    parameters = {
        "model": args.model, "task": args.task, "num_envs": args.num_envs, "mode": "lockstep",
        "control_dt": args.control_dt, "threads": args.threads,
    }  # fmt: skip
    log_path = log_dir / "simulator.log"
    proc = start_simulator(parameters, log_path)
    try:
        with client_node("bench_roundtrip") as (node, executor):
            names = first_state_names(node, executor, args.startup_timeout)
            record = RoundTrip(args.num_envs, round(args.control_dt * NS))
            qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
            on_state = make_answerer(node, record, targets, names)
            node.create_subscription(JointState, "batch/joint_states", on_state, qos, raw=True)
            if args.subscribe_task:
                node.create_subscription(Float32MultiArray, "batch/task", lambda _data: None, qos, raw=True)
            record.window_start = time.perf_counter() + args.warmup
            record.window_end = record.window_start + args.duration
            while time.perf_counter() < record.window_end:
                if proc.poll() is not None:
                    raise RuntimeError(f"simulator exited ({proc.returncode}):\n{log_path.read_text()}")
                executor.spin_once(timeout_sec=0.1)
            return summarize_round_trip(record, args.duration)
    finally:
        stop_process(proc)


def percentiles_ms(values: np.ndarray, prefix: str) -> dict[str, float]:
    if values.size == 0:
        return {f"{prefix}_p50_ms": float("nan"), f"{prefix}_p99_ms": float("nan")}
    p50, p99 = np.percentile(values, [50, 99]) * 1e3
    return {f"{prefix}_p50_ms": float(p50), f"{prefix}_p99_ms": float(p99)}


def summarize_round_trip(record: RoundTrip, window: float) -> dict[str, float]:
    arrivals, answered = np.array(record.arrivals), np.array(record.answered)
    steps = len(record.arrivals)
    figures = {
        "ros_steps": float(steps),
        "ros_env_steps_per_s": steps * record.num_envs / window,
        "ros_steps_per_s": steps / window,
        "ros_repeats": float(record.repeats),
        "ros_gaps": float(record.gaps),
    }
    consecutive = np.diff(np.array(record.stamps)) == record.control_dt_ns
    figures |= percentiles_ms(np.diff(arrivals)[consecutive], "ros_cycle")
    figures |= percentiles_ms((arrivals[1:] - answered[:-1])[consecutive], "ros_sim_side")
    figures |= percentiles_ms(answered - arrivals, "ros_client_side")
    return figures


# Report --------------------------------------------------------------------------------------------


def combine_core(figures: dict[str, float]) -> None:
    """``core_*``: the mean of the runs before and after the ROS run (the machine's speed drifts)."""
    for name in ("step", "step_encode", "encode"):
        rate = (figures[f"before_{name}_env_steps_per_s"] + figures[f"after_{name}_env_steps_per_s"]) / 2
        figures[f"core_{name}_env_steps_per_s"] = rate
        figures[f"core_{name}_ms"] = (figures[f"before_{name}_ms"] + figures[f"after_{name}_ms"]) / 2
    figures["ros_vs_core_step"] = figures["ros_env_steps_per_s"] / figures["core_step_env_steps_per_s"]
    figures["ros_vs_core_step_encode"] = (
        figures["ros_env_steps_per_s"] / figures["core_step_encode_env_steps_per_s"]
    )


def print_rates(args: argparse.Namespace, figures: dict[str, float]) -> None:
    print(f"{'':36} {'env-steps/s':>12} {'ms/step':>8} {'before':>8} {'after':>8}")
    for name, label in (
        ("step", "core: Simulator.step"),
        ("step_encode", "core: step + encode (states, task)"),
        ("encode", "core: encode only"),
    ):
        rate, ms = figures[f"core_{name}_env_steps_per_s"], figures[f"core_{name}_ms"]
        before, after = figures[f"before_{name}_ms"], figures[f"after_{name}_ms"]
        shown = "-" if name == "encode" else f"{rate:.0f}"
        print(f"{label:36} {shown:>12} {ms:8.2f} {before:8.2f} {after:8.2f}")
    ros = figures["ros_env_steps_per_s"]
    print(f"{'ROS lockstep round trip':36} {ros:12.0f} {1e3 * args.num_envs / ros:8.2f}")
    print(f"ROS / core step         {figures['ros_vs_core_step']:7.1%}")
    print(f"ROS / core step+encode  {figures['ros_vs_core_step_encode']:7.1%}")


def print_round_trip(args: argparse.Namespace, figures: dict[str, float]) -> None:
    print(
        f"\nROS round trip per step ({figures['ros_steps']:.0f} steps in {args.duration:g} s; "
        f"{figures['ros_repeats']:.0f} resent, {figures['ros_gaps']:.0f} gaps)"
    )
    print(f"{'':44} {'p50 ms':>8} {'p99 ms':>8}")
    for key, label in (
        ("ros_cycle", "cycle (state to next state)"),
        ("ros_sim_side", "simulator side (answer sent to next state)"),
        ("ros_client_side", "client side (decode, encode, publish)"),
    ):
        print(f"{label:44} {figures[key + '_p50_ms']:8.2f} {figures[key + '_p99_ms']:8.2f}")


def print_conversion(figures: dict[str, float]) -> None:
    print(
        f"\nPer-message conversion (JointState {figures['state_bytes'] / 1e3:.0f} kB, "
        f"JointTrajectory {figures['command_bytes'] / 1e3:.0f} kB)"
    )
    print(f"{'':42} {'objects ms':>10} {'wire ms':>8} {'ratio':>6}")
    for key, label in (
        ("state_encode", "JointState: arrays -> bytes (sim)"),
        ("command_decode", "JointTrajectory: bytes -> array (sim)"),
        ("state_decode", "JointState: bytes -> arrays (client)"),
        ("command_encode", "JointTrajectory: array -> bytes (client)"),
    ):
        objects, wire = figures[f"{key}_objects_ms"], figures[f"{key}_wire_ms"]
        print(f"{label:42} {objects:10.2f} {wire:8.3f} {objects / wire:5.0f}x")
    for side, keys in (
        ("simulator", ("state_encode", "command_decode")),
        ("client", ("state_decode", "command_encode")),
    ):
        objects = sum(figures[f"{key}_objects_ms"] for key in keys)
        wire = sum(figures[f"{key}_wire_ms"] for key in keys)
        print(
            f"{side} side per step: objects {objects:.2f} ms, wire {wire:.3f} ms; objects = "
            f"{objects / figures['core_step_ms']:.0%} of a core step ({figures['core_step_ms']:.2f} ms)"
        )


def print_report(args: argparse.Namespace, figures: dict[str, float]) -> None:
    print(
        f"\n{args.model} x {args.num_envs} worlds, task {args.task}, control_dt {args.control_dt} s, "
        f"threads {args.threads or os.cpu_count()}, ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}"
    )
    print_rates(args, figures)
    print_round_trip(args, figures)
    print_conversion(figures)


def parse_args() -> argparse.Namespace:
    parser = world_parser(__doc__, num_envs=1024)
    parser.add_argument("--threads", type=int, default=0, help="cpu backend threads (0 = one per core)")
    parser.add_argument("--warmup", type=float, default=3.0, help="ROS warm-up, seconds")
    parser.add_argument("--duration", type=float, default=15.0, help="ROS measured window, seconds")
    parser.add_argument(
        "--core-seconds", type=float, default=6.0, help="core run length, before and after the ROS run"
    )
    parser.add_argument("--core-rounds", type=int, default=3, help="alternations within a core run")
    add_ros_arguments(parser)
    parser.add_argument("--subscribe-task", action="store_true", help="also subscribe to batch/task")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    isolate_dds(args.domain_id)
    targets = noisy_targets(args.model, args.num_envs)
    print("core run (before)...", flush=True)
    figures = bench_core(args, targets, "before")
    print("message conversion...", flush=True)
    figures |= bench_conversion(args, targets)
    print("ROS round trip...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_roundtrip_") as log_dir:
        figures |= bench_ros(args, targets, Path(log_dir))
    print("core run (after)...", flush=True)
    figures |= bench_core(args, targets, "after")
    combine_core(figures)
    print_report(args, figures)
    if args.json is not None:
        settings = {key: str(value) for key, value in vars(args).items()}
        args.json.write_text(json.dumps({"args": settings, "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
