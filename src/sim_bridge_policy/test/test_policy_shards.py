"""One learner over simulator shards, every node its own process: training over two shards, a shard
killed mid-run (a checkpoint and one line naming it), and a resume over one shard."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
from sim_bridge_core.learning import load_checkpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

WORLD = {"task": "reach", "episode_length_s": 1.0, "control_dt": 0.02}
SHARD_ENVS = 32


def start_shard(start_node, name: str, seed: int):
    return start_node(
        "sim_bridge_sim",
        "simulator",
        "-r",
        f"__ns:=/{name}",
        mode="lockstep",
        num_envs=SHARD_ENVS,
        seed=seed,
        **WORLD,
    )


def start_learner(start_node, run, shards: list[str], **parameters):
    return start_node(
        "sim_bridge_policy",
        "policy",
        mode="train",
        transport="ros",
        simulators=shards,
        output_dir=str(run),
        eval_episodes=8,
        step_timeout_s=3.0,
        **{"ppo.num_steps": 24, "sim.num_envs": SHARD_ENVS * len(shards)},
        **{f"sim.{key}": value for key, value in WORLD.items()},
        **parameters,
    )


def iterations_logged(run) -> int:
    if not run.is_dir():
        return 0
    board = EventAccumulator(str(run)).Reload()
    return len(board.Scalars("loss/value")) if "loss/value" in board.Tags()["scalars"] else 0


def test_a_learner_trains_over_two_shards_survives_losing_one_and_resumes_on_one(tmp_path, start_node):
    run = tmp_path / "run"
    shard_a = start_shard(start_node, "shard_a", 1)
    shard_b = start_shard(start_node, "shard_b", 2)
    for shard in (shard_a, shard_b):  # up before the learner, whose every wait is step_timeout_s
        shard.wait_for_output("mode lockstep", timeout=60)
    learner = start_learner(
        start_node, run, ["shard_a", "shard_b"], max_env_steps=10**8, max_wall_s=1e6, checkpoint_every=10**6
    )
    deadline = time.monotonic() + 240
    while iterations_logged(run) < 25:
        assert learner.alive(), learner.output()
        assert time.monotonic() < deadline, learner.output()
        time.sleep(1.0)
    assert not (run / "checkpoint.pt").exists()  # checkpoint_every: none before the failure

    shard_b.proc.send_signal(signal.SIGKILL)
    assert learner.wait_exit(60) == 1, learner.output()
    lines = [line for line in learner.output().splitlines() if "simulator shard 'shard_b'" in line]
    assert len(lines) == 1 and "checkpoint at" in lines[0] and "a rerun resumes" in lines[0], lines
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    history = checkpoint.metadata["history"]
    assert len(history) >= 25 and history[-1]["env_steps"] == len(history) * 24 * 64
    assert checkpoint.metadata["env_steps"] >= history[-1]["env_steps"]  # the dropped partial rollout's too
    returns = [record["mean_return"] for record in history]
    before, after = np.mean(returns[:5]), np.mean(returns[-5:])
    assert after > before + 0.3 * abs(before), f"mean return {before:.2f} -> {after:.2f}"
    assert shard_a.alive()

    trained = checkpoint.metadata["env_steps"]
    resumed = start_learner(start_node, run, ["shard_a"], max_env_steps=trained + 2 * 24 * SHARD_ENVS)
    assert resumed.wait_exit(180) == 0, resumed.output()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == str(run / "checkpoint.pt")
    assert summary["env_steps"] == trained + 2 * 24 * SHARD_ENVS and summary["num_envs"] == SHARD_ENVS
    assert summary["simulator_shards"] == ["shard_a"]
