"""Visual domain randomization through the simulator node: each world's camera shows its own draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
CAMERA = {
    "name": "overhead",
    "body": "world",
    "pos": [0.0, 0.0, 2.5],
    "fovy": 60.0,
    "width": 64,
    "height": 48,
}
# Every geom a colour of its own per world, the light dimmer or brighter: only the pictures change.
VISUAL = {
    "geom_rgba": {"targets": "*", "operation": "abs", "low": 0.0, "high": 1.0},
    "light_diffuse": {"operation": "scale", "low": 0.3, "high": 1.0, "shared": True},
}


@pytest.fixture(autouse=True)
def _egl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")


def _pixels(message: Image) -> np.ndarray:
    return np.frombuffer(bytes(message.data), dtype=np.uint8).reshape(message.height, message.width, 3)


def test_mirrored_worlds_are_pictured_with_their_visual_draws(start_node, ros_client, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    spec = tmp_path / "visual.yaml"
    spec.write_text(yaml.safe_dump({"randomization": VISUAL}))
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"cameras": yaml.safe_dump([CAMERA])}}}))
    start_node(
        "sim_bridge_sim",
        "simulator",
        "--params-file",
        str(params),
        model="arm7",
        num_envs=2,
        mirror_envs=[0, 1],
        randomization=str(spec),
    )
    first = ros_client.collect(Image, "env_0/overhead/image_raw", RELIABLE)
    second = ros_client.collect(Image, "env_1/overhead/image_raw", RELIABLE)
    applied = ros_client.collect(Float64MultiArray, "randomization/applied", LATCHED)
    ros_client.wait_until(lambda: first and second and applied, 20.0, "both worlds' images and applied")

    names = applied[-1].layout.dim[1].label.split(",")
    values = np.array(applied[-1].data).reshape(2, len(names))
    assert "geom_rgba_r/floor" in names and any(n.startswith("light_diffuse_r/") for n in names)
    assert not np.array_equal(values[0], values[1])
    # both arms at home: the worlds differ only in what the visual draws make them look like
    differing = np.abs(_pixels(first[-1]).astype(int) - _pixels(second[-1]).astype(int)).sum(axis=2) > 10
    assert differing.sum() > 200
