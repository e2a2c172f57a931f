"""A training run as its user watches and stops it: the progress bar, stop requests, a failing recorder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from rosbags.highlevel import AnyReader
from sim_bridge_core.envs.batched import JobStoppedError
from sim_bridge_core.envs.gym import make_batched_env
from sim_bridge_core.learning import PpoConfig, evaluate, load_checkpoint, train
from sim_bridge_core.models import load_robot
from sim_bridge_core.tasks import make_task

QUADRUPED = str(Path(__file__).resolve().parents[1] / "models" / "quadruped.xml")
SMALL = PpoConfig(num_steps=8, num_minibatches=2, actor_hidden=[32, 32], critic_hidden=[32, 32], threads=1)


def test_the_progress_bar_ends_with_the_budget_that_binds(capsys):
    env = make_batched_env(num_envs=16, episode_length_s=1.0)
    train(env, SMALL, max_env_steps=10**9, max_wall_s=1.5, progress=True)
    bar = capsys.readouterr().err
    totals = re.findall(r"\| [\d.]+k?/([\d.]+[kMG]?) \[", bar)
    assert totals and "1.00G" not in bar  # sized by the wall budget, not by 10**9 env steps
    assert re.findall(r"(\d+)%\|", bar)[-1] == "100"  # and it ends full, when the wall budget ends it


def test_a_stop_request_ends_training_at_the_next_step_with_a_checkpoint(tmp_path):
    def env():
        return make_batched_env(num_envs=16, episode_length_s=1.0)

    stop, steps = threading.Event(), []

    def on_step(targets, result):
        steps.append(1)
        if len(steps) == 2 * SMALL.num_steps + 3:  # mid-rollout, as a signal would come
            stop.set()

    path = tmp_path / "checkpoint.pt"
    result = train(
        env(), SMALL, max_env_steps=10**9, on_step=on_step, checkpoint_path=path, progress=False, stop=stop
    )
    assert result.interrupted and result.learner.iteration == 2
    assert result.env_steps == len(steps) * 16  # every step taken is counted, none after the stop
    saved = load_checkpoint(path).metadata
    assert saved["iteration"] == 2 and saved["env_steps"] == result.env_steps

    resumed = train(env(), SMALL, max_env_steps=result.env_steps + 8 * 16, resume=path, progress=False)
    assert not resumed.interrupted and resumed.learner.iteration == 3
    with pytest.raises(JobStoppedError):
        evaluate(env(), resumed.model, episodes=16, stop=stop)


# A training job in a process whose files may not grow past 200 kB (RLIMIT_FSIZE: the kernel
# refuses the write, as on a full disk): the bag of 32 recorded worlds fails at its first 1 MiB
# MCAP chunk, mid-training; the checkpoint, exports, plot and TensorBoard file stay below it.
FULL_DISK_JOB = """
import json, resource, sys
from sim_bridge_core.learning import PpoConfig
from sim_bridge_core.deploy.policy import PolicyConfig
from sim_bridge_core.simulator.core import SimulatorConfig
from sim_bridge_core.jobs.training import TrainingJob

resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
policy = PolicyConfig(
    mode="train", output_dir=sys.argv[1], max_env_steps=32 * 8 * 8, eval_episodes=32, record=True
)
sim = SimulatorConfig(task="reach", num_envs=32, episode_length_s=1.0, mirror_envs=list(range(32)))
ppo = PpoConfig(num_steps=8, actor_hidden=[32, 32], critic_hidden=[32, 32])
print(json.dumps(TrainingJob(policy, ppo, sim, progress=False).run()))
"""


def test_a_failing_recorder_stops_recording_with_one_error_and_training_goes_on(tmp_path):
    run = tmp_path / "run"
    job = subprocess.run(
        [sys.executable, "-c", FULL_DISK_JOB, str(run)], capture_output=True, text=True, timeout=300
    )
    assert job.returncode == 0, job.stderr
    errors = [line for line in job.stderr.splitlines() if "recording stopped" in line]
    assert len(errors) == 1 and "training goes on" in errors[0], job.stderr
    assert errors[0].endswith(".mcap: File too large")
    summary = json.loads(job.stdout.splitlines()[-1])
    assert summary["env_steps"] == 32 * 8 * 8 and not summary["interrupted"]
    assert 0.0 <= summary["eval_success_rate_nominal"] <= 1.0
    for name in ("checkpoint.pt", "policy.onnx", "summary.json", "training_curve.png"):
        assert (run / name).stat().st_size > 0, name
    with AnyReader([run / "rollouts"]) as bag:  # as at its last flush (here: before the first step)
        assert {c.topic for c in bag.connections} >= {"/clock", "/env_31/joint_states"}


def test_each_reward_term_is_in_tensorboard_and_the_terms_add_up_to_the_return(tmp_path):
    """A locomotion run (its reward has many terms) as a user reads it in TensorBoard: one curve per
    term, reward/<term>, whose values at each iteration sum to that iteration's mean return."""
    from sim_bridge_core.deploy.policy import PolicyConfig
    from sim_bridge_core.jobs.training import TrainingJob
    from sim_bridge_core.simulator.core import SimulatorConfig
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    policy = PolicyConfig(mode="train", output_dir=str(run), max_env_steps=3 * 8 * 32, eval_episodes=8)
    settings = {"feet": ["fl_foot", "fr_foot", "rl_foot", "rr_foot"], "nominal_height": 0.21}
    sim = SimulatorConfig(
        model=QUADRUPED,
        home="home",
        task="locomotion",
        task_settings=yaml.safe_dump(settings),
        num_envs=32,
        episode_length_s=0.1,
    )
    TrainingJob(policy, SMALL, sim, progress=False).run()
    board = EventAccumulator(str(run)).Reload()
    terms = sorted(tag for tag in board.Tags()["scalars"] if tag.startswith("reward/"))
    weights = make_task("locomotion", load_robot(QUADRUPED, home="home"), settings).reward_weights
    assert {f"reward/{name}" for name in weights} <= set(terms)
    returns = {event.step: event.value for event in board.Scalars("episode/mean_return")}
    assert len(returns) == 3
    for step, mean_return in returns.items():
        total = sum(next(e.value for e in board.Scalars(tag) if e.step == step) for tag in terms)
        assert total == pytest.approx(mean_return, rel=1e-4, abs=1e-4)


def test_an_off_policy_job_writes_what_ppo_writes_resumes_and_keeps_to_its_algorithm(tmp_path):
    """algorithm td3: the same outputs as PPO (checkpoint, exports, summary naming the algorithm), a
    rerun resumes it, and neither another algorithm's settings nor another algorithm on its run
    folder is taken."""
    import dataclasses

    from sim_bridge_core.config import ConfigError
    from sim_bridge_core.deploy.policy import PolicyConfig
    from sim_bridge_core.jobs.training import TrainingJob, run_evaluation
    from sim_bridge_core.learning import OffPolicyConfig
    from sim_bridge_core.simulator.core import SimulatorConfig

    run = tmp_path / "run"
    small = OffPolicyConfig(
        steps_per_iteration=4,
        batch_size=128,
        buffer_size=10_000,
        learning_starts=256,
        actor_hidden=[32],
        critic_hidden=[32, 32],
    )
    sim = SimulatorConfig(task="reach", num_envs=32, episode_length_s=0.5)
    policy = PolicyConfig(
        mode="train", algorithm="td3", output_dir=str(run), max_env_steps=32 * 4 * 6, eval_episodes=16
    )
    first = TrainingJob(policy, small, sim, progress=False).run()
    assert first["algorithm"] == "td3" and first["iterations"] == 6
    for name in ("checkpoint.pt", "policy.onnx", "policy.pt", "policy.json", "training_curve.png"):
        assert (run / name).stat().st_size > 0, name
    saved = load_checkpoint(run / "checkpoint.pt")
    assert saved.algorithm == "td3" and saved.learner_config() == small

    longer = dataclasses.replace(policy, max_env_steps=32 * 4 * 9)
    second = TrainingJob(longer, small, sim, progress=False).run()
    assert second["iterations"] == 9 and second["resumed_from"].endswith("checkpoint.pt")

    evaluated = run_evaluation(
        PolicyConfig(mode="eval", checkpoint=str(run / "checkpoint.pt"), output_dir=str(tmp_path / "eval")),
        sim,
    )
    assert evaluated["algorithm"] == "td3"

    with pytest.raises(ConfigError, match="was trained with td3, not sac"):
        TrainingJob(dataclasses.replace(longer, algorithm="sac"), small, sim, progress=False).run()
    with pytest.raises(ConfigError, match=r"policy\.algorithm: td3 takes off_policy\.\* settings"):
        TrainingJob(policy, SMALL, sim)
