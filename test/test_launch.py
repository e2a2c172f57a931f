"""`ros2 launch` of every job, for real, as docs/bringup.md says it behaves.

The installed launch files run under the ROS 2 Jazzy launch, launch_ros and ros2launch tooling
(a ROS install, or the wheels `make setup` installs). Each launch runs in its own process group,
killed at the end of its test whatever happens (conftest.start_ros2). Without the tooling these
tests skip, saying why.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from geometry_msgs.msg import PointStamped
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import JointState
from sim_bridge_core.bringup.description import JOBS, BringupArguments
from sim_bridge_core.config import setting_specs
from sim_bridge_core.models import load_robot
from sim_bridge_core.sysid.bags import read_run
from trajectory_msgs.msg import JointTrajectory

WORLDS = ("num_envs:=32", "episode_length_s:=1.0", "eval_episodes:=8")
ITERATION = 32 * 24  # env steps of one iteration (config/training.yaml: ppo.num_steps 24)


def assert_clean(output: str, processes: int) -> None:
    """Every node process finished by itself or on SIGINT, exit 0, and nothing went wrong on the way."""
    assert output.count("process has finished cleanly") == processes, output
    for trouble in ("Traceback", "[ERROR]", "process has died", "Failed to publish"):
        assert trouble not in output, output


@pytest.mark.parametrize(
    ("transport", "shards", "processes"),
    # 2 shards: a simulator and a randomization node in each shard's namespace, one learner
    [("fused", 1, 1), ("ros", 1, 3), ("ros", 2, 5)],
)
def test_training_ends_by_itself_with_its_outputs(tmp_path, start_ros2, transport, shards, processes):
    run = tmp_path / "run"
    launch = start_ros2(
        "launch",
        "sim_bridge",
        "training.launch.py",
        f"transport:={transport}",
        f"num_shards:={shards}",
        "randomization:=default",
        *WORLDS,
        f"max_env_steps:={2 * ITERATION}",
        f"output_dir:={run}",
    )
    assert launch.wait_exit(120) == 0, launch.output()
    assert_clean(launch.output(), processes)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["transport"] == transport and summary["env_steps"] == 2 * ITERATION
    assert summary["simulator_shards"] == ([f"shard_{k}" for k in range(shards)] if shards > 1 else [])
    assert not summary["interrupted"] and 0.0 <= summary["eval_success_rate_randomized"] <= 1.0
    for name in ("checkpoint.pt", "policy.onnx", "policy.pt", "training_curve.png"):
        assert (run / name).stat().st_size > 0, name
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard event file"
    with AnyReader([run / "rollouts"]) as bag:  # record: true in config/training.yaml
        counts = {c.topic: c.msgcount for c in bag.connections}
    assert counts["/env_0/joint_states"] == counts["/env_0/joint_trajectory"] == 2 * 24


def test_ctrl_c_during_training_leaves_a_checkpoint_and_a_closed_bag(tmp_path, start_ros2):
    run = tmp_path / "run"
    launch = start_ros2(
        "launch",
        "sim_bridge",
        "training.launch.py",
        "transport:=ros",  # the simulator stops with the learner: its last step never comes
        *WORLDS,
        "max_env_steps:=1000000000",
        f"output_dir:={run}",
    )
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists():  # written after the first iteration
        assert launch.alive() and time.monotonic() < deadline, launch.output()
        time.sleep(0.1)
    launch.interrupt()
    assert launch.wait_exit(30) == 0, launch.output()
    assert_clean(launch.output(), 2)  # simulator and policy

    contents = torch.load(run / "checkpoint.pt", weights_only=True)
    env_steps = contents["metadata"]["env_steps"]
    assert contents["metadata"]["iteration"] >= 1 and env_steps % 32 == 0, launch.output()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["env_steps"] == env_steps, launch.output()
    assert summary["eval_success_rate_nominal"] is None  # stopped: not evaluated
    with AnyReader([run / "rollouts"]) as bag:  # closed: every step up to the stop is in it
        counts = {c.topic: c.msgcount for c in bag.connections}
    assert counts["/env_0/joint_states"] == counts["/clock"] == env_steps // 32, launch.output()


def test_eval_ends_by_itself(tmp_path, start_ros2, small_checkpoint):
    launch = start_ros2(
        "launch",
        "sim_bridge",
        "eval.launch.py",  # simulator (lockstep) + randomization + policy (eval)
        f"checkpoint:={small_checkpoint}",
        f"output_dir:={tmp_path / 'eval'}",
        "num_envs:=16",
        "eval_episodes:=16",
        "episode_length_s:=1.0",
    )
    assert launch.wait_exit(120) == 0, launch.output()
    assert_clean(launch.output(), 3)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["transport"] == "ros" and summary["checkpoint"] == str(small_checkpoint)
    assert 0.0 <= summary["eval_success_rate_nominal"] <= 1.0


def eval_over_the_deploy_path(start_ros2, checkpoint: Path, output: Path, *arguments: str) -> str:
    """`ros2 launch` of eval.launch.py transport:=deploy for 3 short episodes: its output, once it
    ended by itself with the summary a deploy-path evaluation writes."""
    launch = start_ros2(
        "launch",
        "sim_bridge",
        "eval.launch.py",  # simulator (one world, lockstep) + deploy-mode policy + evaluator
        "transport:=deploy",
        f"checkpoint:={checkpoint}",
        f"output_dir:={output}",
        "deploy_episodes:=3",
        "episode_length_s:=1.0",
        "num_envs:=8",
        "eval_episodes:=8",
        *arguments,
    )
    assert launch.wait_exit(180) == 0, launch.output()
    assert_clean(launch.output(), 3)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["transport"] == "deploy" and summary["deploy_episodes"] == 3
    assert 0.0 <= summary["eval_success_rate_deploy"] <= 1.0
    return launch.output()


def test_eval_over_the_deploy_path_ends_by_itself(tmp_path, start_ros2, small_checkpoint):
    eval_over_the_deploy_path(start_ros2, small_checkpoint, tmp_path / "parity")


QUADRUPED = (
    Path(__file__).resolve().parents[1] / "src" / "sim_bridge_core" / "test" / "models" / "quadruped.xml"
)
WALK = {"feet": ["fl_foot", "fr_foot", "rl_foot", "rr_foot"], "nominal_height": 0.21}


@pytest.fixture(scope="module")
def quadruped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The test quadruped's robot file and a locomotion policy trained on it in seconds (not a good one)."""
    from sim_bridge_core.deploy.policy import PolicyConfig
    from sim_bridge_core.jobs.training import TrainingJob
    from sim_bridge_core.learning import PpoConfig
    from sim_bridge_core.simulator.core import SimulatorConfig

    run = tmp_path_factory.mktemp("quadruped")
    robot = run / "quadruped.yaml"
    robot.write_text(
        yaml.safe_dump(
            {
                "model": str(QUADRUPED),
                "home": "home",
                "tasks": {"locomotion": WALK},
                "velocity_limits": [20.0],
            }
        )
    )
    policy = PolicyConfig(mode="train", output_dir=str(run), max_env_steps=512, eval_episodes=8)
    sim = SimulatorConfig(
        model=str(QUADRUPED),
        home="home",
        task="locomotion",
        task_settings=yaml.safe_dump(WALK),
        command_interface="position",
        num_envs=32,
        episode_length_s=1.0,
    )
    TrainingJob(policy, PpoConfig(num_steps=8), sim, progress=False).run()
    return robot, run / "checkpoint.pt"


