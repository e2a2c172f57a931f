"""Single-world ``joint_states`` in realtime mode: achieved rate, arrival jitter, sim time vs wall time.

The simulator node runs as its own process (arm7, num_envs 1, mode realtime, control_dt 0.002 s,
so 500 Hz at real_time_factor 1). Here an rclpy node subscribes raw to ``joint_states`` with a
reliable QoS of depth 100 and records, for every message, its arrival time (time.perf_counter, at
the start of the callback) and its header stamp (sim time). After a warm-up, over the measured
window it reports:

* rate       messages per second of window, and the stamp gaps (steps whose message never came,
             or steps the simulator skipped after falling behind the wall clock);
* jitter     arrival interval minus the control period (2 ms): std, p50, p99, max, and how many
             intervals exceed twice the period;
* sim/wall   sim time elapsed over wall time elapsed between the first and last message, and how far
             sim time trails the wall clock at the end (growing lag means the node cannot keep up);
* cpu        CPU time used by the simulator process and by this process, per wall second.

Arrival times include this process's executor latency, so the jitter is an upper bound of the
publisher's own.

Run: python test/benchmarks/bench_realtime_joint_states.py [--duration 60] [--warmup 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cli import add_ros_arguments
from ros_processes import client_node, cpu_seconds, isolate_dds, start_simulator, stop_process

NS = 1_000_000_000


@dataclass
class Arrivals:
    """Arrival wall times (s) and header stamps (ns) of the messages in the measured window."""

    window_start: float = float("inf")
    window_end: float = float("inf")
    times: list[float] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    received: int = 0


# Processes ----------------------------------------------------------------------------------------


def make_recorder(record: Arrivals) -> Any:
    """The joint_states callback: arrival time first, then the stamp read from the bytes."""
    from sim_bridge_core.simulator.wire import decode_joint_state

    def on_state(data: bytes) -> None:
        arrival = time.perf_counter()
        record.received += 1
        if record.window_start <= arrival < record.window_end:
            record.times.append(arrival)
            record.stamps.append(decode_joint_state(data).stamp_ns)

    return on_state


def spin_until(executor: Any, proc: subprocess.Popen, log_path: Path, until: Any) -> None:
    """Spin until ``until()`` is true; fail if the simulator exits meanwhile."""
    while not until():
        if proc.poll() is not None:
            raise RuntimeError(f"simulator exited ({proc.returncode}):\n{log_path.read_text()}")
        executor.spin_once(timeout_sec=0.05)


def measure(args: argparse.Namespace, log_dir: Path) -> tuple[Arrivals, dict[str, float]]:
    """Start the simulator, record the window and return the arrivals and CPU use."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState

    parameters = {
        "model": args.model, "num_envs": 1, "mode": "realtime", "control_dt": args.control_dt,
        "real_time_factor": args.real_time_factor,
    }  # fmt: skip
    log_path = log_dir / "simulator.log"
    proc = start_simulator(parameters, log_path)
    record = Arrivals()
    try:
        with client_node("bench_realtime") as (node, executor):
            qos = QoSProfile(depth=args.depth, reliability=ReliabilityPolicy.RELIABLE)
            node.create_subscription(JointState, "joint_states", make_recorder(record), qos, raw=True)
            deadline = time.monotonic() + args.startup_timeout
            spin_until(executor, proc, log_path, lambda: record.received or time.monotonic() > deadline)
            if not record.received:
                raise TimeoutError(f"no joint_states within {args.startup_timeout} s")
            record.window_start = time.perf_counter() + args.warmup
            record.window_end = record.window_start + args.duration
            spin_until(executor, proc, log_path, lambda: time.perf_counter() >= record.window_start)
            cpu_start = (time.perf_counter(), cpu_seconds(proc.pid), cpu_seconds(os.getpid()))
            spin_until(executor, proc, log_path, lambda: time.perf_counter() >= record.window_end)
            cpu_end = (time.perf_counter(), cpu_seconds(proc.pid), cpu_seconds(os.getpid()))
    finally:
        stop_process(proc)
    wall = cpu_end[0] - cpu_start[0]
    cpu = {"sim_cpu": (cpu_end[1] - cpu_start[1]) / wall, "client_cpu": (cpu_end[2] - cpu_start[2]) / wall}
    return record, cpu


