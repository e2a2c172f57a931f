"""A legged robot in deploy mode over real DDS: the velocity command expires when the teleop dies,
and an IMU published best-effort (sensor-data QoS, as IMU drivers do) is heard.

The policy is a real checkpoint whose weights are set by hand: every joint target is home plus a
multiple of the commanded forward velocity, so where the legs stand shows which command the policy
is acting on.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from geometry_msgs.msg import Twist, TwistStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState
from sim_bridge_core.deploy.contract import policy_metadata
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.learning import PpoConfig, save_checkpoint
from sim_bridge_core.learning.modules import ActorCritic
from sim_bridge_core.models import load_robot
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.tasks import make_task
from trajectory_msgs.msg import JointTrajectory

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
MODEL = Path(__file__).resolve().parents[2] / "sim_bridge_core" / "test" / "models" / "quadruped.xml"
SETTINGS = {"feet": ["fl_foot", "fr_foot", "rl_foot", "rr_foot"], "nominal_height": 0.21}
ROBOT = load_robot(str(MODEL), home="home")
TASK = make_task("locomotion", ROBOT, SETTINGS)
NAMES = [name for name, _ in TASK.observation_terms]
FORWARD = sum(size for _, size in TASK.observation_terms[: NAMES.index("cmd_linear_x")])  # its column
GAIN = 0.5  # action per m/s of forward command: targets move 0.5 * 0.5 = 0.25 rad at 1 m/s


def forward_checkpoint(path: Path) -> Path:
    """Targets = home + action_scale * GAIN * forward velocity, on every joint."""
    env = BatchedEnv(CpuBackend(ROBOT, 1, 0.02), TASK, 10.0)
    config = PpoConfig(actor_hidden=[], critic_hidden=[16])
    model = ActorCritic(TASK.observation_size, ROBOT.num_joints, [], [16], config.init_log_std)
    with torch.no_grad():
        model.normalizer.var.fill_(0.99**2)  # (x - 0) / (0.99 + 0.01): the identity
        weight = torch.zeros(ROBOT.num_joints, TASK.observation_size)
        weight[:, FORWARD] = GAIN
        model.actor[0].weight.copy_(weight)
        model.actor[0].bias.zero_()
    return save_checkpoint(path, model, config, policy_metadata(env))


def target(command: JointTrajectory) -> float:
    """Mean joint target about home of a command."""
    return float(np.mean(np.asarray(command.points[0].positions) - ROBOT.home))


def sim_time(state: JointState) -> float:
    return state.header.stamp.sec + 1e-9 * state.header.stamp.nanosec


def offset(state: JointState) -> float:
    """Mean joint position about home: where the policy's command put the legs."""
    positions = dict(zip(state.name, state.position, strict=True))
    return float(np.mean([positions[name] for name in ROBOT.joint_names] - ROBOT.home))


