"""The policy node in deploy mode against the simulator, separate processes over real DDS."""

from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from sim_bridge_core.gym_env import make_batched_env
from sim_bridge_core.learning import PpoConfig
from sim_bridge_core.learning.checkpoint import save_checkpoint
from sim_bridge_core.learning.modules import ActorCritic
from sim_bridge_core.learning.runner import policy_metadata
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def untrained_checkpoint(path):
    env = make_batched_env(model="arm7", task="reach", num_envs=1)
    config = PpoConfig()
    model = ActorCritic(
        env.task.observation_size, 7, config.actor_hidden, config.critic_hidden, config.init_log_std
    )
    return save_checkpoint(path, model, config, policy_metadata(env))


def test_deploy_drives_the_simulator_and_obeys_enable(tmp_path, start_node, ros_client):
    checkpoint = untrained_checkpoint(tmp_path / "checkpoint.pt")
    start_node("sim_bridge_sim", "simulator", model="arm7", mode="realtime")
    policy = start_node(
        "sim_bridge_policy",
        "policy",
        checkpoint=str(checkpoint),
        control_rate_hz=50.0,
        max_position_step=0.02,
    )
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    goals = ros_client.node.create_publisher(PointStamped, "goal", RELIABLE)
    ros_client.wait_until(lambda: goals.get_subscription_count() > 0 and states, timeout=20, what="policy")
    assert not commands, "commands before any goal"
    goal = PointStamped()
    goal.point.x, goal.point.y, goal.point.z = 0.5, 0.1, 0.4
    goals.publish(goal)
    ros_client.wait_until(lambda: len(commands) > 20, what="commands")
    command = commands[-1]
    assert command.header.stamp.sec == 0 and command.header.stamp.nanosec == 0
    assert command.points[0].time_from_start.nanosec >= 20_000_000  # one control period ahead
    # Safety filter: every command within max_position_step of a recent measurement.
    measured = np.array(states[-1].position)
    assert np.all(np.abs(np.array(command.points[0].positions) - measured) < 0.02 + 0.05)

    assert ros_client.call(SetBool, "/policy/enable", SetBool.Request(data=False)).success
    time.sleep(0.3)
    count = len(commands)
    time.sleep(0.5)
    assert len(commands) == count, "commands kept coming while disabled"
    assert policy.alive()


def test_checkpoint_for_another_robot_fails_at_start(tmp_path, start_node):
    checkpoint = untrained_checkpoint(tmp_path / "checkpoint.pt")
    process = start_node("sim_bridge_policy", "policy", checkpoint=str(checkpoint), model="pendulum")
    process.proc.wait(timeout=30)
    lines = [line for line in process.output().splitlines() if line.strip()]
    assert process.proc.returncode == 2 and len(lines) == 1 and "policy.checkpoint" in lines[0], lines


def test_missing_checkpoint_fails_at_start(start_node):
    process = start_node("sim_bridge_policy", "policy", checkpoint="/no/such/checkpoint.pt")
    process.proc.wait(timeout=30)
    lines = [line for line in process.output().splitlines() if line.strip()]
    assert process.proc.returncode == 2 and len(lines) == 1 and "does not exist" in lines[0], lines
