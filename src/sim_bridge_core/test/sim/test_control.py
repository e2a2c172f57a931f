"""The command contract: controllers sampled inside the control period, the same in training and on ROS."""

from __future__ import annotations

import numpy as np
import pytest
from mujoco.batch import Batch
from rclpy.serialization import serialize_message
from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import load_robot
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.sim.control import CommandExecution, updates_per_period
from sim_bridge_core.simulator.core import CommandError, Simulator, SimulatorConfig
from sim_bridge_core.simulator.wire import MultiArrayEncoder
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

ARM = load_robot("arm7")
PERIOD_NS = 20_000_000


def test_trajectory_ramps_from_the_measured_position_one_update_ahead_then_holds():
    execution = CommandExecution("trajectory", 4, np.zeros((2, 1)))
    execution.command(np.array([[1.0], [2.0]]), measured=np.array([[0.2], [0.0]]))
    ramp = execution.setpoints()
    np.testing.assert_allclose(ramp[:, :, 0], [[0.4, 0.5], [0.6, 1.0], [0.8, 1.5], [1.0, 2.0]])
    np.testing.assert_allclose(execution.setpoints()[:, :, 0], [[1.0, 2.0]])  # held afterwards


def test_only_commanded_worlds_ramp():
    execution = CommandExecution("trajectory", 2, np.zeros((2, 1)))
    execution.command(np.array([[1.0], [1.0]]), measured=np.zeros((2, 1)), worlds=np.array([1]))
    np.testing.assert_allclose(execution.setpoints()[:, :, 0], [[0.0, 0.5], [0.0, 1.0]])


def test_position_interface_steps_and_holds():
    execution = CommandExecution("position", 10, np.zeros((1, 2)))
    execution.command(np.array([[0.3, -0.3]]), measured=np.zeros((1, 2)))
    np.testing.assert_allclose(execution.setpoints(), [[[0.3, -0.3]]])


def test_controller_rate_must_divide_the_control_period():
    assert updates_per_period(10, 0.002, 0.0) == 10
    assert updates_per_period(10, 0.002, 100.0) == 2
    with pytest.raises(ValueError, match="300"):
        updates_per_period(10, 0.002, 300.0)
    with pytest.raises(ConfigError, match=r"simulator\.controller_rate_hz"):
        Simulator(SimulatorConfig(controller_rate_hz=300.0))


def test_setpoints_per_update_step_physics_exactly_as_raw_batch():
    backend = CpuBackend(ARM, 2, 0.02, threads=1)
    raw = Batch(ARM.model, 2, 1)
    qpos, ctrl = raw.bind("qpos"), raw.bind("ctrl")
    qpos[:] = ARM.home
    raw.forward()
    rng = np.random.default_rng(1)
    for _ in range(5):
        setpoints = ARM.clamp(ARM.home + rng.uniform(-0.3, 0.3, (5, 2, 7)))
        backend.step(setpoints)
        for block in setpoints:
            ctrl[:] = block
            raw.step(nstep=2)
    np.testing.assert_array_equal(backend.joint_positions(), qpos[:, ARM.qpos_adr])


def one_point_trajectory(positions, seconds: float = 0.02) -> bytes:
    point = JointTrajectoryPoint(positions=list(positions))
    point.time_from_start.nanosec = round(seconds * 1e9)
    return serialize_message(JointTrajectory(joint_names=list(ARM.joint_names), points=[point]))


def joint_commands(positions) -> bytes:
    return MultiArrayEncoder(np.float64, ("joint",)).encode(np.asarray(positions, float))


@pytest.mark.parametrize("interface", ["trajectory", "position"])
def test_a_command_through_the_robot_topic_moves_the_arm_as_training_does(interface):
    """What a policy meets in training (batched commands) is what its commands do through
    joint_trajectory (one point, one period ahead) or joint_commands: the same physics (to rounding:
    the follower interpolates in sim seconds, the batched ramp in update fractions)."""
    config = SimulatorConfig(num_envs=1, task="none", command_interface=interface)
    trained, deployed = Simulator(config), Simulator(config)
    rng = np.random.default_rng(0)
    start = trained.env.backend.joint_positions()[0]
    for _ in range(15):
        target = ARM.clamp(trained.env.measured_positions()[0] + rng.uniform(-0.02, 0.08, 7))
        trained.command_all(target[None])
        message = one_point_trajectory(target) if interface == "trajectory" else joint_commands(target)
        deployed.apply_world_command(0, message)
        trained.step()
        deployed.step()
        np.testing.assert_allclose(
            deployed.env.backend.joint_positions(), trained.env.backend.joint_positions(), rtol=0, atol=1e-12
        )
    assert np.abs(trained.env.backend.joint_positions()[0] - start).max() > 0.05, "the arm did not move"


