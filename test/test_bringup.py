"""Launch files against the configs, and the `bringup` runner as a real process over DDS."""

from __future__ import annotations

import ast
import json
import signal
import time
from pathlib import Path

import pytest
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import JointState
from sim_bridge.launch_support import node_arguments
from sim_bridge_core.bringup.description import JOBS, describe
from sim_bridge_core.deploy.contract import policy_metadata
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.learning import ActorCritic, PpoConfig, load_checkpoint, save_checkpoint
from sim_bridge_core.models import load_robot
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAINING = [
    "num_envs:=32",
    "max_env_steps:=1536",
    "eval_episodes:=8",
    "episode_length_s:=1.0",
    "randomization:=default",
]


@pytest.mark.parametrize("job", JOBS)
def test_each_launch_file_is_one_call_to_the_shared_description(job):
    tree = ast.parse((ROOT / "launch" / f"{job}.launch.py").read_text())
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert [f.name for f in functions] == ["generate_launch_description"]
    (statement,) = functions[0].body
    call = statement.value
    assert isinstance(call, ast.Call) and call.func.id == "launch_description"
    assert [arg.value for arg in call.args] == [job]


@pytest.mark.parametrize("job", JOBS)
def test_launch_arguments_start_the_nodes_bringup_starts(job):
    given = {
        "num_envs": "8",
        "seed": "3",
        "checkpoint": "runs/a/checkpoint.pt",
        "transport": "ros",
        "robot": "",
    }
    launched = node_arguments(job, given)
    config = ROOT / "src" / "sim_bridge" / "config"
    expected = describe(
        job, {"num_envs": 8, "seed": 3, "checkpoint": "runs/a/checkpoint.pt", "transport": "ros"}, config
    )
    assert [(k["package"], k["executable"], k["name"]) for k in launched] == [
        (n.package, n.executable, n.name) for n in expected.nodes
    ]
    assert [k["parameters"] for k in launched] == [[n.parameters] for n in expected.nodes]
    assert [k["remappings"] for k in launched] == [n.remappings for n in expected.nodes]


def test_bringup_training_runs_to_completion_with_every_output(tmp_path, start_executable):
    run = tmp_path / "run"
    process = start_executable("sim_bridge", "bringup", "training", *TINY_TRAINING, f"output_dir:={run}")
    assert process.wait_exit(180) == 0, process.output()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] >= 1536 and summary["num_envs"] == 32 and summary["transport"] == "fused"
    assert summary["randomization"].endswith("default.yaml")
    for name in ("checkpoint.pt", "policy.onnx", "training_curve.png"):
        assert (run / name).is_file(), name
    steps = summary["env_steps"] // summary["num_envs"]  # control steps of every world
    with AnyReader([run / "rollouts"]) as bag:  # record: true in config/training.yaml
        connections = {c.topic: c for c in bag.connections}
        expected_types = {
            "/clock": "rosgraph_msgs/msg/Clock",
            "/env_0/joint_states": "sensor_msgs/msg/JointState",
            "/env_0/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
            "/env_0/task": "std_msgs/msg/Float32MultiArray",
            "/randomization/applied": "std_msgs/msg/Float64MultiArray",
        }
        assert {topic: c.msgtype for topic, c in connections.items()} == expected_types
        for topic in ("/clock", "/env_0/joint_states", "/env_0/joint_trajectory", "/env_0/task"):
            assert connections[topic].msgcount == steps, topic
        states = [
            bag.deserialize(raw, c.msgtype)
            for c, _, raw in bag.messages([connections["/env_0/joint_states"]])
        ]
        assert [list(m.name) for m in states[:1]] == [[f"joint{i}" for i in range(1, 8)]]


def test_bringup_refuses_bad_arguments_before_starting(start_executable):
    for args, key in [
        (["training", "num_env:=4"], "num_env: unknown argument"),
        (["training", "robot:=ur5"], "robot: no robot file"),
        (["training", "output_dir:=/proc/forbidden"], "policy.output_dir"),
        (["fly"], "unknown config 'fly'"),
    ]:
        process = start_executable("sim_bridge", "bringup", *args)
        assert process.wait_exit(60) == 2, process.output()
        assert key in process.output()


