"""`torchrun --nproc_per_node=2 bringup training`: two data-parallel learners (gloo) train one model
on worlds of their own, and rank 0 alone writes the outputs."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rosbags.highlevel import AnyReader
from sim_bridge_core.learning import distributed, load_checkpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import RosProcess, executable

# --standalone: the ranks meet on a free port of this host (MASTER_PORT), one per run.
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
SMALL = ("transport:=fused", "num_envs:=32", "episode_length_s:=1.0", "eval_episodes:=16")
ITERATION = 24 * 32 * 2  # env steps of one iteration: 24 control steps of 32 worlds on each of 2 ranks
RANK_LINE = re.compile(r"rank (\d) of 2: (\d+) env steps, parameters ([0-9a-f]{16})")


@pytest.fixture
def start_torchrun(tmp_path: Path) -> Iterator[Callable[..., tuple[RosProcess, Path]]]:
    """start_torchrun(name, *arguments) -> (torchrun of `bringup training`, its working folder)."""
    started: list[RosProcess] = []

    def start(name: str, *arguments: str) -> tuple[RosProcess, Path]:
        cwd = tmp_path / name
        cwd.mkdir()
        command = [*TORCHRUN, executable("sim_bridge", "bringup"), "training", *arguments]
        started.append(RosProcess(command, tmp_path / f"{name}.log", cwd=cwd))
        return started[-1], cwd

    yield start
    for process in started:
        process.stop()


def rank_lines(output: str) -> dict[int, tuple[int, str]]:
    """Each rank's env steps and parameter digest, as it logged them at the end of training."""
    return {int(rank): (int(steps), digest) for rank, steps, digest in RANK_LINE.findall(output)}


def test_two_ranks_train_one_model_and_rank_0_alone_writes(tmp_path, start_torchrun):
    run = tmp_path / "run"
    ranks, cwd = start_torchrun(
        "train", *SMALL, f"output_dir:={run}", f"max_env_steps:={3 * ITERATION}", "randomization:=default"
    )
    assert ranks.wait_exit(150) == 0, ranks.output()

    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["num_envs"] == 64  # every rank's worlds
    assert summary["env_steps"] == 3 * ITERATION and summary["iterations"] == 3
    assert 0.0 <= summary["eval_success_rate_nominal"] <= 1.0
    # One rank's outputs, written once: rank 1 wrote nothing there, nor anywhere else.
    names = {path.name for path in run.iterdir()}
    assert len([name for name in names if name.startswith("events.out.tfevents")]) == 1
    assert {n for n in names if not n.startswith("events")} == {
        "checkpoint.pt", "policy.json", "policy.onnx", "policy.pt", "rollouts", "summary.json",
        "training_curve.png",
    }  # fmt: skip
    assert not any(cwd.iterdir())  # no runs/<timestamp> of a rank
    assert ranks.output().count("done: eval success") == 1

    # One model: both ranks end with the checkpoint's parameters, bit for bit.
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    digest = distributed.state_digest(checkpoint.model_state)
    assert rank_lines(ranks.output()) == {0: (3 * ITERATION, digest), 1: (3 * ITERATION, digest)}
    assert checkpoint.metadata["env_steps"] == 3 * ITERATION

    board = EventAccumulator(str(run)).Reload()
    assert [event.step for event in board.Scalars("loss/value")] == [ITERATION, 2 * ITERATION, 3 * ITERATION]
    with AnyReader([run / "rollouts"]) as bag:  # rank 0's world 0, one state per control step
        counts = {connection.topic: connection.msgcount for connection in bag.connections}
    assert counts["/env_0/joint_states"] == 3 * 24


def test_a_wall_clock_budget_ends_every_rank_at_the_same_iteration(tmp_path, start_torchrun):
    run = tmp_path / "run"
    ranks, _ = start_torchrun(
        "wall", *SMALL, f"output_dir:={run}", "max_env_steps:=100000000", "max_wall_s:=2", "record:=false"
    )
    assert ranks.wait_exit(150) == 0, ranks.output()
    summary = json.loads((run / "summary.json").read_text())
    steps = summary["env_steps"]
    assert steps % ITERATION == 0 and summary["wall_s"] >= 2.0
    (digest,) = {digest for _, digest in rank_lines(ranks.output()).values()}
    assert rank_lines(ranks.output()) == {0: (steps, digest), 1: (steps, digest)}


def test_the_ros_transport_under_torchrun_is_refused_naming_the_key(tmp_path, start_torchrun):
    ranks, _ = start_torchrun("ros", "transport:=ros", "num_envs:=8", f"output_dir:={tmp_path / 'run'}")
    assert ranks.wait_exit(60) != 0
    assert ranks.output().count("error: policy.transport: torchrun's 2 ranks each train on fused worlds") == 2
    assert not (tmp_path / "run").exists()
