"""The policy node's train and eval modes as processes: outputs, resume, kill, stop, both transports."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.highlevel import AnyReader
from sim_bridge_core.learning import load_checkpoint
from std_msgs.msg import Float64MultiArray
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
SUMMARY_KEYS = {
    "env_steps",
    "wall_s",
    "env_steps_per_s",
    "num_envs",
    "transport",
    "model",
    "model_path",
    "task",
    "control_dt",
    "physics_dt",
    "eval_success_rate_nominal",
    "eval_success_rate_randomized",
}
TENSORBOARD_TAGS = {
    "loss/value",
    "loss/surrogate",
    "policy/learning_rate",
    "policy/kl",
    "episode/mean_return",
    "episode/success_rate",
    "perf/env_steps_per_s",
    "eval/success_rate_nominal",
    "eval/success_rate_randomized",
}
SMALL_RUN = {
    "mode": "train",
    "sim.task": "reach",
    "sim.num_envs": 64,
    "sim.episode_length_s": 1.0,
    "ppo.num_steps": 8,
    "eval_episodes": 16,
}


def test_train_writes_every_output_and_a_rerun_resumes(tmp_path, start_node):
    run = tmp_path / "run"
    first = start_node(
        "sim_bridge_policy",
        "policy",
        output_dir=str(run),
        max_env_steps=3 * 512,
        **{**SMALL_RUN, "sim.randomization": "config/randomization/default.yaml"},
    )
    assert first.wait_exit() == 0, first.output()
    for name in ("checkpoint.pt", "policy.onnx", "policy.pt", "summary.json", "training_curve.png"):
        assert (run / name).stat().st_size > 0, name
    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["env_steps"] == 3 * 512 and summary["num_envs"] == 64 and summary["transport"] == "fused"
    assert summary["model_path"].endswith("arm7.xml") and summary["physics_dt"] == 0.002
    assert 0.0 <= summary["eval_success_rate_randomized"] <= 1.0
    contents = torch.load(run / "checkpoint.pt", weights_only=True)
    assert contents["metadata"]["iteration"] == 3
    assert (run / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    board = EventAccumulator(str(run)).Reload()  # what `tensorboard --logdir` shows
    assert TENSORBOARD_TAGS <= set(board.Tags()["scalars"])
    assert [event.step for event in board.Scalars("loss/value")] == [512, 1024, 1536]  # env steps
    (nominal,) = board.Scalars("eval/success_rate_nominal")
    assert nominal.step == 1536 and nominal.value == pytest.approx(summary["eval_success_rate_nominal"])

    second = start_node(
        "sim_bridge_policy", "policy", output_dir=str(run), max_env_steps=5 * 512, **SMALL_RUN
    )
    assert second.wait_exit() == 0, second.output()
    assert "resuming from" in second.output()
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["env_steps"] == 5 * 512 and resumed["iterations"] == 5
    assert resumed["resumed_from"].endswith("checkpoint.pt")

    # checkpoint:= into a new run fine-tunes: that policy's weights, on another robot with the same
    # joints (here arm7 with identified-style overrides), with a budget and counters of its own.
    tuned = tmp_path / "tuned"
    third = start_node(
        "sim_bridge_policy",
        "policy",
        output_dir=str(tuned),
        checkpoint=str(run / "checkpoint.pt"),
        max_env_steps=2 * 512,
        **{**SMALL_RUN, "sim.model_parameters": "'{joints: {joint2: {kp: 4000.0}}, command_delay_s: 0.004}'"},
    )
    assert third.wait_exit() == 0, third.output()
    assert "fine-tuning from" in third.output()
    fine_tuned = json.loads((tuned / "summary.json").read_text())
    assert fine_tuned["env_steps"] == 2 * 512 and fine_tuned["iterations"] == 2
    assert fine_tuned["fine_tuned_from"] == str(run / "checkpoint.pt") and fine_tuned["resumed_from"] is None


def test_a_killed_run_leaves_a_checkpoint_to_resume(tmp_path, start_node, ros_client):
    run = tmp_path / "run"
    applied = ros_client.collect(Float64MultiArray, "/randomization/applied", LATCHED)
    training = start_node(
        "sim_bridge_policy",
        "policy",
        output_dir=str(run),
        max_env_steps=10**9,
        **{**SMALL_RUN, "sim.randomization": "config/randomization/default.yaml"},
    )
    # Fused worlds publish the randomization in effect, as the simulator node does.
    ros_client.wait_until(lambda: applied, timeout=60, what="randomization/applied")
    names = applied[-1].layout.dim[1].label.split(",")
    assert {"body_mass/link1", "actuator_kp/joint1", "action_delay_steps", "gravity_z"} <= set(names)
    assert applied[-1].layout.dim[0].size == 64 and len(applied[-1].data) == 64 * len(names)
    deadline = time.monotonic() + 60
    while (
        not (run / "checkpoint.pt").exists()
        or load_checkpoint(run / "checkpoint.pt").metadata["iteration"] < 2
    ):
        assert training.alive() and time.monotonic() < deadline, training.output()
        time.sleep(0.1)
    training.proc.send_signal(signal.SIGKILL)
    training.proc.wait()
    saved = load_checkpoint(run / "checkpoint.pt").metadata["iteration"]

    again = start_node(
        "sim_bridge_policy", "policy", output_dir=str(run), max_env_steps=(saved + 1) * 512, **SMALL_RUN
    )
    assert again.wait_exit() == 0, again.output()
    assert json.loads((run / "summary.json").read_text())["iterations"] == saved + 1


def test_sigterm_stops_training_with_a_checkpoint_and_a_closed_bag_to_resume(tmp_path, start_node):
    run = tmp_path / "run"
    training = start_node(
        "sim_bridge_policy", "policy", output_dir=str(run), max_env_steps=10**9, record=True, **SMALL_RUN
    )
    deadline = time.monotonic() + 60
    while not (run / "checkpoint.pt").exists():  # written after the first iteration
        assert training.alive() and time.monotonic() < deadline, training.output()
        time.sleep(0.1)
    training.proc.send_signal(signal.SIGTERM)  # docker stop, systemd, ros2 launch escalating
    assert training.wait_exit(30) == 0, training.output()
    assert "Traceback" not in training.output() and "not evaluated" in training.output()
    contents = torch.load(run / "checkpoint.pt", weights_only=True)
    env_steps = contents["metadata"]["env_steps"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["env_steps"] == env_steps
    with AnyReader([run / "rollouts"]) as bag:  # closed: it holds every step up to the stop
        counts = {c.topic: c.msgcount for c in bag.connections}
    assert counts["/env_0/joint_states"] == counts["/env_0/joint_trajectory"] == env_steps // 64

    again = start_node(
        "sim_bridge_policy", "policy", output_dir=str(run), max_env_steps=env_steps + 512, **SMALL_RUN
    )
    assert again.wait_exit() == 0, again.output()
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["resumed_from"] == str(run / "checkpoint.pt") and not resumed["interrupted"]
    assert resumed["env_steps"] >= env_steps + 512


def test_eval_reports_nominal_and_randomized_success(tmp_path, start_node):
    run = tmp_path / "run"
    identified = tmp_path / "robot.yaml"
    identified.write_text(
        "model: arm7\nmodel_parameters: {joints: {joint1: {damping: 2.0}}, command_delay_s: 0.004}\n"
    )
    train = start_node("sim_bridge_policy", "policy", output_dir=str(run), max_env_steps=512, **SMALL_RUN)
    assert train.wait_exit() == 0, train.output()
    evaluation = start_node(
        "sim_bridge_policy",
        "policy",
        mode="eval",
        checkpoint=str(run / "checkpoint.pt"),
        output_dir=str(tmp_path / "eval"),
        eval_episodes=16,
        **{
            "sim.task": "reach",
            "sim.num_envs": 16,
            "sim.episode_length_s": 1.0,
            "sim.randomization": "config/randomization/wide.yaml",
        },
        compare_robot=str(identified),
    )
    assert evaluation.wait_exit() == 0, evaluation.output()
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["checkpoint"] == str(run / "checkpoint.pt")
    assert {"eval_success_rate_nominal", "eval_success_rate_randomized"} <= summary.keys()
    assert summary["randomization"].endswith("wide.yaml")
    # Side by side: the same episodes' success on a second robot, e.g. sysid's robot.yaml.
    assert summary["compare_robot"] == str(identified)
    assert 0.0 <= summary["eval_success_rate_compare_robot"] <= 1.0


def test_bad_training_settings_fail_at_start_naming_the_key(tmp_path, start_node):
    unwritable = start_node("sim_bridge_policy", "policy", output_dir="/proc/no_such_run", **SMALL_RUN)
    assert unwritable.wait_exit(30) == 2
    assert "policy.output_dir" in unwritable.output()
    wrong_task = start_node(
        "sim_bridge_policy", "policy", output_dir=str(tmp_path / "x"), **{**SMALL_RUN, "sim.task": "fly"}
    )
    assert wrong_task.wait_exit(30) == 2
    assert "sim.task" in wrong_task.output()
    missing = start_node(
        "sim_bridge_policy",
        "policy",
        mode="eval",
        checkpoint=str(tmp_path / "none.pt"),
        output_dir=str(tmp_path),
    )
    assert missing.wait_exit(30) == 2
    assert "policy.checkpoint" in missing.output() and "does not exist" in missing.output()


def test_ros_transport_trains_over_the_batch_topics_and_records(tmp_path, start_node):
    run = tmp_path / "run"
    world = {"task": "reach", "num_envs": 32, "episode_length_s": 1.0, "control_dt": 0.02}
    simulator = start_node(
        "sim_bridge_sim",
        "simulator",
        mode="lockstep",
        randomization="config/randomization/default.yaml",
        **world,
    )
    training = start_node(
        "sim_bridge_policy",
        "policy",
        mode="train",
        transport="ros",
        output_dir=str(run),
        max_env_steps=2 * 8 * 32,
        eval_episodes=8,
        record=True,
        **{"ppo.num_steps": 8},
        **{f"sim.{key}": value for key, value in world.items()},
    )
    assert training.wait_exit(180) == 0, training.output() + simulator.output()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["transport"] == "ros" and summary["env_steps"] == 512 and summary["num_envs"] == 32
    assert 0.0 <= summary["eval_success_rate_nominal"] <= 1.0
    assert simulator.alive()  # the learner ends, the simulator it trained on serves on

    with AnyReader([run / "rollouts"]) as bag:
        counts = {c.topic: c.msgcount for c in bag.connections}
        types = {c.topic: c.msgtype for c in bag.connections}
        assert counts["/env_0/joint_states"] == counts["/env_0/joint_trajectory"] == 16
        assert counts["/env_0/task"] == counts["/clock"] == 16
        assert types["/env_0/joint_states"] == "sensor_msgs/msg/JointState"
        assert types["/env_0/joint_trajectory"] == "trajectory_msgs/msg/JointTrajectory"
        assert counts["/randomization/applied"] >= 1  # the simulator's values, received on the topic


def test_an_off_policy_learner_trains_over_the_batch_topics(tmp_path, start_node):
    """SAC on the simulator node's worlds (transport ros): its gradient steps run on what came over
    batch/*, and its run writes what a PPO run writes."""
    run = tmp_path / "run"
    world = {"task": "reach", "num_envs": 32, "episode_length_s": 1.0, "control_dt": 0.02}
    simulator = start_node("sim_bridge_sim", "simulator", mode="lockstep", **world)
    small = {
        "steps_per_iteration": 4,
        "batch_size": 64,
        "buffer_size": 4096,
        "learning_starts": 128,
        "actor_hidden": [32],
        "critic_hidden": [32, 32],
    }
    training = start_node(
        "sim_bridge_policy",
        "policy",
        mode="train",
        transport="ros",
        algorithm="sac",
        output_dir=str(run),
        max_env_steps=4 * 4 * 32,
        eval_episodes=8,
        **{f"off_policy.{key}": value for key, value in small.items()},
        **{f"sim.{key}": value for key, value in world.items()},
    )
    assert training.wait_exit(180) == 0, training.output() + simulator.output()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algorithm"] == "sac" and summary["transport"] == "ros" and summary["env_steps"] == 512
    assert (run / "policy.onnx").stat().st_size > 0
    board = EventAccumulator(str(run)).Reload()
    # Losses are logged once finite: the updates ran from the second iteration on (128 transitions).
    assert [event.step for event in board.Scalars("loss/critic")] == [256, 384, 512]