def test_the_robot_stops_when_the_teleop_dies(tmp_path, start_node, ros_client):
    """cmd_vel at 10 Hz puts the legs where the command asks; when it stops (Ctrl-C on
    `ros2 topic pub -r 10 /cmd_vel ...`), the policy is told to stand within cmd_vel_timeout_s and
    the legs are back home within a second of the last command."""
    start_node(
        "sim_bridge_sim",
        "simulator",
        model=str(MODEL),
        home="home",
        task="locomotion",
        task_settings=f"'{yaml.safe_dump(SETTINGS, default_flow_style=True).strip()}'",  # YAML text
        episode_length_s=1e6,
        mode="realtime",
    )
    policy = start_node(
        "sim_bridge_policy",
        "policy",
        checkpoint=str(forward_checkpoint(tmp_path / "c.pt")),
        use_sim_time=True,
        start_enabled=True,
        cmd_vel_timeout_s=0.5,
        velocity_limits=[20.0],  # the test model has none
    )
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    teleop = ros_client.node.create_publisher(Twist, "cmd_vel", RELIABLE)
    ros_client.wait_until(lambda: teleop.get_subscription_count() >= 2 and states, timeout=30, what="nodes")
    policy.wait_for_output("deploying")
    time.sleep(1.0)
    standing = offset(states[-1])  # where the legs settle under the stand command (gravity)
    walking = float(np.mean(TASK.action_to_targets(np.full((1, 8), 0.8 * GAIN))[0] - ROBOT.home))
    command = Twist()
    command.linear.x = 0.8
    deadline = time.monotonic() + 20
    while not (commands and abs(target(commands[-1]) - walking) < 1e-3):
        assert time.monotonic() < deadline, "the policy never acted on the velocity command"
        teleop.publish(command)
        time.sleep(0.1)
    ros_client.wait_until(lambda: offset(states[-1]) - standing > 0.5 * (walking - standing), what="the legs")
    teleop.publish(command)
    last = sim_time(states[-1])  # the teleop dies here, on the robot's clock
    ros_client.wait_until(lambda: abs(target(commands[-1])) < 1e-6, timeout=5, what="a command to stand")
    told = sim_time(states[-1]) - last
    ros_client.wait_until(lambda: abs(offset(states[-1]) - standing) < 0.02, timeout=5, what="the legs back")
    stopped = sim_time(states[-1]) - last
    # In the robot's (simulated) time, which a loaded host's realtime simulator lets lag the wall
    # clock: cmd_vel_timeout_s, and 0.3 s more for DDS, executors and a control period.
    assert told < 0.8, f"still told to walk {told:.2f} s after the last command"
    assert stopped < 1.3, f"the legs stood {stopped:.2f} s after the last command"
    policy.wait_for_output("standing")


@pytest.mark.parametrize("stamped", [False, True])
def test_an_imu_published_best_effort_is_heard(tmp_path, start_node, ros_client, stamped):
    """IMU drivers publish with sensor-data QoS (best effort): a reliable subscriber never matches
    them, and the policy waited for an IMU forever. The velocity command comes as Twist, or as
    TwistStamped (cmd_vel_stamped, as Jazzy's controllers take it)."""
    policy = start_node(
        "sim_bridge_policy",
        "policy",
        checkpoint=str(forward_checkpoint(tmp_path / "c.pt")),
        start_enabled=True,
        home_ramp_s=0.0,
        velocity_limits=[20.0],
        cmd_vel_stamped=stamped,
    )
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    joint_states = ros_client.node.create_publisher(JointState, "joint_states", RELIABLE)
    imu = ros_client.node.create_publisher(Imu, "imu", qos_profile_sensor_data)
    teleop = ros_client.node.create_publisher(TwistStamped if stamped else Twist, "cmd_vel", RELIABLE)
    ros_client.wait_until(lambda: imu.get_subscription_count() > 0, timeout=30, what="the policy")
    ros_client.wait_until(
        lambda: teleop.get_subscription_count() > 0, timeout=30, what="the policy's cmd_vel"
    )
    policy.wait_for_output("deploying")
    clock = ros_client.node.get_clock()
    command = TwistStamped() if stamped else Twist()
    (command.twist if stamped else command).linear.x = 0.8
    for k in range(100):
        stamp = clock.now().to_msg()
        state = JointState(name=list(ROBOT.joint_names), position=list(ROBOT.home), velocity=[0.0] * 8)
        state.header.stamp = stamp
        reading = Imu()
        reading.header.stamp = stamp
        reading.orientation.w = 1.0
        reading.linear_acceleration.z = 9.81
        imu.publish(reading)
        joint_states.publish(state)
        if k % 10 == 0:
            teleop.publish(command)
        time.sleep(0.01)
    ros_client.wait_until(lambda: len(commands) >= 20, what=f"commands (got {len(commands)})")
    walking = float(np.mean(TASK.action_to_targets(np.full((1, 8), 0.8 * GAIN))[0] - ROBOT.home))
    # The command was understood (the last message may be the hold once the states stopped).
    assert max(target(command) for command in commands) == pytest.approx(walking, abs=1e-3)