def test_bringup_sim_serves_joint_states_until_interrupted(start_executable, ros_client):
    states = ros_client.collect(JointState, "/joint_states")
    process = start_executable("sim_bridge", "bringup", "sim")
    ros_client.wait_until(lambda: len(states) > 20, timeout=30, what="joint_states from bringup sim")
    assert list(states[-1].name) == [f"joint{i}" for i in range(1, 8)]
    process.proc.send_signal(signal.SIGINT)
    assert process.wait_exit(20) == 0, process.output()
    assert "Traceback" not in process.output() and "Failed to publish" not in process.output()


def test_bringup_training_over_ros_stops_on_sigint_with_a_checkpoint_and_a_closed_bag(
    tmp_path, start_executable
):
    run = tmp_path / "run"
    process = start_executable(
        "sim_bridge",
        "bringup",
        "training",
        *TINY_TRAINING,
        "transport:=ros",  # simulator, randomization and policy composed in one process
        "max_env_steps:=1000000000",
        f"output_dir:={run}",
    )
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists():  # written after the first iteration
        assert process.alive() and time.monotonic() < deadline, process.output()
        time.sleep(0.1)
    process.interrupt()  # Ctrl-C
    assert process.wait_exit(30) == 0, process.output()
    assert "Traceback" not in process.output()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["transport"] == "ros"
    assert load_checkpoint(run / "checkpoint.pt").metadata["env_steps"] == summary["env_steps"]
    with AnyReader([run / "rollouts"]) as bag:
        counts = {c.topic: c.msgcount for c in bag.connections}
    assert counts["/env_0/joint_states"] == summary["env_steps"] // 32


def test_bringup_eval_runs_the_checkpoint_on_the_simulator_node(tmp_path, start_executable):
    run = tmp_path / "run"
    training = start_executable("sim_bridge", "bringup", "training", *TINY_TRAINING, f"output_dir:={run}")
    assert training.wait_exit(180) == 0, training.output()
    evaluation = start_executable(
        "sim_bridge",
        "bringup",
        "eval",  # config/eval.yaml: simulator (lockstep) + randomization + policy over batch/*
        f"checkpoint:={run / 'checkpoint.pt'}",
        f"output_dir:={tmp_path / 'eval'}",
        "num_envs:=16",
        "eval_episodes:=16",
        "episode_length_s:=1.0",
    )
    assert evaluation.wait_exit(180) == 0, evaluation.output()
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["transport"] == "ros" and summary["num_envs"] == 16
    assert summary["randomization"].endswith("default.yaml")
    for key in ("eval_success_rate_nominal", "eval_success_rate_randomized"):
        assert 0.0 <= summary[key] <= 1.0


def untrained_checkpoint(path: Path, interface: str) -> Path:
    robot = load_robot("arm7")
    env = BatchedEnv(CpuBackend(robot, 1, 0.02), make_task("reach", robot), 3.0, command_interface=interface)
    model = ActorCritic(env.task.observation_size, robot.num_joints)
    return save_checkpoint(path, model, PpoConfig(), policy_metadata(env))


@pytest.mark.parametrize("interface", ["trajectory", "position"])
def test_bringup_eval_over_the_deploy_path_writes_the_deploy_success(tmp_path, start_executable, interface):
    """transport:=deploy: the checkpoint drives one simulated robot through its robot topics, in
    lockstep on sim time, episode after episode, and the summary puts both figures side by side.
    The position case evaluates on another robot file (eval_robot:=): its solver, delay and noise."""
    checkpoint = untrained_checkpoint(tmp_path / "checkpoint.pt", interface)
    other = tmp_path / "other.yaml"
    other.write_text(
        "model: arm7\nmodel_parameters: {command_delay_s: 0.008, options: {timestep: 0.001}}\n"
        "sensor_noise: {joint_position: 0.005}\n"
    )
    eval_robot = [f"eval_robot:={other}"] if interface == "position" else []
    evaluation = start_executable(
        "sim_bridge",
        "bringup",
        "eval",
        "transport:=deploy",
        f"checkpoint:={checkpoint}",
        f"output_dir:={tmp_path / 'eval'}",
        "deploy_episodes:=3",
        "num_envs:=16",
        "eval_episodes:=16",
        "episode_length_s:=0.5",
        *eval_robot,
    )
    assert evaluation.wait_exit(180) == 0, evaluation.output()
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["transport"] == "deploy" and summary["command_interface"] == interface
    if eval_robot:
        assert summary["physics_dt"] == 0.001
        assert summary["model_parameters"]["command_delay_s"] == 0.008
        assert "joint_position_noise" in summary["randomization"]
    assert summary["deploy_episodes"] == 3 and summary["deploy_steps"] >= 3 * 25  # whole 25-step episodes
    for key in ("eval_success_rate_deploy", "eval_success_rate_nominal"):
        assert 0.0 <= summary[key] <= 1.0


