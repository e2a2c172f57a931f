"""Videos of what a policy does: whole episodes of one world, rendered offscreen to mp4.

The camera is the first one the robot config lists, else a free one that tracks the robot (a
floating base's trunk, else the first body under the world). The reach goal is drawn as a sphere, a
locomotion command as an arrow from the trunk. Rendering costs tens of milliseconds a frame on
a CPU, so a video is a few episodes, never an evaluation's thousand.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import mujoco
import numpy as np
import torch

from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.learning.modules import Policy
from sim_bridge_core.rendering import WorldRenderer, write_mp4

VIDEOS = "videos"
WIDTH, HEIGHT = 320, 240
GOAL_RGBA = np.array([1.0, 0.2, 0.2, 0.8], np.float32)
COMMAND_RGBA = np.array([0.2, 0.4, 1.0, 0.9], np.float32)


def robot_radius(model: mujoco.MjModel) -> float:
    """How far the robot's geoms reach from its centre of mass at the model's initial pose (the
    model's own extent would count a floor plane)."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    robot = model.geom_bodyid > 0
    if not robot.any():
        return float(model.stat.extent)
    reach = np.linalg.norm(data.geom_xpos[robot] - data.subtree_com[0], axis=1) + model.geom_rbound[robot]
    return float(reach.max())


def tracking_camera(model: mujoco.MjModel, body: int) -> mujoco.MjvCamera:
    """A free camera that follows ``body`` from far enough to see the whole robot."""
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    camera.trackbodyid = body
    camera.distance = 3.0 * robot_radius(model)
    camera.azimuth, camera.elevation = 135.0, -25.0
    return camera


def _add_geom(scene: mujoco.MjvScene, kind: int, size: np.ndarray, pos: np.ndarray, rgba: np.ndarray) -> int:
    if scene.ngeom >= scene.maxgeom:
        return -1
    index = scene.ngeom
    mujoco.mjv_initGeom(scene.geoms[index], kind, size, pos, np.eye(3).ravel(), rgba)
    scene.ngeom += 1
    return index


class EpisodeVideo:
    """Renders episodes of ``env``'s first world, each to its own mp4 (fps = 1 / control_dt)."""

    def __init__(self, env: BatchedEnv, camera: str = "", width: int = WIDTH, height: int = HEIGHT) -> None:
        robot = env.backend.robot
        self.env = env
        # Its own model: a randomized episode's visual values are written into it, never the robot's.
        self.renderer = WorldRenderer(copy.copy(robot.model), width, height)
        # A camera the robot config names (its first) shows what the robot's own camera would.
        camera = camera or (robot.cameras[0].name if robot.cameras else "")
        self.camera: str | mujoco.MjvCamera = camera or tracking_camera(
            robot.model, robot.base.body if robot.base is not None else 1
        )
        self._columns = np.arange(robot.model.nq)
        self._base = robot.base
        self._arrow_height = 0.5 * robot_radius(robot.model)

    def record(self, model: Policy, path: Path) -> int:
        """One fresh episode of the deterministic policy to ``path``; returns its frame count."""
        env = self.env
        device = next(model.parameters()).device
        model.eval()
        env.reset()
        randomizer = env.randomizer  # the episode's draws: its lights, colours, textures and camera
        visual = None if randomizer is None else randomizer.visual_state(np.array([0]))
        if visual is not None:
            visual.apply(self.renderer.model, 0)
        frames = []
        for _ in range(env.episode_steps):
            frames.append(self._frame())
            with torch.no_grad():
                actions = model.act_inference(torch.as_tensor(env.observation(), device=device))
            if env.step(env.task.action_to_targets(actions.cpu().numpy())).done[0]:
                break
        return write_mp4(path, frames, fps=1.0 / env.control_dt)

    def close(self) -> None:
        self.renderer.close()

    def _frame(self) -> np.ndarray:
        qpos = self.env.backend.read("qpos", self._columns)[0]
        signal = self.env.task.goal_from_inputs(self.env.inputs[0])
        message = self.env.task.input_message

        def decorate(scene: mujoco.MjvScene) -> None:
            if message == "goal" and self.env.inputs.shape[1]:
                _add_geom(scene, mujoco.mjtGeom.mjGEOM_SPHERE, np.array([0.03, 0, 0]), signal, GOAL_RGBA)
            elif message == "cmd_vel" and self._base is not None:
                self._draw_command(scene, qpos, signal)

        rgb, _ = self.renderer.render(qpos, self.camera, decorate=decorate)
        return rgb

    def _draw_command(self, scene: mujoco.MjvScene, qpos: np.ndarray, command: np.ndarray) -> None:
        """The commanded planar velocity (body frame, m/s) as an arrow above the trunk, in the world frame."""
        start = qpos[self._base.qpos_adr : self._base.qpos_adr + 3] + np.array([0.0, 0.0, self._arrow_height])
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, qpos[self._base.qpos_adr + 3 : self._base.qpos_adr + 7])
        velocity = rotation.reshape(3, 3) @ np.array([command[0], command[1], 0.0])
        if np.linalg.norm(velocity) < 1e-6:
            return
        arrow = mujoco.mjtGeom.mjGEOM_ARROW
        index = _add_geom(scene, arrow, np.zeros(3), start, COMMAND_RGBA)
        if index >= 0:
            mujoco.mjv_connector(scene.geoms[index], arrow, 0.02, start, start + velocity)


def write_policy_videos(
    env: BatchedEnv,
    model: Policy,
    directory: Path,
    episodes: int,
    prefix: str = "",
    camera: str = "",
    randomized: tuple[bool, ...] = (False, True),
) -> list[Path]:
    """``episodes`` nominal then ``episodes`` randomized episodes (the same physics without a
    randomization spec) of ``env``'s first world, to ``directory/<prefix>nominal_<k>.mp4`` and
    ``..randomized_<k>.mp4``. Prints the time it took."""
    start = time.perf_counter()
    video = EpisodeVideo(env, camera)
    paths = []
    try:
        for physics in randomized:
            env.set_randomization_enabled(physics)
            for k in range(episodes):
                path = directory / f"{prefix}{'randomized' if physics else 'nominal'}_{k}.mp4"
                video.record(model, path)
                paths.append(path)
    finally:
        video.close()
        env.set_randomization_enabled(True)
    print(f"videos: {len(paths)} episodes to {directory} in {time.perf_counter() - start:.1f} s", flush=True)
    return paths
