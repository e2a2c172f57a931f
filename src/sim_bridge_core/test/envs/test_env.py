"""Tasks and batched episodes: reset distribution, rewards, success, truncation, auto-reset."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.envs.gym import SimBridgeEnv, SimBridgeVectorEnv, make_batched_env
from sim_bridge_core.models import ModelError, load_robot
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.tasks import ReachTask, make_task


def test_same_seed_same_episodes():
    a, b = make_batched_env(num_envs=4, seed=7), make_batched_env(num_envs=4, seed=7)
    c = make_batched_env(num_envs=4, seed=8)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.observation(), b.observation())
    assert not np.array_equal(a.inputs, c.inputs)
    assert np.all((a.inputs >= a.task.goal_low) & (a.inputs <= a.task.goal_high))


def test_reach_success_when_the_end_effector_is_at_the_goal():
    arm = load_robot("arm7")
    env = BatchedEnv(CpuBackend(arm, 2, 0.02), ReachTask(arm), episode_length_s=10.0)
    targets = np.tile(arm.home, (2, 1))
    for _ in range(50):
        env.step(targets)
    ee = env.backend.site_positions(arm.site_id("ee"))
    env.inputs[0] = ee[0]  # world 0's goal is where its hand is; world 1's is 10 cm away
    env.inputs[1] = ee[1] + [0.1, 0, 0]
    result = env.step(targets)
    assert result.success.tolist() == [True, False]
    assert result.reward[0] > result.reward[1]


def test_truncation_resets_only_finished_worlds_and_time_runs_on():
    env = make_batched_env(num_envs=3, episode_length_s=0.1, control_dt=0.02)
    targets = np.tile(env.backend.robot.home, (3, 1))
    for _ in range(2):
        env.step(targets)
    env.reset(np.array([2]))  # restarts world 2's episode clock only
    results = [env.step(targets) for _ in range(3)]
    assert results[-1].truncated.tolist() == [True, True, False]
    final = results[-1].final_observations
    assert final.shape == (2, env.task.observation_size)
    assert not np.allclose(final, env.observation()[:2])  # the episode that ended, not the next one
    assert env.episode_step.tolist() == [0, 0, 3]
    assert env.time_ns == 5 * 20_000_000


def test_pendulum_task_needs_one_joint():
    with pytest.raises(ModelError, match="one joint"):
        make_task("pendulum", load_robot("arm7"))
    with pytest.raises(ModelError, match="unknown task"):
        make_task("juggle", load_robot("arm7"))


@pytest.mark.parametrize(("model", "task"), [("arm7", "reach"), ("pendulum", "pendulum"), ("arm7", "none")])
def test_single_world_env_passes_gymnasium_checker(model, task):
    check_env(SimBridgeEnv(model=model, task=task), skip_render_check=True)


def test_vector_env_same_step_autoreset():
    envs = SimBridgeVectorEnv(make_batched_env(num_envs=4, episode_length_s=0.06, control_dt=0.02))
    observations, _ = envs.reset(seed=3)
    assert observations.shape == (4, envs.single_observation_space.shape[0])
    for _ in range(3):
        observations, rewards, _, truncated, info = envs.step(envs.action_space.sample())
        assert rewards.shape == (4,) and observations.dtype == np.float32
    assert truncated.all() and info["_final_obs"].all() and info["_final_info"].all()
    assert info["final_info"]["_success"].all() and info["final_info"]["success"].dtype == bool
    assert info["final_obs"][0].shape == envs.single_observation_space.shape
    assert not np.array_equal(info["final_obs"][0], observations[0])


def test_task_none_never_truncates():
    """A simulator standing in for a robot must not snap back to home every episode_length_s."""
    env = make_batched_env(task="none", num_envs=2, episode_length_s=0.04, control_dt=0.02)
    targets = np.tile(env.backend.robot.home + 0.1, (2, 1))
    results = [env.step(targets) for _ in range(5)]
    assert not any(r.truncated.any() for r in results)
    assert np.all(np.abs(env.backend.joint_positions() - env.backend.robot.home) > 0.01)
