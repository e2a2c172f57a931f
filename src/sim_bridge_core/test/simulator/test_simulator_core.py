"""Simulator logic without ROS: batched commands, trajectory goals, messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sim_bridge_core.config import ConfigError
from sim_bridge_core.simulator.core import CommandError, Simulator, SimulatorConfig
from sim_bridge_core.simulator.protocol import STEP_MODULUS, control_step
from sim_bridge_core.simulator.wire import (
    JointTrajectoryEncoder,
    decode_joint_state,
    decode_multi_array,
)
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint


@pytest.fixture
def sim() -> Simulator:
    return Simulator(SimulatorConfig(num_envs=3, task="reach", mirror_envs=[0, 2], mode="lockstep"))


def batch_names(sim: Simulator) -> list[str]:
    return [f"env_{i}/{j}" for i in range(sim.config.num_envs) for j in sim.robot.joint_names]


def test_batch_command_sets_every_world(sim):
    targets = np.tile(sim.robot.home + 0.1, (3, 1))
    data = JointTrajectoryEncoder(batch_names(sim)).encode(sim.time_ns, targets)
    assert sim.apply_batch_command(data, expected_stamp_ns=0) == 0
    np.testing.assert_array_equal(sim.targets, targets)
    sim.step()
    state = decode_joint_state(sim.batch_joint_states())
    assert state.stamp_ns == 20_000_000 and state.names == tuple(batch_names(sim))
    assert state.position.shape == (21,)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("stale", "pending state"),
        ("short", "expected 21 positions"),
        ("nan", "NaN or inf"),
        ("names", "joint_names must be the names of batch/joint_states"),
        ("garbage", "malformed"),
    ],
)
def test_bad_batch_commands_change_nothing(sim, case, message):
    names = batch_names(sim)
    good = np.tile(sim.robot.home + 0.1, (3, 1))
    data = {
        "stale": lambda: JointTrajectoryEncoder(names).encode(5, good),
        "short": lambda: serialize_message(
            JointTrajectory(
                joint_names=names, points=[JointTrajectoryPoint(positions=list(good.ravel()[:-1]))]
            )
        ),
        "nan": lambda: JointTrajectoryEncoder(names).encode(0, np.where(good == good[0, 0], np.nan, good)),
        "names": lambda: JointTrajectoryEncoder(names[::-1]).encode(0, good),
        "garbage": lambda: b"\x00\x01\x00\x00\x07",
    }[case]()
    before = sim.targets.copy()
    with pytest.raises(CommandError, match=message) as error:
        sim.apply_batch_command(data, expected_stamp_ns=0)
    assert error.value.stale == (case == "stale")
    np.testing.assert_array_equal(sim.targets, before)


def test_out_of_range_batch_targets_are_clamped(sim):
    far = np.tile(sim.robot.upper + 1.0, (3, 1))
    sim.apply_batch_command(JointTrajectoryEncoder(batch_names(sim)).encode(0, far))
    np.testing.assert_array_equal(sim.targets, np.tile(sim.robot.upper, (3, 1)))


def test_task_signals_layout_and_autoreset_targets():
    sim = Simulator(SimulatorConfig(num_envs=2, task="reach", episode_length_s=0.04))
    sim.command_all(np.tile(sim.robot.home + 0.2, (2, 1)))
    sim.step()
    result = sim.step()
    assert result.truncated.all()
    # Reset worlds hold their new initial pose rather than jumping to the old command.
    np.testing.assert_allclose(sim.targets, sim.env.backend.joint_positions())
    labels, signals = decode_multi_array(sim.task_signals(), np.float32)
    assert labels == ("env", "reward,terminated,truncated,goal_x,goal_y,goal_z,success,step")
    assert signals.shape == (2, 8) and signals[:, 2].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(signals[:, 3:6], sim.env.inputs, rtol=1e-6)
    np.testing.assert_array_equal(signals[:, 6], result.success)
    assert signals[:, 7].tolist() == [2.0, 2.0]  # the step these signals belong to


def test_task_step_field_pairs_with_the_state_stamp_and_wraps():
    sim = Simulator(SimulatorConfig(num_envs=2, task="reach"))
    _, before = decode_multi_array(sim.task_signals(), np.float32)
    assert before[:, 6:].tolist() == [[0.0, 0.0]] * 2  # no step yet: success 0, step 0
    for _ in range(3):
        sim.step()
    stamp = decode_joint_state(sim.batch_joint_states()).stamp_ns
    _, signals = decode_multi_array(sim.task_signals(), np.float32)
    assert signals[:, 7].tolist() == [control_step(stamp, 0.02)] * 2 == [3.0, 3.0]
    last = STEP_MODULUS - 1
    assert control_step(last * 20_000_000, 0.02) == last
    assert control_step((last + 1) * 20_000_000, 0.02) == 0
    assert float(np.float32(last)) == last  # exact in float32


def test_mirrored_joint_states_are_the_mirrored_worlds(sim):
    sim.step()
    mirrors = [decode_joint_state(data) for data in sim.joint_states()]
    positions = sim.env.backend.joint_positions()
    assert [m.names for m in mirrors] == [sim.robot.joint_names] * 2
    np.testing.assert_array_equal(mirrors[1].position, positions[2])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"model": "/nope.xml"}, "simulator.model"),
        (
            {"model": "pendulum", "task": "reach"},
            r"simulator\.tasks\.reach\.ee_site: model 'pendulum' has no site",
        ),
        ({"model": "pendulum", "task": "arm"}, "simulator.task"),
        ({"control_dt": 0.003}, "simulator.control_dt"),
        ({"num_envs": 2, "mirror_envs": [3]}, "simulator.mirror_envs"),
    ],
)
def test_bad_configs_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        Simulator(SimulatorConfig(**overrides))


DEFAULT_SPEC = str(Path(__file__).resolve().parents[4] / "config" / "randomization" / "default.yaml")


def test_randomization_applied_is_published_only_when_it_changes():
    sim = Simulator(SimulatorConfig(num_envs=4, task="reach", randomization=DEFAULT_SPEC))
    labels, values = decode_multi_array(sim.randomization_applied(), np.float64)
    assert labels[0] == "env" and "body_mass/link3" in labels[1].split(",")
    assert values.shape == (4, len(labels[1].split(",")))
    assert sim.randomization_applied() is None  # nothing new
    assert sim.randomize()
    _, resampled = decode_multi_array(sim.randomization_applied(), np.float64)
    assert not np.array_equal(values, resampled)


def test_refused_spec_keeps_the_previous_randomization():
    sim = Simulator(SimulatorConfig(num_envs=2, task="reach", randomization=DEFAULT_SPEC))
    mass = sim.env.backend.model_field("body_mass").copy()
    with pytest.raises(ConfigError, match=r"randomization\.body_mass"):
        sim.set_randomization("body_mass: {targets: [no_such_link], low: 0.9, high: 1.1}\n", True)
    np.testing.assert_array_equal(sim.env.backend.model_field("body_mass"), mass)
    assert sim.env.randomizer is not None and sim.env.randomizer.enabled


def test_switching_randomization_off_restores_nominal_physics():
    nominal = Simulator(SimulatorConfig(num_envs=2, task="reach")).env.backend.model_field("body_mass").copy()
    sim = Simulator(SimulatorConfig(num_envs=2, task="reach", randomization=DEFAULT_SPEC))
    assert not np.array_equal(sim.env.backend.model_field("body_mass"), nominal)
    sim.set_randomization(DEFAULT_SPEC, False)
    np.testing.assert_array_equal(sim.env.backend.model_field("body_mass"), nominal)
    sim.set_randomization("", True)
    np.testing.assert_array_equal(sim.env.backend.model_field("body_mass"), nominal)
    labels, values = decode_multi_array(sim.randomization_applied(), np.float64)
    assert labels == ("env", "") and values.shape == (2, 0)


def test_a_spec_that_switches_itself_off_stays_off_when_parameters_change():
    switched_off = "enabled: false\nbody_mass: {targets: [link3], low: 0.5, high: 2.0}\n"
    sim = Simulator(SimulatorConfig(num_envs=2, task="reach", randomization=switched_off))
    nominal = sim.env.backend.model_field("body_mass").copy()
    assert not sim.env.randomizer.enabled
    sim.set_randomization(switched_off, True)  # what the node does on any parameter change
    assert not sim.env.randomizer.enabled
    sim.randomize()
    np.testing.assert_array_equal(sim.env.backend.model_field("body_mass"), nominal)


def test_a_randomization_that_is_not_a_mapping_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^simulator\.randomization: must be a mapping"):
        Simulator(SimulatorConfig(num_envs=1, task="reach", randomization="- a\n- b\n"))


def test_one_world_speaks_the_drivers_joint_names():
    """A robot config with joint_prefix (or joint_name_map) is simulated as its drivers name its
    joints, so a deploy bound to it runs against the simulator before the hardware."""
    sim = Simulator(SimulatorConfig(num_envs=1, joint_prefix="fr3_"))
    assert decode_joint_state(sim.joint_states()[0]).names[0] == "fr3_joint1"
    names = [f"fr3_joint{i}" for i in range(1, 8)]
    command = JointTrajectory(joint_names=names, points=[JointTrajectoryPoint(positions=[0.1] * 7)])
    command.points[0].time_from_start.nanosec = 20_000_000
    goal = sim.parse_command(serialize_message(command))
    np.testing.assert_allclose(goal.positions[-1][:3], 0.1)  # by name, in the model's joints
    with pytest.raises(CommandError, match="joint1"):
        command.joint_names = [f"joint{i}" for i in range(1, 8)]
        sim.parse_command(serialize_message(command))
    mapped = Simulator(SimulatorConfig(num_envs=1, joint_name_map="{a1: joint1}", joint_prefix=""))
    assert decode_joint_state(mapped.joint_states()[0]).names[:2] == ("a1", "joint2")
