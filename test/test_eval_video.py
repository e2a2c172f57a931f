"""`bringup eval video:=true`: mp4s of whole episodes that decode back; without it, no GL at all."""

import json

from sim_bridge_core.rendering import count_mp4_frames
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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
        "sim_bridge", "bringup", "training", "num_envs:=32", "max_env_steps:=1024", "eval_episodes:=8",
        "episode_length_s:=0.4", f"output_dir:={run}", "video:=true",
    )
    assert training.wait_exit(180) == 0, training.output()
    summary = json.loads((run / "summary.json").read_text())
    steps = summary["env_steps"]
    assert summary["videos"] == [str(run / "videos" / f"training_{steps}_nominal_0.mp4")]
    assert count_mp4_frames(summary["videos"][0]) == 20
    board = EventAccumulator(str(run)).Reload()  # what `tensorboard --logdir` shows
    (stills,) = board.Images("eval/video")  # four frames side by side
    assert stills.step == steps and (stills.width, stills.height) == (4 * 320, 240)
