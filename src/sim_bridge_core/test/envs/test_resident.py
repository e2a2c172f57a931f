"""Device-resident worlds (MuJoCo Warp with ``resident=True``, here on Warp's CPU device) against
mujoco.batch: the same observations, rewards and terminations step by step, PPO learning the
pendulum alike, and a training loop that never copies the worlds' state to the host."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import warp as wp
from rosbags.highlevel import AnyReader
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.learning import PpoConfig, train
from sim_bridge_core.models import load_robot
from sim_bridge_core.randomization import Randomizer, load_spec
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.sim.backends.warp import WarpBackend
from sim_bridge_core.tasks import LocomotionTask, make_task

pytestmark = pytest.mark.warp

CONTROL_DT = 0.02
CONFIG = Path(__file__).resolve().parents[4] / "config"
QUADRUPED = str(Path(__file__).resolve().parents[1] / "models" / "quadruped.xml")
QUADRUPED_SETTINGS = {"feet": ["fl_foot", "fr_foot", "rl_foot", "rr_foot"], "nominal_height": 0.21}
CASES = {  # model, task settings, home keyframe, episode length (s)
    "pendulum": ("pendulum", {}, "", 1.0),
    "reach": ("arm7", {}, "", 1.0),
    "locomotion": (QUADRUPED, QUADRUPED_SETTINGS, "home", 1.0),
}
# Against the warp backend on host arrays (the same float32 physics): only the task's arithmetic
# differs, float32 on the device against float64 (measured: up to 1.2e-5 and 2.3e-6).
SAME_PHYSICS = {"observation": 1e-4, "reward": 1e-5}
# Against mujoco.batch (float64 physics): float32 rounding grows where a joint meets its limit
# (measured on reach: 0.028 rad/s in one world's velocities, 2.9e-5 in the reward), and Warp's
# IMU orientation is one physics step old (sim/sensors.py: 5e-3 in the quadruped's gravity term).
MUJOCO = {"observation": 0.1, "reward": 1e-3}


def make_env(name: str, num_envs: int, backend: str, episode_s: float | None = None) -> BatchedEnv:
    """The task on ``backend``: "cpu" (mujoco.batch), "warp" (host arrays) or "resident"."""
    model, settings, home, case_episode_s = CASES[name]
    episode_s = episode_s or case_episode_s
    robot = load_robot(model, home=home)
    if backend == "cpu":
        physics = CpuBackend(robot, num_envs, CONTROL_DT)
    else:
        physics = WarpBackend(robot, num_envs, CONTROL_DT, device="cpu", resident=backend == "resident")
    return BatchedEnv(physics, make_task(name, robot, settings), episode_s, seed=0)


def start_alike(reference: BatchedEnv, env: BatchedEnv) -> None:
    """``env``'s worlds at ``reference``'s initial poses and task inputs."""
    every = np.arange(env.num_envs)
    positions, inputs = reference.backend.joint_positions(), reference.inputs
    if env.resident:
        every, positions, inputs = (torch.as_tensor(a) for a in (every, positions, inputs))
    env.backend.reset(every, positions)
    env.commands.hold(every, env.backend.joint_positions())
    env.inputs[:] = inputs


@pytest.mark.parametrize("name", list(CASES))
def test_resident_worlds_step_as_host_worlds_do(name):
    """A whole episode under the same random actions: resident worlds against the same warp physics
    on host arrays, and against mujoco.batch."""
    host, warp, resident = (make_env(name, 6, backend) for backend in ("cpu", "warp", "resident"))
    start_alike(host, warp)
    start_alike(host, resident)
    references = ((warp, SAME_PHYSICS), (host, MUJOCO))
    task, rng = host.task, np.random.default_rng(3)
    for step in range(host.episode_steps):
        observed = resident.observation()
        assert isinstance(observed, torch.Tensor) and observed.dtype == torch.float32
        for reference, atol in references:
            expected = reference.observation()
            np.testing.assert_allclose(observed, expected, atol=atol["observation"], err_msg=f"step {step}")
        actions = rng.uniform(-0.5, 0.5, (host.num_envs, task.robot.num_joints))
        result = resident.step(task.action_to_targets(torch.as_tensor(actions, dtype=torch.float32)))
        assert isinstance(result.reward, torch.Tensor)
        for reference, atol in references:
            expected = reference.step(task.action_to_targets(actions))
            np.testing.assert_allclose(
                result.reward, expected.reward, atol=atol["reward"], err_msg=f"step {step}"
            )
            for field in ("terminated", "truncated", "success"):
                assert getattr(result, field).tolist() == getattr(expected, field).tolist(), (field, step)
    assert expected.truncated.all()  # the whole episode was compared, up to its reset


def test_a_reset_draws_on_the_device_and_starts_the_worlds_there():
    resident = make_env("reach", 4, "resident")
    before = resident.inputs.clone()
    resident.reset(torch.tensor([1, 2]))
    goals = resident.inputs
    assert goals.device == before.device and isinstance(goals, torch.Tensor)
    assert torch.equal(goals[[0, 3]], before[[0, 3]]) and not torch.equal(goals[[1, 2]], before[[1, 2]])
    task = resident.task
    low, high = (torch.tensor(bound, dtype=torch.float32) for bound in (task.goal_low, task.goal_high))
    assert ((goals >= low) & (goals <= high)).all()
    home = torch.tensor(task.robot.home, dtype=torch.float32)
    assert (resident.backend.joint_positions()[[1, 2]] - home).abs().max() <= 0.1 + 1e-6


@pytest.mark.parametrize("randomization", [None, "default.yaml"])
def test_ppo_on_resident_worlds_copies_nothing_to_the_host(monkeypatch, randomization):
    """Two whole iterations (rollouts and updates) on resident worlds, nominal or under the default
    randomization (every arm parameter, noise, delay and pushes), read no Warp array into numpy."""
    resident = make_env("reach", 8, "resident")
    if randomization is not None:
        spec = load_spec(CONFIG / "randomization" / randomization)
        resident.randomizer = Randomizer(spec, resident.backend)
    reads = []
    original = wp.array.numpy

    def counted(self):
        reads.append(self.shape)
        return original(self)

    monkeypatch.setattr(wp.array, "numpy", counted)
    config = PpoConfig(num_steps=8, actor_hidden=[32], critic_hidden=[32], threads=1)
    result = train(resident, config, max_env_steps=8 * 8 * 2, progress=False)
    assert result.env_steps == 128 and len(result.history) == 2
    assert reads == [], f"host copies of Warp arrays: {reads[:5]}"


def test_ppo_learns_the_pendulum_alike_on_resident_worlds_and_on_mujoco_batch():
    """The same PPO budget on each: the mean episode return rises alike (measured at 80k env steps:
    -151 -> -72 on mujoco.batch, -169 -> -70 resident)."""
    config = PpoConfig(num_steps=16, actor_hidden=[64, 64], critic_hidden=[64, 64], threads=1)
    returns = {}
    for backend in ("cpu", "resident"):
        worlds = make_env("pendulum", 128, backend, episode_s=2.0)
        result = train(worlds, config, max_env_steps=80_000, progress=False, stagger_episodes=False)
        curve = [record["mean_return"] for record in result.history if record["episodes"]]
        returns[backend] = (curve[0], float(np.mean(curve[-2:])))
    for first, last in returns.values():
        assert last > first + 0.4 * abs(first), returns
    learned = {backend: last for backend, (_, last) in returns.items()}
    assert abs(learned["cpu"] - learned["resident"]) <= 0.25 * abs(learned["cpu"]), returns


def test_a_training_job_on_warp_trains_on_resident_worlds_and_writes_every_output(tmp_path):
    """``bringup training backend:=warp randomization:=default`` as the job runs it: resident worlds
    (its log says so), a recorded bag of host copies with the randomization applied, the evaluation
    and the outputs."""
    from sim_bridge_core.deploy.policy import PolicyConfig
    from sim_bridge_core.jobs.training import TrainingJob, resident_worlds
    from sim_bridge_core.simulator.core import SimulatorConfig

    run, lines = tmp_path / "run", []
    policy = PolicyConfig(
        mode="train", output_dir=str(run), max_env_steps=2 * 8 * 16, eval_episodes=8, record=True
    )
    sim = SimulatorConfig(
        model="pendulum",
        task="pendulum",
        num_envs=16,
        backend="warp",
        device="cpu",
        mirror_envs=[0, 3],
        episode_length_s=1.0,
        randomization=str(CONFIG / "randomization" / "default.yaml"),
    )
    ppo = PpoConfig(num_steps=8, actor_hidden=[32], critic_hidden=[32], threads=1)
    summary = TrainingJob(policy, ppo, sim, progress=False, log=lines.append).run()
    assert "worlds, observations, rewards and resets stay on cpu" in lines, lines
    assert summary["env_steps"] == 2 * 8 * 16
    assert 0.0 <= summary["eval_success_rate_randomized"] <= 1.0
    for name in ("checkpoint.pt", "policy.onnx", "summary.json", "training_curve.png"):
        assert (run / name).stat().st_size > 0, name
    with AnyReader([run / "rollouts"]) as bag:
        topics = {c.topic: c for c in bag.connections}
        assert sum(1 for _ in bag.messages(connections=[topics["/env_3/joint_states"]])) == 2 * 8
        assert "/randomization/applied" in topics
    assert not resident_worlds(sim, "sac")
    assert not resident_worlds(dataclasses.replace(sim, backend="cpu"), "ppo")


# Every physical parameter kind the quadruped takes, each with one value (low == high), so that
# resident worlds and host-array worlds must agree step by step whatever their streams draw.
FIXED_SPEC = {
    "schedule": "reset",
    "geom_friction": {"targets": "*", "operation": "scale", "low": 0.7, "high": 0.7, "shared": True},
    "body_mass": {"targets": ["trunk"], "operation": "add", "low": 0.5, "high": 0.5},
    "actuator_strength": {"targets": "*", "operation": "scale", "low": 0.8, "high": 0.8},
    "dof_frictionloss": {"targets": "*", "operation": "scale", "low": 1.5, "high": 1.5},
    "action_delay_steps": {"operation": "abs", "low": 1, "high": 1},
    "joint_position_bias": {"targets": "*", "operation": "add", "low": 0.02, "high": 0.02},
    "imu_angular_velocity_bias": {"axes": "xyz", "operation": "add", "low": 0.05, "high": 0.05},
    "initial_joint_offset": {"targets": "*", "operation": "add", "low": 0.05, "high": 0.05},
}
# What varies every step or world, for the draws on the device.
RANDOM_SPEC = {
    "schedule": "reset",
    "body_mass": {"targets": ["trunk"], "operation": "scale", "low": 0.8, "high": 1.2},
    "action_delay_steps": {"operation": "abs", "low": 0, "high": 2},
    "action_noise": {"targets": "*", "operation": "add", "distribution": "gaussian", "low": -0.05,
                     "high": 0.05, "std": 0.02},
    "joint_velocity_noise": {"targets": "*", "operation": "add", "low": -0.5, "high": 0.5},
    "push_velocity": {"targets": ["trunk"], "operation": "add", "low": -0.5, "high": 0.5,
                      "interval_s": [0.1, 0.2]},
}


class FixedStart(LocomotionTask):
    """Every episode from home under one command: both sides reset alike whatever their streams."""

    def sample_initial(self, rng, count):
        return np.tile(self.robot.home, (count, 1)), np.tile([0.3, 0.0, 0.2], (count, 1))


def randomized(backend: str, spec: dict, num_envs: int = 4) -> BatchedEnv:
    env = make_env("locomotion", num_envs, backend)
    env.task = FixedStart(env.task.robot, env.task.settings)
    env.randomizer = Randomizer(load_spec({"randomization": spec}), env.backend)
    env.reset()
    return env


def test_randomized_resident_worlds_step_as_host_array_worlds_do():
    """The same fixed randomization (mass, friction, motor strength, delay, bias, offsets) on resident
    worlds and on the warp backend's host arrays: the same observations and rewards step by step."""
    warp, resident = randomized("warp", FIXED_SPEC), randomized("resident", FIXED_SPEC)
    masses = resident.randomizer.applied()[0]
    np.testing.assert_allclose(masses, warp.randomizer.applied()[0], atol=1e-6)
    trunk = resident.backend.robot.model.body("trunk").id
    assert isinstance(resident.backend.model_field("body_mass"), torch.Tensor)
    heavier = torch.tensor(resident.backend.robot.model.body_mass[trunk] + 0.5, dtype=torch.float32)
    assert torch.allclose(resident.backend.model_field("body_mass")[:, trunk], heavier)
    rng = np.random.default_rng(4)
    for step in range(30):
        observed = resident.observation()
        np.testing.assert_allclose(observed, warp.observation(), atol=1e-4, err_msg=f"step {step}")
        actions = rng.uniform(-0.5, 0.5, (4, resident.task.robot.num_joints))
        result = resident.step(resident.task.action_to_targets(torch.as_tensor(actions, dtype=torch.float32)))
        expected = warp.step(warp.task.action_to_targets(actions))
        np.testing.assert_allclose(result.reward, expected.reward, atol=1e-4, err_msg=f"step {step}")


