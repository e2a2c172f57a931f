"""The rendering core: camera entries, intrinsics, depth in metres and pictures of a world's state."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

# isort: off
import sim_bridge_core  # noqa: F401  (before mujoco: it picks the headless GL backend)

# isort: on
import mujoco
import numpy as np
import pytest
from sim_bridge_core.config import ConfigError, from_mapping
from sim_bridge_core.models.robot_config import RobotConfig, robot_from_config
from sim_bridge_core.rendering import (
    CameraSpec,
    WorldRenderer,
    add_cameras,
    camera_info,
    model_cameras,
    parse_cameras,
)
from sim_bridge_core.simulator.core import SimulatorConfig, robot_simulator_parameters, simulated_robot

SCENE = Path(__file__).resolve().parents[1] / "models" / "camera_scene.xml"


def _scene(cameras: tuple[CameraSpec, ...] = ()) -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_file(str(SCENE))
    add_cameras(spec, spec.compile(), cameras)
    return spec.compile()


def test_camera_info_matches_fovy() -> None:
    info = camera_info(60.0, 64, 48)
    focal = info["k"][0]
    assert focal == pytest.approx(24.0 / math.tan(math.radians(30.0)))
    # the focal length and the image height give back the vertical field of view
    assert math.degrees(2 * math.atan(48 / 2 / info["k"][4])) == pytest.approx(60.0)
    assert info["p"][0] == focal and info["p"][3] == 0.0 and info["k"][8] == 1.0


def test_depth_reads_the_distance_to_a_known_surface() -> None:
    model = _scene()
    renderer = WorldRenderer(model, 64, 48)
    qpos = np.array([math.pi / 2])  # the arm swung out of the image's centre row
    rgb, depth = renderer.render(qpos, "overhead", depth=True)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert depth.shape == (48, 64) and depth.dtype == np.float32
    # floor 1.5 m below the camera: the depth along the optical axis is 1.5 m at the edge too
    assert depth[24, 2] == pytest.approx(1.5, abs=0.01)
    assert depth[2, 2] == pytest.approx(1.5, abs=0.01)
    # the arm's top face: 1.5 - (0.3 + 0.04) m, right under the camera along +y
    assert depth[24 - 8, 32] == pytest.approx(1.16, abs=0.01)


def test_image_changes_with_the_joints_and_only_with_them() -> None:
    renderer = WorldRenderer(_scene(), 64, 48)
    first, none = renderer.render(np.array([0.0]), "overhead")
    assert none is None
    again, _ = renderer.render(np.array([0.0]), "overhead")
    moved, _ = renderer.render(np.array([1.0]), "overhead")
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - moved.astype(int)).sum(axis=2).astype(bool).sum() > 50


def test_a_configured_camera_on_a_body_moves_with_it() -> None:
    (camera,) = parse_cameras(
        [{"name": "tip", "body": "arm", "pos": [0.8, 0, 0.2], "fovy": 70, "width": 32, "height": 24}]
    )
    model = _scene((camera,))
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "tip")
    assert cam >= 0 and model.cam_fovy[cam] == pytest.approx(70.0)
    renderer = WorldRenderer(model, 32, 24)
    _, depth = renderer.render(np.array([0.0]), "tip", depth=True)
    assert depth[12, 16] == pytest.approx(0.5, abs=0.01)  # the floor beyond the link, 0.3 + 0.2 m below
    assert [c.name for c in model_cameras(model)] == ["overhead", "tip"]


def test_model_cameras_are_described_and_listed_ones_keep_their_fovy() -> None:
    (overhead,) = model_cameras(_scene())
    assert overhead.name == "overhead" and overhead.body == "world" and overhead.fovy == pytest.approx(60)
    (listed,) = parse_cameras([{"name": "overhead", "width": 64, "height": 48, "rate_hz": 5}])
    assert listed.fovy is None and listed.rate_hz == 5.0
    assert _scene((listed,)).cam_fovy[0] == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"name": "a"}, r"^cameras: must be a list"),
        ([{"name": "a", "size": 3}], r"^cameras\[0\]\.size: unknown key"),
        ([{"name": "a/b"}], r"^cameras\[0\]\.name:"),
        ([{"name": "a", "fovy": 190}], r"^cameras\[0\]\.fovy:"),
        ([{"name": "a", "width": 0}], r"^cameras\[0\]\.width:"),
        ([{"name": "a", "depth": "yes"}], r"^cameras\[0\]\.depth:"),
        ([{"name": "a", "rate_hz": 0}], r"^cameras\[0\]\.rate_hz:"),
        ([{"name": "a", "pos": [0, 0, 1]}], r"^cameras\[0\]\.body:"),
        ([{"name": "a", "body": "arm", "quat": [0, 0, 0, 0]}], r"^cameras\[0\]\.quat:"),
        ([{"name": "a"}, {"name": "a"}], r"^cameras\[1\]\.name: .* twice"),
    ],
)
def test_bad_entries_name_their_key(entries: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_cameras(entries)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "nope"}, r"^cameras\[0\]\.name: the model has no camera 'nope' \(its cameras: overhead\)"),
        ({"name": "overhead", "body": "arm"}, r"^cameras\[0\]\.name: .* already"),
        ({"name": "new", "body": "nobody"}, r"^cameras\[0\]\.body: the model has no body 'nobody'"),
    ],
)
def test_cameras_the_model_cannot_take_are_refused(entry: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _scene(parse_cameras([entry]))


def test_without_gl_the_renderer_refuses_in_one_line() -> None:
    code = (
        "from sim_bridge_core.rendering import require_gl\n"
        "from sim_bridge_core.config import ConfigError\n"
        "try:\n    require_gl()\nexcept ConfigError as exc:\n    print(exc)\n"
    )
    env = dict(os.environ, MUJOCO_GL="disable")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "cameras: no OpenGL for offscreen rendering: set MUJOCO_GL=egl"
    )


def test_a_robot_config_adds_its_cameras_to_the_robot() -> None:
    robot = robot_from_config(
        from_mapping(
            RobotConfig,
            {"model": "arm7", "cameras": [{"name": "wrist", "body": "link7", "depth": True}]},
            "arm.yaml",
        ),
        "arm.yaml",
    )
    (camera,) = robot.cameras
    assert camera.name == "wrist" and camera.depth and robot.model.camera("wrist").id >= 0
    with pytest.raises(ConfigError, match=r"^arm.yaml: cameras\[0\]\.fovy:"):
        robot_from_config(
            from_mapping(RobotConfig, {"cameras": [{"name": "w", "body": "link7", "fovy": 0}]}, "a"),
            "arm.yaml",
        )


def test_bringup_hands_a_robot_files_cameras_to_the_simulator() -> None:
    robot = RobotConfig(cameras=[{"name": "wrist", "body": "link7", "width": 64, "height": 48}])
    simulated, _ = simulated_robot(SimulatorConfig(**robot_simulator_parameters(robot, "none")))
    assert simulated.cameras == robot_from_config(robot, "arm.yaml").cameras
    assert simulated.cameras[0].width == 64 and simulated.model.camera("wrist").id >= 0
