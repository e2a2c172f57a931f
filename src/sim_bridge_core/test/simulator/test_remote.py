"""RemoteWorlds without ROS: pairing, dedupe, staleness and validation over an in-process Simulator."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
from sim_bridge_core.envs.batched import JobStoppedError
from sim_bridge_core.models import load_robot
from sim_bridge_core.simulator.core import CommandError, Simulator, SimulatorConfig
from sim_bridge_core.simulator.protocol import STEP_MODULUS
from sim_bridge_core.simulator.remote import RemoteError, RemoteWorlds
from sim_bridge_core.simulator.wire import JointStateEncoder, MultiArrayEncoder
from sim_bridge_core.tasks import make_task

CONFIG = SimulatorConfig(num_envs=3, task="reach", episode_length_s=0.1, seed=7, mode="lockstep")


class Loopback:
    """A Simulator behind RemoteWorlds' callables, delivering its messages synchronously."""

    def __init__(self, config: SimulatorConfig = CONFIG, timeout_s: float = 2.0) -> None:
        self.sim = Simulator(config)
        self.deliver = True  # False: commands are lost on the way
        self.commands: list[bytes] = []
        self.errors: list[tuple[str, str]] = []
        self.randomization: list[bool] = []
        self.worlds = RemoteWorlds(
            make_task(config.task, load_robot(config.model)),
            config.num_envs,
            config.control_dt,
            config.episode_length_s,
            send=self.send,
            reset=self.reset,
            set_randomization_enabled=self.randomization.append,
            timeout_s=timeout_s,
            on_error=lambda topic, reason: self.errors.append((topic, reason)),
        )

    def publish(self, task_first: bool = False) -> None:
        messages = [
            (self.worlds.on_joint_states, self.sim.batch_joint_states()),
            (self.worlds.on_task, self.sim.task_signals()),
        ]
        for callback, data in reversed(messages) if task_first else messages:
            callback(data)

    def send(self, data: bytes) -> None:
        self.commands.append(data)
        if not self.deliver:
            return
        try:
            self.sim.apply_batch_command(data, expected_stamp_ns=self.sim.time_ns)
        except CommandError as exc:
            assert exc.stale, exc
            return
        self.sim.step()
        self.publish()

    def reset(self, stagger: bool) -> None:
        self.sim.config = dataclasses.replace(self.sim.config, stagger_episodes=stagger)
        self.sim.reset()
        self.publish()


def reference(config: SimulatorConfig = CONFIG) -> Simulator:
    return Simulator(config)


def targets(sim: Simulator, k: int) -> np.ndarray:
    phase = np.arange(sim.config.num_envs)[:, None] + np.arange(sim.robot.num_joints) + k
    return sim.robot.clamp(sim.robot.home + 0.3 * np.sin(phase))