def test_randomization_draws_on_the_device_every_world_its_own_within_its_ranges():
    resident = randomized("resident", RANDOM_SPEC, num_envs=64)
    randomizer = resident.randomizer
    assert all(stream.device == torch.device("cpu") for stream in randomizer._streams)
    values, names = randomizer.applied()
    masses = values[:, names.index("body_mass/trunk")]
    nominal = resident.backend.robot.model.body_mass[resident.backend.robot.model.body("trunk").id]
    assert (masses >= 0.8 * nominal - 1e-6).all() and (masses <= 1.2 * nominal + 1e-6).all()
    assert np.unique(masses).size == 64  # a draw per world
    delays = values[:, names.index("action_delay_steps")]
    assert set(np.unique(delays)) == {0.0, 1.0, 2.0}
    kicked, velocities, joints = False, [], resident.task.robot.num_joints
    for _ in range(20):
        velocities.append(resident.observation()[:, 6 + joints : 6 + 2 * joints].clone())  # measured
        resident.step(resident.task.action_to_targets(torch.zeros(64, joints)))
        kicks = randomizer.applied()[0][:, names.index("push_velocity_x/trunk")]
        kicked = kicked or bool(np.abs(kicks).max())
    assert kicked  # pushes every 0.1-0.2 s
    assert not torch.equal(velocities[-1], velocities[-2])
    state = randomizer.state()
    again = randomized("resident", RANDOM_SPEC, num_envs=64).randomizer
    again.restore(state)
    restored = again.state()
    assert restored["step_count"] == state["step_count"]
    assert all(torch.equal(a, b) for a, b in zip(restored["rng"], state["rng"], strict=True))
    randomizer.resample()
    again.resample()  # the same draws from here on
    drawn = [names.index("body_mass/trunk"), names.index("action_delay_steps")]
    np.testing.assert_array_equal(again.applied()[0][:, drawn], randomizer.applied()[0][:, drawn])
