"""RemoteWorlds over real DDS: the simulator node as its own process, driven in lockstep.

Lockstep makes the node's worlds step exactly as an in-process ``Simulator`` with the same
config and seed, so states and rewards are compared to one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from rcl_interfaces.srv import GetParameters
from sensor_msgs.msg import JointState
from sim_bridge_core.models import load_robot
from sim_bridge_core.ros.batch_topics import connect_remote_worlds
from sim_bridge_core.simulator.core import Simulator, SimulatorConfig
from sim_bridge_core.simulator.remote import RemoteError
from sim_bridge_core.tasks import make_task

SPEC = str(Path(__file__).resolve().parents[4] / "config" / "randomization" / "default.yaml")
SETTINGS = dict(
    model="arm7", num_envs=8, task="reach", control_dt=0.02, episode_length_s=0.2, seed=3, mode="lockstep"
)
RESEND_S = 0.2
TASK = make_task("reach", load_robot("arm7"))


def connect(ros_client, timeout_s: float = 20.0):
    return connect_remote_worlds(ros_client.node, TASK, 8, 0.02, 0.2, timeout_s=timeout_s)


def targets(k: int) -> np.ndarray:
    robot = TASK.robot
    return robot.clamp(robot.home + 0.4 * np.sin(np.arange(8)[:, None] + np.arange(7) + 0.3 * k))


def assert_same_state(worlds, ref: Simulator) -> None:
    assert worlds.time_ns == ref.time_ns
    np.testing.assert_allclose(worlds.positions, ref.env.measured_positions(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(worlds.velocities, ref.env.measured_velocities(), rtol=0, atol=1e-7)
    np.testing.assert_allclose(worlds.inputs, ref.env.inputs, rtol=1e-6)


def test_remote_worlds_step_as_an_in_process_simulator(start_node, ros_client):
    sim = start_node("sim_bridge_sim", "simulator", lockstep_resend_s=RESEND_S, **SETTINGS)
    states = ros_client.collect(JointState, "batch/joint_states", 100)
    worlds = connect(ros_client)
    ref = Simulator(SimulatorConfig(**SETTINGS))

    observation = worlds.observation()
    expected = TASK.observation(worlds.positions, worlds.velocities, worlds.inputs)
    np.testing.assert_array_equal(observation, expected)
    assert_same_state(worlds, ref)
    start = worlds.positions.copy()

    goals = worlds.inputs.copy()
    for k in range(12):
        if k == 5:
            time.sleep(4 * RESEND_S)  # the simulator resends the pending pair meanwhile
        result = worlds.step(targets(k))
        ref.command_all(targets(k))
        expected_result = ref.step()
        assert_same_state(worlds, ref)
        np.testing.assert_allclose(result.reward, expected_result.reward, rtol=1e-5)
        np.testing.assert_array_equal(result.success, expected_result.success)
        np.testing.assert_array_equal(result.truncated, expected_result.truncated)
        if k == 9:  # episode_length_s 0.2 = 10 steps: every world truncated and reset, with new goals
            assert result.truncated.all() and not result.terminated.any()
            assert not np.allclose(worlds.inputs, goals)
        else:
            assert not result.truncated.any()
        if k == 4:  # toward the targets
            assert np.linalg.norm(worlds.positions - targets(k)) < 0.8 * np.linalg.norm(start - targets(k))
    # The pause neither double-stepped nor mis-paired: one state per step, 12 steps in all.
    assert worlds.time_ns == 12 * 20_000_000

    def stamps() -> set[int]:
        return {s.header.stamp.sec * 10**9 + s.header.stamp.nanosec for s in states}

    # This test's own subscription may get the last state a little after the learner did.
    ros_client.wait_until(
        lambda: 12 * 20_000_000 in stamps(), what="the last state on the test's subscription"
    )
    assert stamps() == {k * 20_000_000 for k in range(13)}
    assert worlds.rejected == 0 and "rejected" not in sim.output()

    worlds.reset()
    ref.reset()
    assert_same_state(worlds, ref)
    np.testing.assert_array_equal(
        worlds.observation(), TASK.observation(worlds.positions, worlds.velocities, worlds.inputs)
    )
    for k in range(3):
        worlds.step(targets(k))
        ref.command_all(targets(k))
        ref.step()
    assert_same_state(worlds, ref)  # episodes restarted: 3 steps into the new one, no truncation yet
    assert sim.alive()


def test_set_randomization_enabled_sets_the_simulators_parameter(start_node, ros_client):
    start_node("sim_bridge_sim", "simulator", randomization=SPEC, lockstep_resend_s=RESEND_S, **SETTINGS)
    worlds = connect(ros_client)

    def enabled() -> bool:
        request = GetParameters.Request(names=["randomization_enabled"])
        return ros_client.call(GetParameters, "/simulator/get_parameters", request).values[0].bool_value

    worlds.observation()
    assert enabled()
    worlds.set_randomization_enabled(False)
    assert not enabled()
    worlds.step(targets(0))
    worlds.set_randomization_enabled(True)
    assert enabled()
    worlds.step(targets(1))
    assert worlds.time_ns == 2 * 20_000_000


def test_no_simulator_is_a_clear_error(ros_client):
    worlds = connect(ros_client, timeout_s=0.5)
    with pytest.raises(RemoteError, match="no batch/joint_states for the first state"):
        worlds.observation()
    with pytest.raises(RemoteError, match=r"/simulator/(set_parameters|reset) is not available"):
        worlds.reset()