def summarize(record: Arrivals, args: argparse.Namespace) -> dict[str, float]:
    times, stamps = np.array(record.times), np.array(record.stamps, dtype=np.int64)
    if times.size < 2:
        raise RuntimeError(f"only {times.size} messages in the window")
    period_ns = round(args.control_dt * NS)
    wall_period = args.control_dt / args.real_time_factor
    jitter = np.diff(times) - wall_period
    sim_elapsed = (stamps[-1] - stamps[0]) / NS
    wall_elapsed = times[-1] - times[0]
    steps = np.diff(stamps) // period_ns
    return {
        "messages": float(times.size),
        "rate_hz": times.size / args.duration,
        "expected_hz": 1.0 / wall_period,
        "missing_steps": float(np.sum(steps[steps > 1] - 1)),
        "repeated_stamps": float(np.sum(steps <= 0)),
        "jitter_std_ms": float(np.std(jitter) * 1e3),
        "jitter_p50_ms": float(np.percentile(jitter, 50) * 1e3),
        "jitter_p99_ms": float(np.percentile(jitter, 99) * 1e3),
        "jitter_max_ms": float(np.max(jitter) * 1e3),
        "jitter_min_ms": float(np.min(jitter) * 1e3),
        "late_intervals": float(np.sum(jitter > wall_period)),
        "sim_wall_ratio": sim_elapsed / wall_elapsed,
        "final_lag_ms": (wall_elapsed * args.real_time_factor - sim_elapsed) * 1e3,
    }


# Report --------------------------------------------------------------------------------------------


def print_report(args: argparse.Namespace, figures: dict[str, float]) -> None:
    print(
        f"\n{args.model} x 1, realtime, control_dt {args.control_dt} s, real_time_factor "
        f"{args.real_time_factor}, {args.duration:g} s window after {args.warmup:g} s warm-up, "
        f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}"
    )
    rows = (
        ("messages", f"{figures['messages']:.0f}"),
        ("rate (msg/s)", f"{figures['rate_hz']:.2f} of {figures['expected_hz']:.0f}"),
        ("missing / repeated stamps", f"{figures['missing_steps']:.0f} / {figures['repeated_stamps']:.0f}"),
        ("jitter std (ms)", f"{figures['jitter_std_ms']:.3f}"),
        ("jitter p50 (ms)", f"{figures['jitter_p50_ms']:+.3f}"),
        ("jitter p99 (ms)", f"{figures['jitter_p99_ms']:+.3f}"),
        ("jitter max / min (ms)", f"{figures['jitter_max_ms']:+.3f} / {figures['jitter_min_ms']:+.3f}"),
        ("intervals > 2 periods", f"{figures['late_intervals']:.0f}"),
        ("sim time / wall time", f"{figures['sim_wall_ratio']:.5f}"),
        ("sim behind wall at end (ms)", f"{figures['final_lag_ms']:.1f}"),
        ("cpu: simulator / client", f"{figures['sim_cpu']:.0%} / {figures['client_cpu']:.0%}"),
    )
    for label, value in rows:
        print(f"{label:30} {value:>20}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="arm7")
    parser.add_argument("--control-dt", type=float, default=0.002)
    parser.add_argument("--real-time-factor", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=60.0, help="measured window, seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after the first message")
    parser.add_argument("--depth", type=int, default=100, help="subscription queue depth (reliable)")
    add_ros_arguments(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    isolate_dds(args.domain_id)
    with tempfile.TemporaryDirectory(prefix="bench_realtime_") as log_dir:
        record, cpu = measure(args, Path(log_dir))
    figures = summarize(record, args) | cpu
    print_report(args, figures)
    if args.json is not None:
        settings = {key: str(value) for key, value in vars(args).items()}
        args.json.write_text(json.dumps({"args": settings, "figures": figures}, indent=2))


if __name__ == "__main__":
    main()
