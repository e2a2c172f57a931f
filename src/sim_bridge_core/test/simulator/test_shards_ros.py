"""ShardedWorlds over real DDS: two simulator nodes, each its own process and namespace, as one batch.

In lockstep each shard steps exactly as an in-process ``Simulator`` with its config and seed, so
the concatenated batch is compared to two of them side by side.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from sim_bridge_core.models import load_robot
from sim_bridge_core.ros.batch_topics import connect_sharded_worlds
from sim_bridge_core.simulator.core import Simulator, SimulatorConfig
from sim_bridge_core.simulator.remote import RemoteError
from sim_bridge_core.simulator.shards import shard_sizes
from sim_bridge_core.tasks import make_task

SETTINGS = dict(model="arm7", task="reach", control_dt=0.02, episode_length_s=0.2, mode="lockstep")
TASK = make_task("reach", load_robot("arm7"))
SIZES = {"shard_a": 5, "shard_b": 4}  # uneven: 9 worlds split first-heavy


def test_worlds_split_as_evenly_as_they_can():
    assert shard_sizes(9, 2) == [5, 4] and shard_sizes(8, 4) == [2, 2, 2, 2] and sum(shard_sizes(10, 3)) == 10
    with pytest.raises(ValueError, match="cannot be split"):
        shard_sizes(2, 3)


def test_two_shards_step_as_one_batch_and_a_dead_shard_is_named(start_node, ros_client):
    processes = {
        name: start_node(
            "sim_bridge_sim", "simulator", "-r", f"__ns:=/{name}", num_envs=size, seed=seed, **SETTINGS
        )
        for seed, (name, size) in enumerate(SIZES.items(), start=3)
    }
    refs = [
        Simulator(SimulatorConfig(num_envs=size, seed=seed, **{k: v for k, v in SETTINGS.items()}))
        for seed, size in enumerate(SIZES.values(), start=3)
    ]
    worlds = connect_sharded_worlds(
        ros_client.node, TASK, list(SIZES), 9, control_dt=0.02, episode_length_s=0.2, timeout_s=20.0
    )
    assert worlds.num_envs == 9
    worlds.observation()
    robot = TASK.robot
    for k in range(12):
        targets = robot.clamp(robot.home + 0.4 * np.sin(np.arange(9)[:, None] + np.arange(7) + 0.3 * k))
        result = worlds.step(targets)
        expected = []
        for ref, rows in zip(refs, np.split(targets, [5]), strict=True):
            ref.command_all(rows)
            expected.append(ref.step())
        positions = np.concatenate([ref.env.measured_positions() for ref in refs])
        np.testing.assert_allclose(worlds.positions, positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(worlds.inputs, np.concatenate([ref.env.inputs for ref in refs]), rtol=1e-6)
        np.testing.assert_allclose(result.reward, np.concatenate([e.reward for e in expected]), rtol=1e-5)
        np.testing.assert_array_equal(result.truncated, np.concatenate([e.truncated for e in expected]))
    # Seeds are the shards' own: their goals differ, each reproduced by its in-process twin.
    assert not np.allclose(worlds.inputs[:4], worlds.inputs[5:])
    expected_observation = TASK.observation(worlds.positions, worlds.velocities, worlds.inputs)
    np.testing.assert_allclose(worlds.observation(), expected_observation, rtol=1e-6)

    worlds.shards[1].timeout_s = 2.0
    processes["shard_b"].proc.send_signal(signal.SIGKILL)
    processes["shard_b"].proc.wait()
    start = time.monotonic()
    with pytest.raises(RemoteError, match=r"simulator shard 'shard_b' \(worlds 5-8\): no batch/joint_states"):
        worlds.step(robot.clamp(np.tile(robot.home, (9, 1))))
    assert time.monotonic() - start < 10.0  # the shard's timeout, not a hang
    assert processes["shard_a"].alive()
