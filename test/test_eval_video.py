"""`bringup eval video:=true`: mp4s of whole episodes that decode back; without it, no GL at all."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.jobs.videos import tracking_camera, write_policy_videos
from sim_bridge_core.learning import ActorCritic
from sim_bridge_core.models import load_robot
from sim_bridge_core.rendering import WorldRenderer, count_mp4_frames, parse_cameras, sample_mp4_frames
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.tasks import make_task
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

QUADRUPED = Path(__file__).resolve().parents[1] / "src/sim_bridge_core/test/models/quadruped.xml"
EVAL = ("transport:=fused", "num_envs:=4", "eval_episodes:=4", "episode_length_s:=0.5", "control_dt:=0.02")


def start_eval(start_executable, checkpoint, out, *extra):
    return start_executable(
        "sim_bridge", "bringup", "eval", f"checkpoint:={checkpoint}", f"output_dir:={out}", *EVAL, *extra
    )


def test_eval_writes_videos_of_whole_episodes(tmp_path, start_executable, small_checkpoint, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    out = tmp_path / "eval"
    evaluation = start_eval(start_executable, small_checkpoint, out, "video:=true")
    assert evaluation.wait_exit(300) == 0, evaluation.output()
    names = sorted(path.name for path in (out / "videos").iterdir())
    assert names == ["nominal_0.mp4", "nominal_1.mp4", "randomized_0.mp4", "randomized_1.mp4"]
    for name in names:
        assert count_mp4_frames(out / "videos" / name) == 25  # 0.5 s at 0.02 s a frame
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["videos"]) == sorted(str(out / "videos" / name) for name in names)
    assert summary["video_wall_s"] > 0
    assert "videos: 4 episodes" in evaluation.output()


def test_eval_without_video_needs_no_gl(tmp_path, start_executable, small_checkpoint, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "disable")  # no context can be made
    out = tmp_path / "eval"
    plain = start_eval(start_executable, small_checkpoint, out)
    assert plain.wait_exit(300) == 0, plain.output()
    assert (out / "summary.json").exists() and not (out / "videos").exists()
    refused = start_eval(start_executable, small_checkpoint, tmp_path / "v", "video:=true")
    assert refused.wait_exit(120) != 0
    assert "no OpenGL for offscreen rendering" in refused.output()
    assert not (tmp_path / "v" / "videos").exists()


def test_training_writes_a_video_at_its_evaluation(tmp_path, start_executable, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    run = tmp_path / "run"
    training = start_executable(
        "sim_bridge",
        "bringup",
        "training",
        "num_envs:=32",
        "max_env_steps:=1024",
        "eval_episodes:=8",
        "episode_length_s:=0.4",
        f"output_dir:={run}",
        "video:=true",
    )
    assert training.wait_exit(180) == 0, training.output()
    summary = json.loads((run / "summary.json").read_text())
    steps = summary["env_steps"]
    assert summary["videos"] == [str(run / "videos" / f"training_{steps}_nominal_0.mp4")]
    assert count_mp4_frames(summary["videos"][0]) == 20
    board = EventAccumulator(str(run)).Reload()  # what `tensorboard --logdir` shows
    (clip,) = board.Images("eval/video")  # an animated GIF: every other frame, at half size
    assert clip.step == steps and (clip.width, clip.height) == (160, 120)
    assert Image.open(io.BytesIO(clip.encoded_image_string)).n_frames == 10


def coloured_pixels(frame: np.ndarray, channel: int) -> int:
    """Pixels where one channel stands out (the goal is red, the command arrow blue; the robots grey)."""
    others = np.delete(frame.astype(int), channel, axis=2)
    return int(np.sum(frame[..., channel] - others.max(axis=2) > 60))


@pytest.mark.parametrize(
    ("model", "task", "settings", "channel"),
    [
        ("arm7", "reach", {}, 0),
        (str(QUADRUPED), "locomotion", {"feet": ["fl_foot", "fr_foot", "rl_foot", "rr_foot"]}, 2),
    ],
)
def test_the_goal_or_command_is_drawn(tmp_path, model, task, settings, channel):
    robot = load_robot(model, home="home" if task == "locomotion" else "")
    env = BatchedEnv(CpuBackend(robot, 1, 0.02), make_task(task, robot, settings), 0.1, seed=3)
    env.inputs[0] = np.array([0.4, 0.3, 0.5]) if task == "reach" else np.array([0.6, 0.0, 0.0])
    policy = ActorCritic(env.task.observation_size, robot.num_joints)
    (path,) = write_policy_videos(env, policy, tmp_path, 1, randomized=(False,))
    frames = sample_mp4_frames(path, 5)
    assert all(coloured_pixels(frame, channel) > 20 for frame in frames)
    plain = WorldRenderer(robot.model, 320, 240).render(robot.home_qpos, tracking_camera(robot.model, 1))[0]
    assert coloured_pixels(plain, channel) == 0  # the robot and floor alone have none


def test_a_camera_the_robot_config_lists_films_the_video(tmp_path):
    overhead = parse_cameras([{"name": "overhead", "body": "world", "pos": [0, 0, 3], "fovy": 20}])
    views = []
    for cameras in ((), overhead):
        robot = load_robot("arm7", cameras=cameras)
        env = BatchedEnv(CpuBackend(robot, 1, 0.02), make_task("reach", robot), 0.04, seed=3)
        policy = ActorCritic(env.task.observation_size, robot.num_joints)
        (path,) = write_policy_videos(env, policy, tmp_path / str(len(cameras)), 1, randomized=(False,))
        views.append(sample_mp4_frames(path, 1)[0].astype(int))
    straight_down = WorldRenderer(robot.model, 320, 240).render(robot.home_qpos, "overhead")[0]
    assert np.abs(views[1] - straight_down).mean() < np.abs(views[0] - straight_down).mean() / 3
