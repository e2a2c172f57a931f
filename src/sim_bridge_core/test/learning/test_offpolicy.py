"""TD3 and SAC: n-step replay, learning the pendulum, checkpoints, resume and export."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from sim_bridge_core.config import ConfigError
from sim_bridge_core.envs.gym import make_batched_env
from sim_bridge_core.learning import (
    CheckpointError,
    DeterministicActor,
    NStepWindow,
    OffPolicyConfig,
    PpoConfig,
    ReplayBuffer,
    SquashedGaussianActor,
    export_policy,
    load_checkpoint,
    make_config,
    make_learner,
    save_checkpoint,
    train,
)

ALGORITHMS = ("td3", "sac")
# Small and quick: the tests check mechanics, except the learning test, which sets its own.
SMALL = OffPolicyConfig(
    steps_per_iteration=4,
    batch_size=64,
    buffer_size=4096,
    learning_starts=64,
    actor_hidden=[32, 32],
    critic_hidden=[32, 32],
    threads=1,
)


def _pendulum(num_envs: int, seed: int = 0):
    return make_batched_env("pendulum", "pendulum", num_envs=num_envs, episode_length_s=1.0, seed=seed)


def test_n_step_transitions_across_a_termination_and_a_timeout():
    """n = 3, gamma = 0.5. World 0 terminates at step 3, world 1 times out at step 2, world 2 runs on.
    Observations are 10 * world-number * step, rewards (world + 1) * (step + 1)."""
    window = NStepWindow(3, 0.5, 3, 1, 1, torch.device("cpu"))
    emitted = []
    for t in range(6):
        scale = torch.tensor([[10.0], [20.0], [30.0]])
        observations = scale * t
        rewards = torch.tensor([1.0, 2.0, 4.0]) * (t + 1)
        terminated = torch.tensor([t == 3, False, False])
        truncated = torch.tensor([False, t == 2, False])
        out = window.push(
            observations, observations / 10, rewards, terminated, truncated, observations + scale
        )
        emitted += [
            (t, obs, reward, next_obs, discount)
            for obs, reward, next_obs, discount in zip(
                out["observations"][:, 0].tolist(),
                out["rewards"].tolist(),
                out["next_observations"][:, 0].tolist(),
                out["discounts"].tolist(),
                strict=True,
            )
        ]
        torch.testing.assert_close(out["actions"], out["observations"] / 10)
    # (emitted at step, observation, n-step reward, bootstrap observation, discount)
    assert sorted(emitted) == sorted(
        [
            # World 0: full windows, then the termination flushes steps 1..3 with discount 0.
            (2, 0.0, 1 + 0.5 * 2 + 0.25 * 3, 30.0, 0.125),
            (3, 10.0, 2 + 0.5 * 3 + 0.25 * 4, 40.0, 0.0),
            (3, 20.0, 3 + 0.5 * 4, 40.0, 0.0),
            (3, 30.0, 4.0, 40.0, 0.0),
            # World 1 times out at step 2: steps 0 and 1 bootstrap from step 2's observation (40),
            # without step 2's reward; step 2 itself is dropped. Its next episode starts at step 3.
            (2, 0.0, 2 + 0.5 * 4, 40.0, 0.25),
            (2, 20.0, 4.0, 40.0, 0.5),
            (5, 60.0, 8 + 0.5 * 10 + 0.25 * 12, 120.0, 0.125),
            # World 2: one full window per step from step 2 on.
            (2, 0.0, 4 + 0.5 * 8 + 0.25 * 12, 90.0, 0.125),
            (3, 30.0, 8 + 0.5 * 12 + 0.25 * 16, 120.0, 0.125),
            (4, 60.0, 12 + 0.5 * 16 + 0.25 * 20, 150.0, 0.125),
            (5, 90.0, 16 + 0.5 * 20 + 0.25 * 24, 180.0, 0.125),
        ]
    )


def test_one_step_windows_emit_every_step_but_a_timeout():
    window = NStepWindow(1, 0.9, 2, 1, 1, torch.device("cpu"))
    out = window.push(
        torch.tensor([[1.0], [2.0]]),
        torch.zeros(2, 1),
        torch.tensor([3.0, 4.0]),
        torch.tensor([False, False]),
        torch.tensor([False, True]),
        torch.tensor([[5.0], [6.0]]),
    )
    assert out["observations"][:, 0].tolist() == [1.0]
    assert out["next_observations"][:, 0].tolist() == [5.0]
    torch.testing.assert_close(out["discounts"], torch.tensor([0.9]))


def test_replay_keeps_the_latest_transitions_and_samples_only_those():
    buffer = ReplayBuffer(5, 1, 1, torch.device("cpu"))

    def transitions(values: list[float]) -> dict[str, torch.Tensor]:
        column = torch.tensor(values)[:, None]
        return {
            "observations": column,
            "actions": column,
            "rewards": column[:, 0],
            "next_observations": column,
            "discounts": column[:, 0],
        }

    buffer.add(transitions([1.0, 2.0, 3.0]))
    buffer.add(transitions([4.0, 5.0, 6.0, 7.0]))
    assert buffer.size == 5 and buffer.position == 2
    assert sorted(buffer.fields["rewards"].tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    sample = buffer.sample(1000, torch.Generator().manual_seed(0))
    counts = torch.bincount(sample["rewards"].long(), minlength=8)[3:]
    assert counts.sum() == 1000 and counts.min() > 150  # uniform over the five kept
    buffer.add(transitions([float(v) for v in range(10, 22)]))  # more than the capacity at once
    assert sorted(buffer.fields["rewards"].tolist()) == [17.0, 18.0, 19.0, 20.0, 21.0]


def _mean_return(env, act) -> float:
    """Mean return of one whole episode in every world."""
    env.reset()
    total = np.zeros(env.num_envs)
    for _ in range(env.episode_steps):
        total += env.step(env.task.action_to_targets(act(env.observation()))).reward
    return float(total.mean())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_learns_the_pendulum(algorithm):
    """Swing to a random goal angle and hold it. Random actions return about -80 per episode,
    holding still -77, aiming straight at the goal -32; 60k steps reach about -35 (12-17 s here)."""
    config = OffPolicyConfig(
        steps_per_iteration=8,
        updates_per_step=1.0,
        batch_size=1024,
        buffer_size=100_000,
        learning_starts=2048,
        learning_rate=1e-3,
        actor_hidden=[64, 64],
        critic_hidden=[128, 128],
        threads=1,
    )
    result = train(_pendulum(64), config, max_env_steps=60_000, algorithm=algorithm, progress=False)
    record = result.history[-1]
    assert np.isfinite([record["critic_loss"], record["actor_loss"], record["q_value"]]).all()
    # Every step became a transition, but for each timeout's last step and the window's lag.
    assert 0.95 * result.env_steps < record["replay_size"] < result.env_steps
    rng = np.random.default_rng(0)
    random_return = _mean_return(_pendulum(64, seed=1), lambda obs: rng.uniform(-1, 1, (len(obs), 1)))
    with torch.no_grad():
        learned = _mean_return(
            _pendulum(64, seed=1), lambda obs: result.model.act_inference(torch.as_tensor(obs)).numpy()
        )
    assert random_return < -70 and learned > -50, f"{algorithm}: {random_return:.1f} -> {learned:.1f}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_resume_continues_counters_optimizers_and_temperature(tmp_path, algorithm):
    path = tmp_path / "checkpoint.pt"
    steps = SMALL.steps_per_iteration * 16
    first = train(
        _pendulum(16),
        SMALL,
        max_env_steps=3 * steps,
        algorithm=algorithm,
        checkpoint_path=path,
        progress=False,
    )
    saved = load_checkpoint(path, expect_joints=["hinge"], expect_task="pendulum")
    assert saved.algorithm == algorithm and saved.learner_config() == SMALL
    assert (
        saved.metadata["iteration"] == 3
        and saved.learner_state["gradient_steps"] == first.learner.gradient_steps
    )
    gradient_steps = first.learner.gradient_steps
    assert gradient_steps > 0
    if algorithm == "sac":
        assert saved.learner_state["temperature"]["log_alpha"] != np.log(SMALL.init_alpha)  # it was tuned

    # The learner restored from the checkpoint is the saved one, replay aside (it starts empty).
    resumed = make_learner(algorithm, 3, 1, 16, SMALL)
    resumed.load_state_dict({"model": saved.model_state, **saved.learner_state})
    for name, network in {"model": first.learner.model, **first.learner.networks}.items():
        torch.testing.assert_close(resumed.state_dict()[name], network.state_dict(), msg=name)
    for name, optimizer in first.learner.optimizers.items():
        torch.testing.assert_close(
            resumed.optimizers[name].state_dict()["state"], optimizer.state_dict()["state"]
        )
    assert (resumed.iteration, resumed.env_steps, resumed.gradient_steps) == (3, 3 * steps, gradient_steps)
    assert resumed.buffer.size == 0

    second = train(
        _pendulum(16),
        SMALL,
        max_env_steps=6 * steps,
        algorithm=algorithm,
        resume=path,
        checkpoint_path=path,
        progress=False,
    )
    assert [r["iteration"] for r in second.history] == [1, 2, 3, 4, 5, 6]
    assert second.env_steps == 6 * steps and second.run_env_steps == 3 * steps
    critic_steps = second.learner.optimizers["critic_optimizer"].state_dict()["state"][0]["step"].item()
    assert critic_steps == second.learner.gradient_steps > gradient_steps
    assert load_checkpoint(path).metadata["iteration"] == 6


def test_resume_refuses_another_algorithms_checkpoint_in_one_line(tmp_path):
    path = tmp_path / "checkpoint.pt"
    small_ppo = PpoConfig(num_steps=4, actor_hidden=[16], critic_hidden=[16], threads=1)
    train(_pendulum(8), small_ppo, max_env_steps=32, checkpoint_path=path, progress=False)
    assert load_checkpoint(path).algorithm == "ppo"
    with pytest.raises(CheckpointError, match=r"was trained with ppo, not td3") as error:
        train(_pendulum(8), SMALL, max_env_steps=32, algorithm="td3", resume=path, progress=False)
    assert "\n" not in str(error.value)


@dataclasses.dataclass(frozen=True)
class _Description:
    metadata_key: ClassVar[str] = "test_description"

    def to_json(self) -> str:
        return '{"test": true}'


METADATA = {
    "model": "pendulum",
    "joint_names": ["hinge"],
    "observation_size": 3,
    "action_size": 1,
    "task": "pendulum",
}


@pytest.mark.parametrize(
    ("algorithm", "module"), [("td3", DeterministicActor), ("sac", SquashedGaussianActor)]
)
def test_a_checkpoint_exports_what_act_inference_computes(tmp_path, algorithm, module):
    learner = make_learner(algorithm, 3, 1, 4, SMALL)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        learner.model.normalizer.update(torch.tensor(rng.normal(2.0, 3.0, (100, 3)), dtype=torch.float32))
        for parameter in learner.model.parameters():
            parameter.add_(torch.tensor(rng.normal(0, 0.5, tuple(parameter.shape)), dtype=torch.float32))
    path = save_checkpoint(tmp_path / "checkpoint.pt", learner, SMALL, METADATA)
    model = load_checkpoint(path).build_model()
    assert type(model) is module

    observations = torch.tensor(rng.normal(2.0, 6.0, (32, 3)), dtype=torch.float32)
    with torch.no_grad():
        expected = learner.model.act_inference(observations).numpy()
        torch.testing.assert_close(model.act_inference(observations).numpy(), expected)
    assert np.abs(expected).max() <= 1.0 and np.abs(expected).std() > 0.01

    paths = export_policy(model, tmp_path / "export", _Description())
    scripted = torch.jit.load(str(paths["torchscript"]))
    np.testing.assert_allclose(scripted(observations).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    graph = onnx.load(str(paths["onnx"]))
    onnx.checker.check_model(graph, full_check=True)
    (actions,) = ReferenceEvaluator(graph).run(None, {"observations": observations.numpy()})
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)

    # A bare module names its algorithm too.
    bare = save_checkpoint(tmp_path / "bare.pt", model, SMALL, METADATA)
    assert load_checkpoint(bare).algorithm == algorithm and load_checkpoint(bare).learner_state is None


def test_a_checkpoint_from_before_the_algorithm_key_is_ppo(tmp_path):
    path = tmp_path / "old.pt"
    small_ppo = PpoConfig(actor_hidden=[8], critic_hidden=[8])
    save_checkpoint(path, make_learner("ppo", 3, 1, 2, small_ppo), small_ppo, METADATA)
    contents = torch.load(path, weights_only=True)
    del contents["algorithm"]
    torch.save(contents, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.algorithm == "ppo" and checkpoint.learner_config() == small_ppo


def test_configs_and_factory_refuse_what_does_not_fit():
    with pytest.raises(ConfigError, match=r"^off_policy\.batch_size: must be >= 1, got 0"):
        make_config("td3", {"batch_size": 0})
    with pytest.raises(ConfigError, match=r"^algorithm: must be one of ppo, sac, td3, got 'ddpg'"):
        make_learner("ddpg", 3, 1, 2)
    with pytest.raises(TypeError, match="sac takes a OffPolicyConfig, not a PpoConfig"):
        make_learner("sac", 3, 1, 2, PpoConfig())
    late = dataclasses.replace(SMALL, learning_starts=SMALL.buffer_size + 1)
    with pytest.raises(ConfigError, match=r"^off_policy\.learning_starts: 4097 is more than the buffer_size"):
        make_learner("td3", 3, 1, 2, late)
    assert make_config("sac", {"n_step": 5}) == OffPolicyConfig(n_step=5)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_acting_explores_within_the_action_range_and_the_call_order_is_checked(algorithm):
    # Replay after each iteration: 16, 48, 80 transitions (the window holds the last two steps).
    learner = make_learner(algorithm, 3, 2, 8, dataclasses.replace(SMALL, learning_starts=40))
    rng = np.random.default_rng(0)
    with pytest.raises(RuntimeError, match="without act"):
        learner.observe(np.zeros(8), np.zeros(8, bool), np.zeros(8, bool))
    for iteration in range(3):  # random actions until the first gradient step, in the second
        while not learner.ready:
            actions = learner.act(rng.normal(0, 5, (8, 3)))
            assert actions.shape == (8, 2) and np.abs(actions).max() <= 1.0
            with pytest.raises(RuntimeError, match="twice without observe"):
                learner.act(np.zeros((8, 3)))
            learner.observe(-np.square(actions).sum(1), np.zeros(8, bool), np.zeros(8, bool))
        with pytest.raises(RuntimeError, match="call update"):
            learner.act(np.zeros((8, 3)))
        stats = learner.update(rng.normal(0, 5, (8, 3)))
        assert np.isnan(stats["critic_loss"]) == (iteration == 0)
    assert learner.gradient_steps == 2 * SMALL.updates_per_iteration
    assert set(stats) == {*type(learner).stat_names, "learning_rate", "replay_size"}
    assert stats["replay_size"] == 80