def test_locomotion_over_the_deploy_path_takes_imu_and_cmd_vel(tmp_path, start_ros2, quadruped):
    """The lockstep simulator steps only when the deployed policy answers, and the policy answers only
    with a joint state, an IMU reading and a velocity command: episodes that end prove all three."""
    robot, checkpoint = quadruped
    output = eval_over_the_deploy_path(
        start_ros2, checkpoint, tmp_path / "walk", f"robot:={robot}", "task:=locomotion"
    )
    assert "cmd_vel in effect" in output
    assert json.loads((tmp_path / "walk" / "summary.json").read_text())["task"] == "locomotion"


def test_excite_ends_by_itself_with_its_bag(tmp_path, start_ros2):
    launch = start_ros2(
        "launch", "sim_bridge", "excite.launch.py", "duration_s:=6.5", f"output_dir:={tmp_path / 'excite'}"
    )
    assert launch.wait_exit(90) == 0, launch.output()
    assert_clean(launch.output(), 2)  # the exciter ended the launch; the simulator stopped with it
    # The bag reads back as sysid reads it: the arm moved every joint and came back to rest.
    run = read_run(tmp_path / "excite" / "rollouts", load_robot("arm7"))
    assert len(run.commands) == 1 and run.duration_s > 6.0  # one stamped trajectory, the whole run
    assert np.all(np.ptp(run.positions, axis=0) > 0.02), np.ptp(run.positions, axis=0)
    np.testing.assert_allclose(run.positions[-1], run.positions[0], atol=0.01)
    assert np.abs(run.velocities[-1]).max() < 0.05