def test_observation_and_steps_match_an_in_process_simulator():
    loop, ref = Loopback(), reference()
    loop.publish()
    worlds = loop.worlds
    assert worlds.episode_steps == 5 and worlds.task_fields[-2:] == ("success", "step")
    for k in range(7):
        expected = ref.env.task.observation(
            ref.env.measured_positions(), ref.env.measured_velocities(), ref.env.inputs
        )
        np.testing.assert_allclose(worlds.observation(), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(worlds.positions, ref.env.measured_positions())
        np.testing.assert_array_equal(worlds.efforts, ref.env.backend.joint_efforts())
        result = worlds.step(targets(ref, k))
        ref.command_all(targets(ref, k))
        expected_result = ref.step()
        np.testing.assert_allclose(result.reward, expected_result.reward, rtol=1e-6)
        np.testing.assert_array_equal(result.truncated, expected_result.truncated)
        np.testing.assert_array_equal(result.success, expected_result.success)
        assert result.final_observations.shape == (0, worlds.task.observation_size)
        assert worlds.time_ns == ref.time_ns == (k + 1) * 20_000_000
    assert result.truncated.dtype == bool and not result.truncated.any()
    np.testing.assert_allclose(worlds.inputs, ref.env.inputs, rtol=1e-6)
    assert loop.errors == []


def test_truncation_arrives_with_the_reset_worlds_new_inputs():
    loop = Loopback()
    loop.publish()
    goals = loop.worlds.inputs.copy()
    for k in range(5):
        result = loop.worlds.step(targets(loop.sim, k))
    assert result.truncated.all() and result.done.all()
    np.testing.assert_allclose(loop.worlds.inputs, loop.sim.env.inputs, rtol=1e-6)
    assert not np.allclose(loop.worlds.inputs, goals)


def test_task_first_and_resends_pair_once_and_stale_ones_are_ignored():
    loop = Loopback()
    loop.publish(task_first=True)
    first = loop.worlds.observation().copy()
    loop.publish()  # a resend of step 0
    np.testing.assert_array_equal(loop.worlds.observation(), first)
    old_state, old_task = loop.sim.batch_joint_states(), loop.sim.task_signals()
    loop.worlds.step(targets(loop.sim, 0))
    assert len(loop.commands) == 1 and loop.worlds.time_ns == 20_000_000
    after = loop.worlds.observation().copy()
    loop.worlds.on_task(old_task)  # a resend of step 0 that was still in flight
    loop.worlds.on_joint_states(old_state)
    assert loop.worlds.time_ns == 20_000_000
    np.testing.assert_array_equal(loop.worlds.observation(), after)
    loop.worlds.step(targets(loop.sim, 1))
    assert len(loop.commands) == 2 and loop.sim.time_ns == 40_000_000 and loop.errors == []


def test_a_lost_command_is_sent_again_when_the_state_is_resent():
    loop = Loopback()
    loop.publish()
    loop.deliver = False
    resend = threading.Timer(0.2, loop.publish)  # the simulator's lockstep resend
    resend.start()

    def deliver_again() -> None:
        loop.deliver = True

    threading.Timer(0.1, deliver_again).start()
    result = loop.worlds.step(targets(loop.sim, 0))
    resend.join()
    assert len(loop.commands) == 2 and loop.sim.time_ns == 20_000_000
    assert result.reward.shape == (3,)


def test_step_numbers_wrap_modulo_2_pow_24():
    loop = Loopback()
    loop.sim.env.steps = STEP_MODULUS - 1
    loop.publish()
    loop.worlds.step(targets(loop.sim, 0))
    assert loop.worlds.time_ns == STEP_MODULUS * 20_000_000
    loop.worlds.step(targets(loop.sim, 1))
    assert loop.worlds.time_ns == (STEP_MODULUS + 1) * 20_000_000


def test_reset_waits_for_the_new_state_at_the_same_step():
    loop, ref = Loopback(), reference()
    loop.publish()
    loop.worlds.step(targets(loop.sim, 0))
    ref.command_all(targets(ref, 0))
    ref.step()
    loop.worlds.reset()
    ref.reset()
    assert loop.worlds.time_ns == 20_000_000
    np.testing.assert_array_equal(loop.worlds.positions, ref.env.measured_positions())
    np.testing.assert_allclose(loop.worlds.inputs, ref.env.inputs, rtol=1e-6)
    loop.worlds.set_randomization_enabled(False)
    assert loop.randomization == [False]


def test_reset_ignores_a_resend_that_arrived_before_the_call():
    loop = Loopback()
    loop.publish()
    stale = (loop.sim.batch_joint_states(), loop.sim.task_signals())
    calls = []

    def reset(stagger: bool) -> None:  # the new state comes late, from another thread
        calls.append(1)
        loop.sim.reset()
        threading.Timer(0.2, loop.publish).start()

    loop.worlds._reset_call = reset
    before = loop.worlds.positions.copy()
    loop.worlds.on_joint_states(stale[0])
    loop.worlds.on_task(stale[1])
    loop.worlds.reset()
    assert calls and not np.array_equal(loop.worlds.positions, before)
    np.testing.assert_array_equal(loop.worlds.positions, loop.sim.env.measured_positions())


def bad_messages(sim: Simulator) -> list[tuple[str, bytes]]:
    n, joints = sim.config.num_envs, sim.robot.joint_names
    names = [f"env_{i}/{j}" for i in range(n) for j in joints]
    good = np.zeros((n, 7))
    rows = np.zeros((n, len(sim.task_fields)))
    labels = ("env", ",".join(sim.task_fields))
    nan = good.copy()
    nan[1, 2] = np.nan
    half_step = rows.copy()
    half_step[:, -1] = 0.5
    return [
        ("batch/joint_states", b"\x00\x01\x00\x00\x01"),  # truncated
        ("batch/joint_states", JointStateEncoder(names[:-7]).encode(0, good[:-1], good[:-1], good[:-1])),
        ("batch/joint_states", JointStateEncoder([*names[:-1], "env_2/elbow"]).encode(0, good, good, good)),
        ("batch/joint_states", JointStateEncoder(names).encode(0, nan, good, good)),
        (
            "batch/task",
            MultiArrayEncoder(np.float32, ("env", "reward,terminated,truncated")).encode(rows[:, :3]),
        ),
        ("batch/task", MultiArrayEncoder(np.float32, labels).encode(rows[:-1])),
        ("batch/task", MultiArrayEncoder(np.float32, labels).encode(np.where(rows == 0, np.inf, rows))),
        ("batch/task", MultiArrayEncoder(np.float32, labels).encode(half_step)),
    ]


def test_malformed_messages_are_reported_and_change_nothing():
    loop = Loopback()
    loop.publish()
    before = (loop.worlds.time_ns, loop.worlds.observation().copy())
    for topic, data in bad_messages(loop.sim):
        count = len(loop.errors)
        (loop.worlds.on_joint_states if topic == "batch/joint_states" else loop.worlds.on_task)(data)
        assert len(loop.errors) == count + 1 and loop.errors[-1][0] == topic, (topic, loop.errors[-1:])
    assert loop.worlds.rejected == len(bad_messages(loop.sim))
    assert (loop.worlds.time_ns, loop.worlds.observation().tolist()) == (before[0], before[1].tolist())
    assert "names" in loop.errors[1][1] and "NaN" in loop.errors[3][1] and "labels" in loop.errors[4][1]


def test_silence_times_out_naming_the_topic():
    loop = Loopback(timeout_s=0.2)
    with pytest.raises(RemoteError, match="no batch/joint_states for the first state"):
        loop.worlds.observation()
    loop.worlds.on_joint_states(loop.sim.batch_joint_states())
    with pytest.raises(RemoteError, match="no batch/task for the first state"):
        loop.worlds.observation()
    loop.worlds.on_task(loop.sim.task_signals())
    loop.deliver = False
    with pytest.raises(RemoteError, match=r"no batch/joint_states for step 1 within 0\.2 s"):
        loop.worlds.step(targets(loop.sim, 0))
    with pytest.raises(ValueError, match="shape"):
        loop.worlds.step(np.zeros((2, 7)))


def test_a_staggered_reset_spreads_the_episode_ends():
    loop = Loopback()
    loop.publish()
    loop.worlds.reset(stagger=True)
    assert loop.sim.config.stagger_episodes
    ended = [loop.worlds.step(targets(loop.sim, k)).truncated for k in range(loop.worlds.episode_steps)]
    per_step = np.sum(ended, axis=1)
    assert per_step.sum() == loop.worlds.num_envs  # each world's episode ends once...
    assert per_step.max() < loop.worlds.num_envs  # ...but not all at the same step


def test_interrupt_cuts_short_a_step_the_simulator_never_answers():
    loop = Loopback(timeout_s=60.0)
    loop.publish()
    loop.deliver = False  # the simulator stopped (Ctrl-C on the launch): no answer will come
    threading.Timer(0.2, loop.worlds.interrupt).start()
    start = time.monotonic()
    with pytest.raises(JobStoppedError):
        loop.worlds.step(targets(loop.sim, 0))
    assert time.monotonic() - start < 5.0
    with pytest.raises(JobStoppedError):  # and every later wait
        loop.worlds.step(targets(loop.sim, 0))