TEST_MODELS = ROOT / "src" / "sim_bridge_core" / "test" / "models"
NEW_ROBOT = """\
model: gripper_arm.xml
joint_names: [shoulder, elbow]
home: ready
sites:
  tip: {body: hand, pos: [0.1, 0.0, 0.0]}
tasks:
  reach: {ee_site: tip, goal_low: [0.3, -0.1, 0.3], goal_high: [0.5, 0.1, 0.5]}
"""


def test_a_robot_never_seen_runs_from_its_yaml_alone(tmp_path, start_executable, ros_client):
    """A robot file beside its model: joint_states list the gripper's fingers too, and the gripper
    opens by a JointTrajectory naming its actuator."""
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    (tmp_path / "gripper_arm.xml").write_text((TEST_MODELS / "gripper_arm.xml").read_text())
    (tmp_path / "robot.yaml").write_text(NEW_ROBOT)
    states = ros_client.collect(JointState, "/joint_states")
    commands = ros_client.node.create_publisher(JointTrajectory, "/joint_trajectory", 10)
    process = start_executable(
        "sim_bridge", "bringup", "sim", f"robot:={tmp_path / 'robot.yaml'}", "task:=reach"
    )
    ros_client.wait_until(
        lambda: states and commands.get_subscription_count(), timeout=30, what="bringup sim"
    )
    assert list(states[-1].name) == ["shoulder", "elbow", "left_finger", "right_finger"]
    assert states[-1].position[2] == pytest.approx(0.03, abs=2e-3)  # the ready keyframe: open
    point = JointTrajectoryPoint(positions=[0.0])
    point.time_from_start.nanosec = 200_000_000
    close = JointTrajectory(joint_names=["gripper"], points=[point])

    def closed() -> bool:
        commands.publish(close)  # again until it arrives: the first may beat the simulator's discovery
        time.sleep(0.05)
        return abs(states[-1].position[2]) < 2e-3

    ros_client.wait_until(closed, timeout=10, what="the gripper closed")
    process.proc.send_signal(signal.SIGINT)
    assert process.wait_exit(20) == 0, process.output()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("ee_site: tip", "ee_site: nose"),
            "robot.yaml: tasks.reach.ee_site: model 'gripper_arm' has no site named 'nose'",
        ),
        (("home: ready", "home: stow"), "robot.yaml: home: no keyframe 'stow'"),
        (
            ("home: ready", "home: ready\nimu_site: tcp"),
            "robot.yaml: imu_site: site 'tcp' has no gyro or accelerometer",
        ),
        (
            ("model: gripper_arm.xml", "model: arms/none.xml"),
            "robot.yaml: model: model file not found: arms/none.xml",
        ),
        (("body: hand", "body: palm"), "robot.yaml: sites.tip.body: the model has no body 'palm'"),
    ],
)
def test_a_bad_robot_file_fails_before_anything_starts(tmp_path, edit, message):
    from sim_bridge_core.config import ConfigError

    (tmp_path / "gripper_arm.xml").write_text((TEST_MODELS / "gripper_arm.xml").read_text())
    (tmp_path / "robot.yaml").write_text(NEW_ROBOT.replace(*edit))
    with pytest.raises(ConfigError) as error:
        describe("sim", {"robot": str(tmp_path / "robot.yaml"), "task": "reach"}, ROOT / "config")
    assert message in str(error.value) and "\n" not in str(error.value)
