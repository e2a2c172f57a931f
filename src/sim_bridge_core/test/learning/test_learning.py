"""PPO core: normalizer, GAE, learning, checkpoints, export, resume, reach observation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.contract import PolicyContract
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.envs.gym import make_batched_env
from sim_bridge_core.learning import (
    ActorCritic,
    CheckpointError,
    EmpiricalNormalizer,
    PpoConfig,
    PpoLearner,
    RolloutStorage,
    evaluate,
    export_policy,
    load_checkpoint,
    plot_training_curve,
    save_checkpoint,
    train,
    training_metadata,
)
from sim_bridge_core.simulator.core import Simulator, SimulatorConfig
from sim_bridge_core.tasks import ReachTask
from sim_bridge_core.tasks.base import TaskOutcome

SMALL = PpoConfig(num_steps=8, num_minibatches=2, actor_hidden=[32, 32], critic_hidden=[32, 32], threads=1)


def test_normalizer_tracks_mean_and_variance_of_everything_seen():
    rng = np.random.default_rng(0)
    batches = [rng.normal([1.0, -3.0, 10.0], [0.5, 2.0, 4.0], (size, 3)) for size in (5, 300, 41)]
    normalizer = EmpiricalNormalizer(3, epsilon=0.0)
    for batch in batches:
        normalizer.update(torch.tensor(batch, dtype=torch.float32))
    seen = np.concatenate(batches)
    np.testing.assert_allclose(normalizer.mean.numpy(), seen.mean(0), rtol=1e-5)
    np.testing.assert_allclose(normalizer.var.numpy(), seen.var(0), rtol=1e-4)
    assert normalizer.count.item() == len(seen)
    normalized = normalizer(torch.tensor(seen, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(normalized.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalized.std(0), 1.0, rtol=1e-4)
    assert {"mean", "var", "count"} <= set(normalizer.state_dict())


def test_gae_against_a_hand_computed_rollout():
    storage = RolloutStorage(
        num_steps=3, num_envs=2, observation_size=1, action_size=1, device=torch.device("cpu")
    )
    # World 0 ends an episode at step 1; world 1 runs through and is bootstrapped with the last value.
    storage.rewards[:] = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]])
    storage.values[:] = torch.tensor([[0.5, 0.0], [1.0, 0.0], [1.5, 0.0]])
    storage.dones[:] = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    storage.compute_returns(torch.tensor([2.0, 1.0]), gamma=0.9, lam=0.5)
    # World 0: d2 = 3 + 0.9*2 - 1.5 = 3.3; d1 = 2 - 1 = 1 (episode ends); d0 = 1 + 0.9*1 - 0.5 = 1.4,
    # A0 = 1.4 + 0.45*1 = 1.85. World 1: A2 = 1 + 0.9*1 = 1.9, A1 = 0.45*1.9, A0 = 0.45*0.855.
    expected = torch.tensor([[1.85, 0.38475], [1.0, 0.855], [3.3, 1.9]])
    torch.testing.assert_close(storage.advantages, expected)
    torch.testing.assert_close(storage.returns, expected + storage.values)


def test_timeout_is_bootstrapped_with_the_stored_value_and_termination_is_not():
    learner = PpoLearner(3, 2, num_envs=3, config=SMALL)
    learner.act(np.ones((3, 3), dtype=np.float32))
    values = learner.storage.values[0].clone()
    learner.observe(np.array([1.0, 1.0, 1.0]), np.array([False, True, False]), np.array([True, False, False]))
    gamma = SMALL.gamma
    torch.testing.assert_close(
        learner.storage.rewards[0], torch.stack([1 + gamma * values[0], *torch.ones(2)])
    )
    assert learner.storage.dones[0].tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(RuntimeError, match="without act"):
        learner.observe(np.ones(3), np.zeros(3, bool), np.zeros(3, bool))


def test_ppo_learns_a_contextual_bandit():
    """Reward -|action - target(obs)|^2: the deterministic policy must move onto the target."""
    rng = np.random.default_rng(0)
    config = PpoConfig(
        num_steps=4, num_epochs=5, num_minibatches=2, actor_hidden=[32], critic_hidden=[32], threads=1
    )
    learner = PpoLearner(2, 2, num_envs=256, config=config)
    probe = rng.uniform(-1, 1, (512, 2)).astype(np.float32)

    def error() -> float:
        with torch.no_grad():
            actions = learner.model.act_inference(torch.from_numpy(probe)).numpy()
        return float(np.square(actions - 0.5 * probe[:, ::-1]).sum(1).mean())

    before = error()
    observations = rng.uniform(-1, 1, (256, 2)).astype(np.float32)
    for _ in range(40):
        while not learner.ready:
            actions = learner.act(observations)
            reward = -np.square(actions - 0.5 * observations[:, ::-1]).sum(1)
            learner.observe(reward, np.ones(256, bool), np.zeros(256, bool))
            observations = rng.uniform(-1, 1, (256, 2)).astype(np.float32)
        stats = learner.update(observations)
    assert error() < 0.2 * before, f"error {before:.3f} -> {error():.3f}"
    assert learner.iteration == 40 and learner.env_steps == 40 * 4 * 256
    assert np.isfinite(list(stats.values())).all()


def test_fused_training_raises_the_pendulum_return(tmp_path):
    env = make_batched_env("pendulum", "pendulum", num_envs=128, episode_length_s=1.0, seed=0)
    config = PpoConfig(num_steps=16, actor_hidden=[64, 64], critic_hidden=[64, 64], threads=1)
    # Episodes in step: every record with episodes holds whole episodes of all 128 worlds.
    result = train(env, config, max_env_steps=150_000, progress=False, stagger_episodes=False)
    returns = [record["mean_return"] for record in result.history if record["episodes"]]
    first, last = returns[0], np.mean(returns[-2:])
    assert last > first + 0.4 * abs(first), f"mean return {first:.1f} -> {last:.1f}"
    assert result.env_steps >= 150_000 and result.env_steps_per_s > 0
    png = plot_training_curve(result.history, tmp_path / "curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


class _HomeGoalReach(ReachTask):
    """Goals exactly where the hand rests at home: holding home succeeds, anything else fails."""

    def sample_initial(self, rng, count):
        home = np.tile(self.robot.home, (1, 1))
        goal = self.kinematics(home)
        return np.tile(self.robot.home, (count, 1)), np.repeat(goal, count, axis=0)


@pytest.mark.parametrize(("bias", "expected"), [(0.0, 1.0), (0.8, 0.0)])
def test_evaluate_counts_success_at_episode_end(bias, expected):
    env = make_batched_env(num_envs=16, episode_length_s=1.0, seed=0)
    env.task = _HomeGoalReach(env.backend.robot)
    model = ActorCritic(env.task.observation_size, 7)
    with torch.no_grad():
        model.actor[-1].weight.zero_()
        model.actor[-1].bias.fill_(bias)
    assert evaluate(env, model, episodes=40) == expected


class _EvenWorldsFailAtOnce(ReachTask):
    """Even worlds fail at every first step; odd worlds last their episode and succeed."""

    def outcome(self, backend, inputs, history):
        odd = np.arange(backend.num_envs) % 2 == 1
        return TaskOutcome(reward=np.zeros(backend.num_envs), terminated=~odd, success=odd)


@pytest.mark.parametrize(("episodes", "expected"), [(16, 0.5), (40, 0.5), (5, 0.4)])
def test_evaluate_does_not_favour_the_episodes_that_end_first(episodes, expected):
    """Half the worlds fail at once, again and again, while the others run to success: counting
    the first episodes to end would report 0 %."""
    env = make_batched_env(num_envs=16, episode_length_s=0.2, seed=0)
    env.task = _EvenWorldsFailAtOnce(env.backend.robot)
    model = ActorCritic(env.task.observation_size, 7)
    assert evaluate(env, model, episodes=episodes) == pytest.approx(expected)


def test_reach_observation_holds_the_forward_kinematics_of_the_joints():
    env = make_batched_env(num_envs=64, seed=3)
    rng = np.random.default_rng(0)
    for _ in range(10):
        env.step(env.task.action_to_targets(rng.uniform(-1, 1, (64, 7))))
    observation = env.observation()
    ee = env.backend.site_positions(env.task.ee_site)
    assert observation.shape == (64, env.task.observation_size) == (64, 23)
    np.testing.assert_allclose(observation[:, 17:20], ee, atol=1e-5)
    np.testing.assert_allclose(observation[:, 20:23], env.inputs - ee, atol=1e-5)
    # One robot (deployment) takes MuJoCo's kinematics instead of the batched numpy: the same answer.
    positions = env.measured_positions()
    one_by_one = np.concatenate([env.task.kinematics(positions[i : i + 1]) for i in range(64)])
    np.testing.assert_allclose(one_by_one, env.task.kinematics(positions), atol=1e-12)


def _trained_learner() -> PpoLearner:
    learner = PpoLearner(5, 2, num_envs=4, config=SMALL)
    rng = np.random.default_rng(1)
    with torch.no_grad():
        learner.model.normalizer.update(torch.tensor(rng.normal(3.0, 2.0, (100, 5)), dtype=torch.float32))
        for parameter in learner.model.actor.parameters():
            parameter.add_(torch.tensor(rng.normal(0, 0.3, tuple(parameter.shape)), dtype=torch.float32))
    return learner


METADATA = {
    "model": "arm2",
    "joint_names": ["a", "b"],
    "observation_size": 5,
    "action_size": 2,
    "task": "reach",
    "iteration": 3,
    "env_steps": 96,
    "env_rng": np.random.default_rng(5).bit_generator.state,
}


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    learner = _trained_learner()
    learner.iteration, learner.env_steps, learner.learning_rate = 3, 96, 4e-4
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", learner, SMALL, METADATA)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temporary left behind
    raw = torch.load(path, weights_only=True)
    assert raw["metadata"]["joint_names"] == ["a", "b"]

    checkpoint = load_checkpoint(
        path, expect_joints=("a", "b"), expect_observation_size=5, expect_task="reach"
    )
    assert checkpoint.ppo_config() == SMALL and checkpoint.metadata["iteration"] == 3
    model = checkpoint.build_model()
    observations = torch.randn(16, 5)
    with torch.no_grad():
        torch.testing.assert_close(
            model.act_inference(observations), learner.model.act_inference(observations)
        )

    resumed = PpoLearner(5, 2, num_envs=4, config=SMALL)
    resumed.load_state_dict({"model": checkpoint.model_state, **checkpoint.learner_state})
    assert (resumed.iteration, resumed.env_steps, resumed.learning_rate) == (3, 96, 4e-4)
    assert resumed.optimizer.param_groups[0]["lr"] == 4e-4
    np.testing.assert_array_equal(resumed.act(np.ones((4, 5))), learner.act(np.ones((4, 5))))


@pytest.mark.parametrize(
    ("damage", "expect", "message"),
    [
        ("missing", {}, "does not exist"),
        ("garbage", {}, "is not a readable checkpoint"),
        ("truncated", {}, "is not a readable checkpoint"),
        ("foreign", {}, "is not a sim_bridge_policy/1 checkpoint"),
        (None, {"expect_joints": ["a", "c"]}, "trained for robot 'arm2' with joints"),
        (None, {"expect_observation_size": 7}, "expects observations of size 5, this task builds 7"),
        (None, {"expect_task": "pendulum"}, "trained for task 'reach', not 'pendulum'"),
    ],
)
def test_checkpoint_errors_are_one_line(tmp_path, damage, expect, message):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, _trained_learner().model, SMALL, METADATA)
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(path, **expect)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_bad_ppo_config_names_its_key():
    with pytest.raises(ConfigError, match=r"ppo\.num_epochs: must be >= 1"):
        PpoConfig.from_dict({"num_epochs": 0})
    with pytest.raises(ConfigError, match=r"ppo\.actor_hidden: must be >= 1"):
        PpoConfig.from_dict({"actor_hidden": [64, 0]})


CONTRACT = PolicyContract(
    model="arm2",
    model_path="/robots/arm2.xml",
    home="",
    sites={"tool": {"body": "link2", "pos": [0.0, 0.0, 0.1]}},
    task="reach",
    task_settings={"ee_site": "tool", "goal_low": [0.2, -0.2, 0.1], "goal_high": [0.5, 0.2, 0.5]},
    joint_names=("a", "b"),
    input_names=("goal_x",),
    observation=(("joint_position_minus_home", 2), ("joint_velocity", 2), ("goal_x", 1)),
    action_scale=0.5,
    action_offset=(0.1, -0.1),
    position_lower=(-1.0, -np.inf),
    position_upper=(1.0, np.inf),
    velocity_limits=(2.0, 3.0),
    max_position_step=0.0,
    control_dt=0.02,
    command_interface="position",
)


def test_exported_policies_match_act_inference_and_carry_the_contract(tmp_path):
    model = _trained_learner().model
    paths = export_policy(model, tmp_path / "export", CONTRACT)
    observations = torch.tensor(np.random.default_rng(2).normal(3.0, 2.0, (9, 5)), dtype=torch.float32)
    with torch.no_grad():
        expected = model.act_inference(observations).numpy()

    scripted = torch.jit.load(str(paths["torchscript"]))
    np.testing.assert_allclose(scripted(observations).detach().numpy(), expected, rtol=1e-5, atol=1e-6)

    graph = onnx.load(str(paths["onnx"]))
    onnx.checker.check_model(graph, full_check=True)
    (actions,) = ReferenceEvaluator(graph).run(None, {"observations": observations.numpy()})
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)
    assert model.act_inference(observations).abs().sum() > 0  # not a trivially zero policy

    # The contract travels in the ONNX file and beside it; unlimited limits are JSON null.
    props = {prop.key: prop.value for prop in graph.metadata_props}
    assert PolicyContract.from_json(props["sim_bridge_contract"], "onnx") == CONTRACT
    sidecar = json.loads(paths["contract"].read_text())
    assert sidecar["position_upper"] == [1.0, None] and sidecar["command_interface"] == "position"
    assert PolicyContract.from_dict(sidecar, "json") == CONTRACT


def test_an_export_replaces_every_file_or_none(tmp_path):
    model = _trained_learner().model
    directory = tmp_path / "export"
    first = export_policy(model, directory, CONTRACT)
    before = {key: path.read_bytes() for key, path in first.items()}

    # A contract that cannot be written fails the export: the previous files stay as they were.
    unwritable = dataclasses.replace(CONTRACT, task_settings={"goal": object()})
    with pytest.raises(TypeError):
        export_policy(model, directory, unwritable)
    assert {key: path.read_bytes() for key, path in first.items()} == before
    assert sorted(p.name for p in directory.iterdir()) == ["policy.json", "policy.onnx", "policy.pt"]

    # A new export replaces the ONNX file and policy.json together.
    renamed = dataclasses.replace(CONTRACT, control_dt=0.01)
    paths = export_policy(model, directory, renamed)
    props = {prop.key: prop.value for prop in onnx.load(str(paths["onnx"])).metadata_props}
    assert PolicyContract.from_json(props["sim_bridge_contract"], "onnx") == renamed
    assert PolicyContract.from_json(paths["contract"].read_text(), "json") == renamed
    assert sorted(p.name for p in directory.iterdir()) == ["policy.json", "policy.onnx", "policy.pt"]


def test_weights_with_nan_are_refused(tmp_path):
    learner = _trained_learner()
    with torch.no_grad():
        learner.model.actor[0].weight[0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "checkpoint.pt", learner.model, SMALL, METADATA)
    with pytest.raises(CheckpointError, match=r"weights contain NaN or inf \(actor\.0\.weight\)"):
        load_checkpoint(path).build_model()


def test_resume_continues_iterations_env_steps_and_optimizer(tmp_path):
    def env():
        return make_batched_env("pendulum", "pendulum", num_envs=32, episode_length_s=0.5, seed=0)

    path = tmp_path / "checkpoint.pt"
    first = train(
        env(), SMALL, max_env_steps=4 * 256, checkpoint_path=path, checkpoint_every=2, progress=False
    )
    assert [r["iteration"] for r in first.history] == [1, 2, 3, 4]
    saved = load_checkpoint(path, expect_joints=["hinge"], expect_task="pendulum")
    assert saved.metadata["iteration"] == 4 and saved.metadata["env_steps"] == 4 * 256
    assert saved.metadata == {
        **training_metadata(env(), first.learner),
        "history": first.history,
        "wall_s": pytest.approx(first.wall_s, abs=0.5),
        "worlds_random_state": {"reset": saved.metadata["worlds_random_state"]["reset"]},
    }

    second = train(env(), SMALL, max_env_steps=7 * 256, resume=path, checkpoint_path=path, progress=False)
    assert [r["iteration"] for r in second.history] == [1, 2, 3, 4, 5, 6, 7]  # the curve spans the resume
    assert second.env_steps == 7 * 256 and second.run_env_steps == 3 * 256
    assert second.wall_s > first.wall_s
    optimizer_steps = second.learner.optimizer.state_dict()["state"][0]["step"].item()
    assert optimizer_steps == 7 * SMALL.num_epochs * SMALL.num_minibatches
    assert load_checkpoint(path).metadata["iteration"] == 7


def _curriculum_env() -> BatchedEnv:
    spec = (
        "curriculum: {start_fraction: 0.3, steps: 100000}\n"
        "body_mass: {targets: [link3], low: 0.5, high: 1.5}\n"
    )
    return Simulator(SimulatorConfig(num_envs=16, task="reach", randomization=spec)).env


def test_resume_continues_the_randomization_curriculum_and_the_reset_draws(tmp_path):
    """A run resumed from its checkpoint goes on where its curriculum was, not back to its start."""
    path = tmp_path / "checkpoint.pt"
    first_env = _curriculum_env()
    train(first_env, SMALL, max_env_steps=3 * 8 * 16, checkpoint_path=path, progress=False)
    saved = load_checkpoint(path).metadata["worlds_random_state"]
    assert saved["randomizer"]["step_count"] == first_env.randomizer.step_count == 3 * 8
    resumed_env = _curriculum_env()
    train(resumed_env, SMALL, max_env_steps=4 * 8 * 16, resume=path, checkpoint_path=path, progress=False)
    assert resumed_env.randomizer.step_count == 4 * 8  # 24 before the resume, 8 after
    fresh = _curriculum_env()
    fresh.restore_random_state(saved)
    np.testing.assert_array_equal(fresh.rng.integers(0, 1 << 30, 4), first_env.rng.integers(0, 1 << 30, 4))


def test_fine_tuning_starts_at_the_configured_learning_rate_and_a_network_that_does_not_fit_is_one_line(
    tmp_path,
):
    path = tmp_path / "checkpoint.pt"
    env = make_batched_env("pendulum", "pendulum", num_envs=16, episode_length_s=0.5, seed=0)
    train(env, SMALL, max_env_steps=8 * 16, checkpoint_path=path, progress=False)
    slow = dataclasses.replace(SMALL, learning_rate=1e-5, schedule="fixed")
    tuned = train(env, slow, max_env_steps=8 * 16, resume=path, fine_tune=True, progress=False)
    assert tuned.learner.learning_rate == 1e-5
    assert tuned.learner.optimizer.param_groups[0]["lr"] == 1e-5
    wider = dataclasses.replace(SMALL, actor_hidden=[64, 64])
    with pytest.raises(CheckpointError, match=r"does not fit ppo\.actor_hidden \[64, 64\]") as error:
        train(env, wider, max_env_steps=8 * 16, resume=path, progress=False)
    assert "\n" not in str(error.value)


def test_more_minibatches_than_samples_is_refused_naming_the_key():
    env = make_batched_env("pendulum", "pendulum", num_envs=2, seed=0)
    many = dataclasses.replace(SMALL, num_steps=4, num_minibatches=16)
    with pytest.raises(ConfigError, match=r"^ppo\.num_minibatches: 16 is more than the 8 samples"):
        train(env, many, max_env_steps=100, progress=False)
