"""Camera rendering: frames per second, and what publishing a camera costs the simulation.

1. render   ``WorldRenderer.render`` of arm7 in this process from an overhead camera, the arm at a
            new pose each frame: frames/s at 320x240 and 640x480, RGB and RGB+depth.
2. sim      the simulator node as its own process (arm7, one world), without a camera and with one
            camera at 320x240 RGB publishing at 30 Hz: in realtime mode (real_time_factor 1) the
            achieved real-time factor (sim time over wall time, read from /clock), and in fast mode
            the sim seconds stepped per wall second; with the camera, the frames/s that arrived on
            ``<camera>/image_raw``.

Rendering uses ``MUJOCO_GL`` (EGL by default without a display).

Run: python test/benchmarks/bench_cameras.py [--frames 60] [--duration 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from cli import add_ros_arguments
from ros_processes import client_node, isolate_dds, node_executable, stop_process

CAMERA = {"name": "overhead", "body": "world", "pos": [0.0, 0.0, 2.5], "fovy": 60.0, "rate_hz": 30.0}


def render_rates(frames: int) -> dict[str, float]:
    """Frames/s of one world rendered offscreen, per size and with or without depth."""
    from sim_bridge_core.models import load_robot
    from sim_bridge_core.rendering import WorldRenderer, parse_cameras

    robot = load_robot("arm7", cameras=parse_cameras([CAMERA]))
    rng = np.random.default_rng(0)
    rates = {}
    for width, height in ((320, 240), (640, 480)):
        renderer = WorldRenderer(robot.model, width, height)
        for depth in (False, True):
            poses = robot.home_qpos + rng.uniform(-0.5, 0.5, (frames + 3, robot.model.nq))
            for qpos in poses[:3]:  # warm-up
                renderer.render(qpos, "overhead", depth=depth)
            start = time.perf_counter()
            for qpos in poses[3:]:
                renderer.render(qpos, "overhead", depth=depth)
            rates[f"{width}x{height} {'rgb+depth' if depth else 'rgb'}"] = frames / (
                time.perf_counter() - start
            )
        renderer.close()
    return rates


def simulate(mode: str, camera: bool, args: argparse.Namespace, log_dir: Path) -> dict[str, float]:
    """Sim seconds per wall second (and camera frames/s) of the simulator node over the window."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    params = {"model": "arm7", "mode": mode, "control_dt": 0.002, "real_time_factor": 1.0}
    if camera:
        params["cameras"] = yaml.safe_dump([dict(CAMERA, width=320, height=240)])
    params_file = log_dir / f"{mode}-{camera}.yaml"
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    log_path = log_dir / f"{mode}-{camera}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [node_executable("sim_bridge_sim", "simulator"), "--ros-args", "--params-file", str(params_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ.copy(),
        )
    clock: list[tuple[float, int]] = []
    frames: list[float] = []
    try:
        with client_node("bench_cameras") as (node, executor):
            node.create_subscription(
                Clock,
                "/clock",
                lambda m: clock.append((time.perf_counter(), m.clock.sec * 10**9 + m.clock.nanosec)),
                QoSProfile(depth=100),
            )
            node.create_subscription(
                Image,
                "overhead/image_raw",
                lambda m: frames.append(time.perf_counter()),
                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
            )
            deadline = time.perf_counter() + args.startup_timeout
            while not clock or (camera and not frames):
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"simulator did not start:\n{log_path.read_text()}")
                executor.spin_once(timeout_sec=0.05)
            start = time.perf_counter() + args.warmup
            end = start + args.duration
            while time.perf_counter() < end:
                executor.spin_once(timeout_sec=0.05)
    finally:
        stop_process(proc)
    window = [(wall, sim) for wall, sim in clock if start <= wall < end]
    (wall0, sim0), (wall1, sim1) = window[0], window[-1]
    result = {"sim_per_wall": (sim1 - sim0) / 1e9 / (wall1 - wall0)}
    if camera:
        result["frames_per_s"] = sum(start <= t < end for t in frames) / args.duration
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    add_ros_arguments(parser)
    args = parser.parse_args()
    figures: dict[str, Any] = {"render_fps": render_rates(args.frames)}
    for name, fps in figures["render_fps"].items():
        print(f"render {name:18s} {fps:7.1f} frames/s ({1000 / fps:6.1f} ms/frame)")
    isolate_dds(args.domain_id)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("realtime", "fast"):
            for camera in (False, True):
                result = simulate(mode, camera, args, Path(tmp))
                figures[f"{mode} {'1 camera 30 Hz' if camera else 'no camera'}"] = result
                shown = f", camera {result['frames_per_s']:.1f} frames/s" if camera else ""
                label = "real-time factor" if mode == "realtime" else "sim s per wall s"
                print(
                    f"{mode:8s} {'1 camera @30 Hz' if camera else 'no camera':16s} "
                    f"{label} {result['sim_per_wall']:.3f}{shown}"
                )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