def test_one_period_trajectory_is_carried_out_when_policy_and_simulator_share_the_period():
    sim = Simulator(SimulatorConfig(num_envs=1, task="none"))
    target = ARM.home + 0.1
    for _ in range(25):  # half a second of 50 Hz commands, each one period ahead
        sim.apply_world_command(0, one_point_trajectory(target))
        sim.step()
    # Within the servo's gravity sag (~0.02 rad at joint4) of a target 0.1 rad away on every joint.
    np.testing.assert_allclose(sim.env.backend.joint_positions()[0], target, atol=0.025)


def test_trajectory_is_sampled_at_every_physics_step():
    """A 0.1 s ramp sampled at 500 Hz by the controller, not once per 20 ms period."""
    sim = Simulator(SimulatorConfig(num_envs=1, task="none", control_dt=0.02))
    target = ARM.home + np.array([0.5, 0, 0, 0, 0, 0, 0])
    sim.apply_world_command(0, one_point_trajectory(target, seconds=0.1))
    applied = []
    step = sim.env.backend.step
    sim.env.backend.step = lambda setpoints: applied.append(np.array(setpoints)) or step(setpoints)
    sim.step()
    assert applied[0].shape == (10, 1, 7)
    np.testing.assert_allclose(np.diff(applied[0][:, 0, 0]), 0.5 * 0.002 / 0.1, rtol=0.05)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (lambda: joint_commands(np.zeros(6)), "expected 7 positions"),
        (lambda: joint_commands(np.full(7, np.nan)), "NaN or inf"),
        (lambda: b"\x00\x01\x00\x00\x09", "malformed"),
        (
            lambda: serialize_message(Float64MultiArray(data=list(ARM.home + 0.1))),
            None,
        ),
    ],
)
def test_joint_commands_are_validated(payload, reason):
    sim = Simulator(SimulatorConfig(num_envs=1, task="none", command_interface="position"))
    before = sim.targets.copy()
    if reason is None:  # a plain message as `ros2 topic pub` sends it, without layout
        sim.apply_world_command(0, payload())
        np.testing.assert_array_equal(sim.targets, [ARM.home + 0.1])
        return
    with pytest.raises(CommandError, match=reason):
        sim.apply_world_command(0, payload())
    np.testing.assert_array_equal(sim.targets, before)


def test_trajectory_refusals_from_review_against_the_controller():
    sim = Simulator(SimulatorConfig(num_envs=1, task="none", max_trajectory_points=100))
    point = JointTrajectoryPoint(positions=list(ARM.home), effort=[1.0] * 7)
    point.time_from_start.sec = 1
    with pytest.raises(CommandError, match="no effort command interface"):
        sim.apply_world_command(
            0, serialize_message(JointTrajectory(joint_names=list(ARM.joint_names), points=[point]))
        )
    points = []
    for k in range(101):
        p = JointTrajectoryPoint(positions=list(ARM.home))
        p.time_from_start.sec = k + 1
        points.append(p)
    with pytest.raises(CommandError, match="101 points, more than the 100"):
        sim.apply_world_command(
            0, serialize_message(JointTrajectory(joint_names=list(ARM.joint_names), points=points))
        )
    assert not sim.followers[0].active


def test_a_command_delay_reaches_the_servos_that_many_physics_steps_late():
    """Under a forward position controller, a command with 4 ms of delay moves the arm exactly as
    the same command sent two physics steps later without delay."""

    def simulator(delay_s: float) -> Simulator:
        return Simulator(
            SimulatorConfig(
                num_envs=1,
                task="none",
                control_dt=0.002,
                command_interface="position",
                model_parameters=f"command_delay_s: {delay_s}",
            )
        )

    target = ARM.home + 0.2
    delayed, later = simulator(0.004), simulator(0.0)
    delayed.apply_world_command(0, joint_commands(target))
    delayed_trace, later_trace = [], []
    for step in range(30):
        if step == 2:
            later.apply_world_command(0, joint_commands(target))
        for sim, trace in ((delayed, delayed_trace), (later, later_trace)):
            sim.step()
            trace.append(sim.env.backend.joint_positions()[0])
    np.testing.assert_allclose(delayed_trace, later_trace, rtol=0, atol=1e-12)
    assert np.abs(delayed_trace[-1] - delayed_trace[0]).max() > 0.01
