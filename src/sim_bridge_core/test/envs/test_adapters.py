"""Other RL libraries on our worlds: robot configs in ``make_batched_env``, rsl_rl's VecEnv, skrl
through the Gymnasium vector env."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sim_bridge_core.config import ConfigError
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.envs.gym import SimBridgeEnv, SimBridgeVectorEnv, make_batched_env
from sim_bridge_core.envs.rsl_rl import RslRlVecEnv
from sim_bridge_core.models import load_robot_config
from sim_bridge_core.simulator.core import Simulator, SimulatorConfig, robot_simulator_parameters
from tensordict import TensorDict

CONFIG = Path(__file__).resolve().parents[4] / "config"
ARM = [f"joint{i}" for i in range(1, 8)]


def _robot_file(tmp_path: Path, **changes) -> Path:
    """An arm7 robot config with a site of its own, a model-parameter override and reach settings."""
    data = {
        "model": "arm7",
        "joint_names": ARM,
        "sites": {"tcp": {"body": "link7", "pos": [0.0, 0.0, 0.15]}},
        "model_parameters": {"joints": {"joint2": {"damping": 3.5}}},
        "tasks": {
            "reach": {
                "ee_site": "tcp",
                "goal_low": [0.40, -0.10, 0.30],
                "goal_high": [0.45, 0.10, 0.35],
                "reward_weights": {"goal_bonus": 2.5},
            }
        },
        **changes,
    }
    path = tmp_path / "my_arm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_robot_config_builds_the_worlds_the_simulator_builds(tmp_path):
    path = _robot_file(tmp_path)
    env = make_batched_env(robot=path, task="reach", num_envs=4, seed=3)
    robot, task = env.backend.robot, env.task
    damping = env.backend.model_field("dof_damping")[:, robot.dof_adr[1]]
    assert damping.tolist() == [3.5] * 4
    assert task.settings.ee_site == "tcp" and task.reward_weights["goal_bonus"] == 2.5
    assert np.all((env.inputs >= [0.40, -0.10, 0.30]) & (env.inputs <= [0.45, 0.10, 0.35]))

    config = load_robot_config(str(path), CONFIG)[0]
    parameters = robot_simulator_parameters(config, "reach")
    simulated = Simulator(SimulatorConfig(num_envs=4, seed=3, task="reach", **parameters)).env
    np.testing.assert_array_equal(env.observation(), simulated.observation())
    rng = np.random.default_rng(0)
    for _ in range(5):
        targets = task.action_to_targets(rng.uniform(-1, 1, (4, 7)))
        ours, theirs = env.step(targets), simulated.step(targets)
        np.testing.assert_array_equal(ours.reward, theirs.reward)
    np.testing.assert_array_equal(env.observation(), simulated.observation())


def test_robots_by_name_and_the_call_signatures_that_came_before():
    by_name = make_batched_env(robot="arm7", task="reach", num_envs=2, seed=1)
    built_in = make_batched_env("arm7", "reach", 2, "cpu", 0.02, 5.0, 1)
    np.testing.assert_array_equal(by_name.observation(), built_in.observation())
    pendulum = SimBridgeEnv(robot="pendulum", task="pendulum", config_dir=CONFIG)
    assert pendulum.action_space.shape == (1,)
    assert make_batched_env().task.robot.name == "arm7"


def test_robot_config_mistakes_name_the_file_and_the_key(tmp_path):
    with pytest.raises(ValueError, match="model or robot"):
        make_batched_env("arm7", robot="arm7")
    with pytest.raises(ConfigError, match=r"my_arm.yaml: tasks.reach.goal_low"):
        make_batched_env(robot=_robot_file(tmp_path, tasks={"reach": {"goal_low": [1.0]}}))
    with pytest.raises(ConfigError, match=r"my_arm.yaml: .*one joint"):
        make_batched_env(robot=_robot_file(tmp_path), task="pendulum")
    with pytest.raises(ConfigError, match="no robot file"):
        make_batched_env(robot="no_such_robot", config_dir=CONFIG)


def test_randomization_as_the_simulator_applies_it():
    env = make_batched_env(robot="arm7", num_envs=4, randomization=CONFIG / "randomization" / "default.yaml")
    values, names = env.randomizer.applied()
    assert values.shape == (4, len(names)) and names
    assert make_batched_env(robot="arm7").randomizer is None


# ----------------------------------------------------------------------------------------- rsl_rl


def test_rsl_rl_vec_env_steps_resets_and_reports_time_outs():
    env = RslRlVecEnv(make_batched_env(robot="arm7", task="reach", num_envs=3, episode_length_s=0.1))
    assert (env.num_envs, env.num_actions, env.max_episode_length) == (3, 7, 5)
    observations = env.get_observations()
    assert observations["policy"].shape == (3, env.env.task.observation_size)
    assert observations["policy"].dtype == torch.float32
    env.episode_length_buf = torch.tensor([0, 2, 4])  # as OnPolicyRunner's init_at_random_ep_len
    observations, rewards, dones, extras = env.step(torch.zeros(3, 7))
    assert dones.tolist() == [0, 0, 1] and extras["time_outs"].tolist() == [False, False, True]
    assert rewards.dtype == torch.float32 and rewards.shape == (3,)
    assert env.episode_length_buf.tolist() == [1, 3, 0]
    assert set(extras["log"]) == {
        "Episode/success",
        "Episode_Reward/goal_distance",
        "Episode_Reward/goal_bonus",
    }
    assert extras["log"]["Episode_Reward/goal_distance"].shape == (1,)
    assert "log" not in env.step(torch.zeros(3, 7))[3]
    assert env.cfg.to_dict()["observation_terms"][0][0] == env.env.task.observation_terms[0][0]


def _mean_return(env: BatchedEnv, act: Callable[[np.ndarray], np.ndarray]) -> float:
    """Mean return of one whole episode in every world under deterministic actions."""
    env.seed(123)
    env.reset()
    returns, running = np.zeros(env.num_envs), np.ones(env.num_envs, dtype=bool)
    while running.any():
        result = env.step(env.task.action_to_targets(act(env.observation())))
        returns += np.where(running, result.reward, 0.0)
        running &= ~result.done
    return float(returns.mean())


def _rsl_rl_train_cfg() -> dict:
    """PPO as rsl_rl configures it (5.x: actor and critic models, observation sets)."""
    network = {
        "class_name": "MLPModel",
        "hidden_dims": [64, 64],
        "activation": "elu",
        "obs_normalization": True,
    }
    return {
        "num_steps_per_env": 16,
        "save_interval": 1000,
        "obs_groups": {"actor": ["policy"], "critic": ["policy"]},
        "actor": {**network, "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 0.6}},
        "critic": network,
        "algorithm": {
            "class_name": "PPO",
            "num_learning_epochs": 4,
            "num_mini_batches": 2,
            "learning_rate": 1e-3,
            "schedule": "adaptive",
            "entropy_coef": 0.0,
        },
    }


def test_rsl_rl_on_policy_runner_learns_reach_from_the_robot_config():
    from rsl_rl.runners import OnPolicyRunner

    torch.manual_seed(0)
    env = RslRlVecEnv(make_batched_env(robot="arm7", task="reach", num_envs=64, episode_length_s=1.0))
    runner = OnPolicyRunner(env, _rsl_rl_train_cfg(), log_dir=None, device="cpu")
    evaluation = make_batched_env(robot="arm7", task="reach", num_envs=32, episode_length_s=1.0)

    def act(observations: np.ndarray) -> np.ndarray:
        policy = runner.get_inference_policy()
        with torch.inference_mode():
            return policy(TensorDict({"policy": torch.from_numpy(observations)}, batch_size=[32])).numpy()

    before = _mean_return(evaluation, act)
    runner.learn(num_learning_iterations=30, init_at_random_ep_len=True)
    after = _mean_return(evaluation, act)
    assert after > before + 0.3 * abs(before), f"mean return {before:.2f} -> {after:.2f}"


# ------------------------------------------------------------------------------------------- skrl


def test_skrl_ppo_learns_reach_through_the_gymnasium_vector_env():
    from skrl.agents.torch.ppo import PPO, PPO_CFG
    from skrl.envs.wrappers.torch import wrap_env
    from skrl.memories.torch import RandomMemory
    from skrl.models.torch import DeterministicMixin, GaussianMixin, Model
    from skrl.resources.preprocessors.torch import RunningStandardScaler
    from skrl.trainers.torch import SequentialTrainer

    def mlp(inputs: int, outputs: int) -> torch.nn.Sequential:
        return torch.nn.Sequential(
            torch.nn.Linear(inputs, 64),
            torch.nn.ELU(),
            torch.nn.Linear(64, 64),
            torch.nn.ELU(),
            torch.nn.Linear(64, outputs),
        )

    class Policy(GaussianMixin, Model):
        def __init__(self, **spaces):
            Model.__init__(self, **spaces)
            GaussianMixin.__init__(self)
            self.net = mlp(self.num_observations, self.num_actions)
            self.log_std = torch.nn.Parameter(torch.full((self.num_actions,), -0.5))

        def compute(self, inputs, role=""):
            return self.net(inputs["observations"]), {"log_std": self.log_std}

    class Value(DeterministicMixin, Model):
        def __init__(self, **spaces):
            Model.__init__(self, **spaces)
            DeterministicMixin.__init__(self)
            self.net = mlp(self.num_observations, 1)

        def compute(self, inputs, role=""):
            return self.net(inputs["observations"]), {}

    torch.manual_seed(0)
    worlds = make_batched_env(robot="arm7", task="reach", num_envs=64, episode_length_s=1.0)
    env = wrap_env(SimBridgeVectorEnv(worlds), wrapper="gymnasium")
    spaces = {"observation_space": env.observation_space, "action_space": env.action_space, "device": "cpu"}
    cfg = PPO_CFG(
        rollouts=16,
        learning_epochs=4,
        mini_batches=2,
        learning_rate=1e-3,
        observation_preprocessor=RunningStandardScaler,
        observation_preprocessor_kwargs={"size": env.observation_space, "device": "cpu"},
        value_preprocessor=RunningStandardScaler,
        value_preprocessor_kwargs={"size": 1, "device": "cpu"},
        experiment={"write_interval": 0, "checkpoint_interval": 0},
    )
    agent = PPO(
        models={"policy": Policy(**spaces), "value": Value(**spaces)},
        memory=RandomMemory(memory_size=16, num_envs=env.num_envs, device="cpu"),
        cfg=cfg,
        **spaces,
    )
    evaluation = make_batched_env(robot="arm7", task="reach", num_envs=32, episode_length_s=1.0)

    def act(observations: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            _, outputs = agent.act(torch.from_numpy(observations), None, timestep=0, timesteps=0)
            return outputs["mean_actions"].numpy()

    trainer_cfg = {
        "timesteps": 16 * 25,  # vector steps: 25 rollouts of 16
        "headless": True,  # the vector env has no render
        "disable_progressbar": True,
        "close_environment_at_exit": False,  # its atexit hook would log after pytest closed the streams
    }
    trainer = SequentialTrainer(env=env, agents=agent, cfg=trainer_cfg)
    before = _mean_return(evaluation, act)
    trainer.train()
    agent.enable_training_mode(False)
    after = _mean_return(evaluation, act)
    assert after > before + 0.3 * abs(before), f"mean return {before:.2f} -> {after:.2f}"
