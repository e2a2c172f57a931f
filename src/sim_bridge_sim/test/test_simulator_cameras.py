"""Camera topics of the simulator node over real DDS, rendered offscreen with EGL."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Duration
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import CameraInfo, Image, JointState
from sim_bridge_core.models import load_robot
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

ARM = load_robot("arm7")
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
HEIGHT = 2.5  # the overhead camera above the floor, metres
OVERHEAD = {
    "name": "overhead",
    "body": "world",
    "pos": [0.0, 0.0, HEIGHT],  # MuJoCo cameras look along -z: straight down
    "fovy": 60.0,
    "width": 64,
    "height": 48,
    "depth": True,
    "rate_hz": 10.0,
}


def _params(tmp_path: Path, cameras: list[dict]) -> str:
    """A parameters file carrying ``cameras`` as the YAML text the simulator takes."""
    path = tmp_path / "cameras.yaml"
    text = yaml.safe_dump(cameras)
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"cameras": text}}}))
    return str(path)


def _pixels(message: Image) -> np.ndarray:
    dtype = np.float32 if message.encoding == "32FC1" else np.uint8
    return np.frombuffer(bytes(message.data), dtype=dtype).reshape(message.height, message.width, -1)


def _stamp(message) -> int:
    return message.header.stamp.sec * 10**9 + message.header.stamp.nanosec


@pytest.fixture(autouse=True)
def _egl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")  # the nodes a test starts render with EGL


def _move(ros_client, prefix: str = "") -> None:
    """Send the arm of world ``prefix`` away from home and wait until it is there."""
    publisher = ros_client.node.create_publisher(JointTrajectory, f"{prefix}joint_trajectory", RELIABLE)
    states = ros_client.collect(JointState, f"{prefix}joint_states", RELIABLE)
    ros_client.wait_until(lambda: publisher.get_subscription_count() > 0, what="simulator subscription")
    goal = np.array(ARM.home) + np.array([1.2, 0.6, 0.0, 0.5, 0.0, 0.0, 0.0])
    point = JointTrajectoryPoint(positions=list(goal), time_from_start=Duration(nanosec=500_000_000))
    publisher.publish(JointTrajectory(joint_names=list(ARM.joint_names), points=[point]))
    ros_client.wait_until(
        lambda: states and np.allclose(states[-1].position, goal, atol=0.03), 15.0, "the arm at its goal"
    )


def test_image_shows_the_arm_move_and_stays_still_when_it_does_not(start_node, ros_client, tmp_path):
    sim = start_node(
        "sim_bridge_sim", "simulator", "--params-file", _params(tmp_path, [OVERHEAD]), model="arm7"
    )
    images = ros_client.collect(Image, "overhead/image_raw", RELIABLE)
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    depths = ros_client.collect(Image, "overhead/depth/image_raw", RELIABLE)
    infos = ros_client.collect(CameraInfo, "overhead/camera_info", RELIABLE)
    ros_client.wait_until(lambda: len(images) >= 3 and depths and infos, 20.0, "camera images")

    # camera_info: the focal length that the fovy and the image height give
    info = infos[-1]
    focal = 24.0 / math.tan(math.radians(30.0))
    assert (info.width, info.height) == (64, 48)
    assert info.k[0] == pytest.approx(focal) and info.k[4] == pytest.approx(focal)
    assert info.p[0] == pytest.approx(focal) and info.k[8] == 1.0

    # depth in metres: the floor at a corner of the picture, HEIGHT below the camera
    depth = _pixels(depths[-1])[..., 0]
    assert depth.shape == (48, 64)
    assert depth[1, 1] == pytest.approx(HEIGHT, abs=0.02)
    assert depth.min() < HEIGHT - 0.3  # the arm, nearer than the floor

    # at rest (after the sag under gravity in the first tenths of a second): later pictures are
    # the same, at advancing sim instants
    settled = ros_client.wait_until(
        lambda: next((m for m in states if _stamp(m) > 0.3e9 and np.abs(m.velocity).max() < 1e-4), None),
        20.0,
        "the arm at rest",
    )
    ros_client.wait_until(
        lambda: sum(_stamp(m) >= _stamp(settled) for m in images) >= 3, 10.0, "more images at rest"
    )
    still = [_pixels(m) for m in images if _stamp(m) >= _stamp(settled)]
    assert all(np.array_equal(still[0], other) for other in still[1:])
    stamps = [_stamp(m) for m in images]
    assert all(b > a for a, b in itertools.pairwise(stamps)), "stamps are the sim instants shown"

    # moving: the picture changes with the joints
    _move(ros_client)
    moved_at = len(images)
    ros_client.wait_until(lambda: len(images) >= moved_at + 2, 10.0, "images after the move")
    moved = _pixels(images[-1])
    changed = np.any(moved != still[0], axis=2).sum()
    assert changed > 20, f"only {changed} pixels changed"
    assert sim.alive()


def test_mirrored_worlds_have_their_own_cameras(start_node, ros_client, tmp_path):
    camera = dict(OVERHEAD, depth=False, rate_hz=5.0)
    start_node(
        "sim_bridge_sim",
        "simulator",
        "--params-file",
        _params(tmp_path, [camera]),
        model="arm7",
        num_envs=3,
        mirror_envs=[0, 2],
    )
    first = ros_client.collect(Image, "env_0/overhead/image_raw", RELIABLE)
    third = ros_client.collect(Image, "env_2/overhead/image_raw", RELIABLE)
    ros_client.wait_until(lambda: first and third, 20.0, "both worlds' images")
    assert np.array_equal(_pixels(first[-1]), _pixels(third[-1]))  # both at home

    _move(ros_client, "env_2/")
    count = len(third), len(first)
    ros_client.wait_until(lambda: len(third) > count[0] and len(first) > count[1], 10.0, "new images")
    assert not np.array_equal(_pixels(first[-1]), _pixels(third[-1]))  # only world 2 moved


def test_cameras_without_gl_are_refused_at_start_in_one_line(start_node, tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "disable")
    sim = start_node(
        "sim_bridge_sim", "simulator", "--params-file", _params(tmp_path, [OVERHEAD]), model="arm7"
    )
    assert sim.wait_exit(60) == 2
    errors = [line for line in sim.output().splitlines() if "cameras:" in line]
    assert len(errors) == 1 and "no OpenGL for offscreen rendering: set MUJOCO_GL=egl" in errors[0]


def test_without_cameras_nothing_needs_gl(start_node, ros_client, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "disable")
    sim = start_node("sim_bridge_sim", "simulator", model="arm7")
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    ros_client.wait_until(lambda: len(states) > 10, 20.0, "joint_states without GL")
    assert sim.alive()


def test_recorded_camera_streams_read_back_from_the_bag(start_node, ros_client, tmp_path):
    run = tmp_path / "run"
    sim = start_node(
        "sim_bridge_sim",
        "simulator",
        "--params-file",
        _params(tmp_path, [OVERHEAD]),
        model="arm7",
        record_cameras=True,
        output_dir=str(run),
    )
    images = ros_client.collect(Image, "overhead/image_raw", RELIABLE)
    ros_client.wait_until(lambda: len(images) >= 3, 20.0, "camera images")
    _move(ros_client)  # the recorded images show the arm before and after
    seen = len(images)
    ros_client.wait_until(lambda: len(images) >= seen + 3, 10.0, "images after the move")
    assert sim.stop() == 0  # Ctrl-C: the bag is finished

    with AnyReader([run / "rollouts"]) as bag:
        kinds = {c.topic: c.msgtype for c in bag.connections}
        assert kinds == {
            "/overhead/image_raw": "sensor_msgs/msg/Image",
            "/overhead/depth/image_raw": "sensor_msgs/msg/Image",
            "/overhead/camera_info": "sensor_msgs/msg/CameraInfo",
            "/clock": "rosgraph_msgs/msg/Clock",
        }
        recorded: dict[str, list] = {topic: [] for topic in kinds}
        for connection, _, raw in bag.messages():
            recorded[connection.topic].append(bag.deserialize(raw, connection.msgtype))
    rgb, depth, info = (recorded[f"/overhead/{t}"] for t in ("image_raw", "depth/image_raw", "camera_info"))
    assert len(rgb) >= 6 and len(depth) == len(rgb) and len(info) == len(rgb)
    frames = [_pixels(m) for m in rgb]
    assert all(m.encoding == "rgb8" for m in rgb) and {f.shape for f in frames} == {(48, 64, 3)}
    assert not np.array_equal(frames[0], frames[-1])  # the arm moved between them
    assert all(m.encoding == "32FC1" for m in depth)
    distances = _pixels(depth[-1])
    assert distances.shape == (48, 64, 1) and 0.5 < float(np.median(distances)) <= HEIGHT + 0.01
    assert (info[-1].width, info[-1].height) == (64, 48)
    stamps = [_stamp(m) for m in rgb]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