def test_sysid_on_a_folder_that_is_no_bag_ends_with_one_line(tmp_path, start_ros2):
    launch = start_ros2("launch", "sim_bridge", "sysid.launch.py", f"bag:=[{tmp_path}]")
    assert launch.wait_exit(90) == 1, launch.output()
    assert "is not a rosbag2" in launch.output() and "Traceback" not in launch.output()


def test_a_failing_job_ends_the_launch_with_an_error(tmp_path, start_ros2):
    launch = start_ros2(
        "launch", "sim_bridge", "eval.launch.py", f"checkpoint:={tmp_path / 'none.pt'}", "num_envs:=4"
    )
    assert launch.wait_exit(120) == 1, launch.output()
    output = launch.output()
    assert "policy.checkpoint" in output and "policy-3 exited with code 2" in output
    assert output.count("process has finished cleanly") == 2  # the simulator and randomization


def test_sim_stops_cleanly_on_ctrl_c(start_ros2, ros_client):
    states = ros_client.collect(JointState, "/joint_states")
    launch = start_ros2("launch", "sim_bridge", "sim.launch.py")
    ros_client.wait_until(lambda: len(states) > 50, timeout=60, what="joint_states from sim.launch.py")
    launch.interrupt()
    assert launch.wait_exit(20) == 0, launch.output()
    assert_clean(launch.output(), 1)


def test_deploy_stops_cleanly_on_ctrl_c(start_ros2, ros_client, small_checkpoint):
    commands = ros_client.collect(JointTrajectory, "/joint_trajectory")
    launch = start_ros2("launch", "sim_bridge", "deploy.launch.py", f"checkpoint:={small_checkpoint}")
    goal = ros_client.node.create_publisher(PointStamped, "/goal", 10)

    def commanding() -> bool:
        goal.publish(PointStamped())  # until the policy has one
        return len(commands) > 10

    ros_client.wait_until(commanding, timeout=60, what="joint_trajectory from the deploy policy")
    launch.interrupt()
    assert launch.wait_exit(20) == 0, launch.output()
    assert_clean(launch.output(), 2)


def test_show_args_lists_every_argument_with_its_description(start_ros2):
    launches = {job: start_ros2("launch", "sim_bridge", f"{job}.launch.py", "--show-args") for job in JOBS}
    for job, launch in launches.items():
        assert launch.wait_exit(60) == 0, launch.output()
        output = launch.output()
        for spec in setting_specs(BringupArguments):
            assert f"'{spec.name}':\n        {spec.description} (config/{job}.yaml)" in output, spec.name
