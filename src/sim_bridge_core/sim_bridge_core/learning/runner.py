"""The training loop and evaluation, over any ``Worlds``: the transport decides where they run.

``fused``: a ``BatchedEnv`` in this process, arrays handed over in memory. ``ros``: the
simulator node's worlds through the lockstep ``batch/*`` topics. One iteration is the learner's
control steps of every world (PPO: a rollout of ``num_steps``; SAC and TD3:
``steps_per_iteration``) followed by its update::

    obs = worlds.observation()
    actions = learner.act(obs)
    result = worlds.step(worlds.task.action_to_targets(actions))
    learner.observe(result.reward, result.terminated, result.truncated)
    if learner.ready: learner.update(worlds.observation())

``Runner`` is that loop as an object with one method per stage (``restore``, ``collect``,
``update``, ``log``, ``save``), for any algorithm of ``algorithms``; ``train`` builds one and
runs it. The worlds execute the targets
through their command interface (``sim_bridge_core.sim.control``), as the robot's controller will.
The deploy safety filter's step limit is not applied here: it is a safety net, and training under it
learns reach far more slowly (docs/policy.md has the figures); the deploy-path evaluation measures
what it costs. What a checkpoint must carry for deployment (the policy contract) is the job's to
give: this package knows nothing of deploying.

Also here: deterministic evaluation and the training curve plot.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sim_bridge_core.arrays import device, is_host, namespace, to_host
from sim_bridge_core.config import ConfigError
from sim_bridge_core.envs.batched import JobStoppedError, StepResult, Worlds, WorldsLostError
from sim_bridge_core.learning import distributed
from sim_bridge_core.learning.algorithms import (
    SECTIONS,
    Learner,
    LearnerConfig,
    check_algorithm,
    make_learner,
)
from sim_bridge_core.learning.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sim_bridge_core.learning.config import PpoConfig
from sim_bridge_core.learning.modules import Policy

REWARD_TERM_PREFIX = "reward/"  # an iteration record's key for a reward term's mean per episode


@dataclass
class TrainResult:
    learner: Learner
    history: list[dict[str, float]] = field(default_factory=list)  # resumed runs' records included
    wall_s: float = 0.0  # in total, resumed runs included
    env_steps: int = 0  # in total, resumed runs included
    run_wall_s: float = 0.0  # in this call
    run_env_steps: int = 0  # in this call
    interrupted: bool = False  # ended by a stop request, not by a budget

    @property
    def model(self) -> Policy:
        return self.learner.model

    @property
    def env_steps_per_s(self) -> float:
        """Throughput of this call."""
        return self.run_env_steps / self.run_wall_s if self.run_wall_s > 0 else 0.0


def training_metadata(worlds: Worlds, learner: Learner | None = None) -> dict[str, Any]:
    """What a checkpoint records about the robot and task it was trained for (``load_checkpoint``
    checks a resume against it), and the learner's counters."""
    task = worlds.task
    metadata: dict[str, Any] = {
        "model": task.robot.name,
        "joint_names": list(task.robot.joint_names),
        "observation_size": task.observation_size,
        "action_size": task.robot.num_joints,
        "task": task.name,
        "input_names": list(task.input_names),
        "control_dt": float(worlds.control_dt),
        "episode_length_s": float(worlds.episode_steps * worlds.control_dt),
        "action_scale": float(task.action_scale),
    }
    if learner is not None:
        metadata.update(iteration=learner.iteration, env_steps=learner.env_steps)
    return metadata


@dataclass(frozen=True)
class EpisodeStats:
    """Episodes ended since the last look: how many, their mean return and success rate (NaN if
    none), and each reward term's mean sum per episode."""

    episodes: int
    mean_return: float
    success_rate: float
    reward_terms: dict[str, float]


class EpisodeTracker:
    """Returns, reward terms and success of episodes as they end; success is the task's at the
    episode's last step. It keeps running sums beside the worlds (numpy, or the device of resident
    worlds), so a step asks nothing of the device; ``pop`` reads them once per iteration."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.running: dict[str, Any] = {}  # per world, this episode so far: "return" and each term
        self.ended: dict[str, Any] = {}  # over the episodes ended: "episodes", "success", the rest

    def add(self, step: StepResult) -> None:
        xp = namespace(step.reward)
        finished = xp.astype(step.done, xp.float64)
        self._add_ended("episodes", xp.sum(finished))
        self._add_ended("success", xp.sum(finished * xp.astype(step.success, xp.float64)))
        for name, values in {"return": step.reward, **step.reward_terms}.items():
            so_far = self.running.get(name)
            if so_far is None:
                so_far = xp.zeros(self.num_envs, dtype=xp.float64, device=device(values))
            so_far = so_far + values
            self._add_ended(name, xp.sum(so_far * finished))
            self.running[name] = xp.where(step.done, 0.0, so_far)

    def _add_ended(self, name: str, value: Any) -> None:
        self.ended[name] = value + self.ended[name] if name in self.ended else value

    def pop(self) -> EpisodeStats:
        """The episodes ended since the last pop; with data-parallel learners, those of every rank
        (every rank pops at the same iteration, and sums and counts are added over the ranks)."""
        names = [name for name in self.running if name != "return"]
        keys = ["episodes", "return", "success", *names]
        sums = np.array([float(to_host(self.ended[key])) if key in self.ended else 0.0 for key in keys])
        self.ended = {}
        totals = distributed.sum_over_ranks(sums)
        count = int(totals[0])
        if count == 0:
            return EpisodeStats(0, float("nan"), float("nan"), {})
        means = totals[1:] / count
        terms = {name: float(value) for name, value in zip(names, means[2:], strict=True)}
        return EpisodeStats(count, float(means[0]), float(means[1]), terms)


class Runner:
    """One training run of ``algorithm`` (``config``: its config class) on ``worlds``: ``restore``
    (optional), then ``run``, which repeats ``collect`` (an iteration's control steps), ``update``
    (the learner's update, its record), ``log`` and ``save``.

    ``on_iteration(record, learner)`` sees each iteration's record (also kept in ``history``)
    and the learner after its update, and may return True to stop; ``on_step(targets, result)``
    sees every control step (e.g. to record it). With ``checkpoint_path``, a checkpoint is
    written every ``checkpoint_every`` iterations (0: only at the end), holding
    ``checkpoint_metadata`` besides the training state (the job's policy contract). Setting
    ``stop`` (or worlds raising ``JobStoppedError``) ends training at the next step as a budget
    would, final checkpoint included, with ``interrupted`` set (the partial rollout is dropped,
    its env steps counted). Worlds that are lost (``WorldsLostError``: a simulator that died or
    stopped answering) end the run with a checkpoint, then the error, saying where it is.

    Under torchrun (``distributed``), each rank runs one ``Runner`` on worlds of its own: they
    start from rank 0's learner, add up env steps, episodes and budgets over every rank, and stop
    together at the end of an iteration (a stop request too); only rank 0 writes checkpoints and
    shows the progress bar, and only PPO learns data-parallel.
    """

    def __init__(
        self,
        worlds: Worlds,
        config: LearnerConfig | None = None,
        *,
        algorithm: str = "ppo",
        device: str = "cpu",
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
        checkpoint_metadata: Mapping[str, Any] | None = None,
        on_iteration: Callable[[dict[str, float], Learner], bool | None] | None = None,
        on_step: Callable[[np.ndarray, StepResult], None] | None = None,
        progress: bool = True,
        stagger_episodes: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        self.start = time.perf_counter()
        self.worlds = worlds
        self.algorithm = check_algorithm(algorithm)
        if distributed.active() and self.algorithm != "ppo":
            raise ConfigError(
                f"policy.algorithm: {algorithm} learns in one process; data-parallel learners "
                f"({distributed.world_size()} ranks under torchrun) are ppo only"
            )
        if isinstance(config, PpoConfig) and config.num_minibatches > config.num_steps * worlds.num_envs:
            raise ConfigError(
                f"ppo.num_minibatches: {config.num_minibatches} is more than the "
                f"{config.num_steps * worlds.num_envs} samples of a rollout (num_steps x num_envs)"
            )
        task = worlds.task
        self.learner = make_learner(
            algorithm, task.observation_size, task.robot.num_joints, worlds.num_envs, config, device
        )
        self.config = self.learner.config
        self.result = TrainResult(self.learner)
        self.checkpoint_path = checkpoint_path if distributed.is_main() else None
        self.checkpoint_every = checkpoint_every
        self.checkpoint_metadata = dict(checkpoint_metadata or {})
        self.on_iteration = on_iteration
        self.on_step = on_step
        self.progress = progress and distributed.is_main()
        self.stagger_episodes = stagger_episodes
        self.stop = stop
        self.stop_each_step = not distributed.active()  # else at an iteration's end, every rank at once
        self.earlier_wall_s = 0.0  # of the runs this one resumes
        self.tracker = EpisodeTracker(worlds.num_envs)

    def restore(self, source: str | os.PathLike, fine_tune: bool = False) -> None:
        """Continue ``source``'s run: its iteration count, env steps, wall time, history, optimizer,
        normalizer, RNG and the worlds' random state (reset draws, randomization streams and
        curriculum, where fused); an off-policy learner's replay starts empty. With ``fine_tune``,
        ``source`` is another run's checkpoint (its robot may differ, its joints may not):
        training starts from its weights, normalizer and optimizer, with counters, curve and
        budget of its own. Either way it must be of this run's algorithm."""
        task, learner, config = self.worlds.task, self.learner, self.config
        checkpoint = load_checkpoint(
            source,
            expect_joints=task.robot.joint_names,
            expect_observation_size=task.observation_size,
            expect_task=task.name,
        )
        if checkpoint.algorithm != self.algorithm:
            raise CheckpointError(
                f"{source} was trained with {checkpoint.algorithm}, not {self.algorithm}: "
                "train with its algorithm or start a new run"
            )
        if checkpoint.learner_state is None and not fine_tune:
            raise ValueError(f"{source} holds a bare policy, not a training state to resume")
        try:
            if checkpoint.learner_state is None:
                learner.model.load_state_dict(checkpoint.model_state)
            else:
                learner.load_state_dict({"model": checkpoint.model_state, **checkpoint.learner_state})
        except RuntimeError as exc:  # torch: missing keys or shapes that differ
            raise CheckpointError(
                f"{source}: its network does not fit {SECTIONS[self.algorithm]}.actor_hidden "
                f"{config.actor_hidden} / critic_hidden {config.critic_hidden} ({str(exc).splitlines()[0]})"
            ) from exc
        adaptive = isinstance(config, PpoConfig) and config.schedule == "adaptive"
        if fine_tune or not adaptive:
            # A new run (or a fixed rate) starts at the configured rate, not the checkpoint's.
            learner.set_learning_rate(config.learning_rate)
        if fine_tune:
            learner.iteration = learner.env_steps = 0
        else:
            self.result.history = list(checkpoint.metadata.get("history", []))
            self.earlier_wall_s = float(checkpoint.metadata.get("wall_s", 0.0))
            if distributed.is_main():  # the checkpoint's streams are rank 0's worlds'
                self.worlds.restore_random_state(checkpoint.metadata.get("worlds_random_state", {}))

    def collect(self, observations: np.ndarray) -> np.ndarray:
        """Step every world until the learner's rollout is full; the observations after it.
        Raises ``JobStoppedError`` when asked to stop."""
        worlds, learner = self.worlds, self.learner
        while not learner.ready:
            if self.stop_each_step and self.stop is not None and self.stop.is_set():
                raise JobStoppedError("training stopped on request")
            targets = worlds.task.action_to_targets(learner.act(observations))
            step = worlds.step(targets)
            learner.observe(step.reward, step.terminated, step.truncated)
            self.tracker.add(step)
            if self.on_step is not None:
                self.on_step(targets, step)
            observations = worlds.observation()
        return observations

    def update(self, observations: np.ndarray, rollout_start: float) -> dict[str, float]:
        """The learner's update; the iteration's record."""
        learner = self.learner
        update_start = time.perf_counter()
        stats = learner.update(observations)
        now = time.perf_counter()
        episodes = self.tracker.pop()
        run_wall = now - self.start
        return {
            "iteration": learner.iteration,
            "env_steps": learner.env_steps,
            "wall_s": self.earlier_wall_s + run_wall,
            "env_steps_per_s": (learner.env_steps - self.first_env_steps) / run_wall,
            "rollout_s": update_start - rollout_start,
            "update_s": now - update_start,
            "episodes": episodes.episodes,
            "mean_return": episodes.mean_return,
            "success_rate": episodes.success_rate,
            **{REWARD_TERM_PREFIX + name: value for name, value in episodes.reward_terms.items()},
            **stats,
        }

    def log(self, record: dict[str, float], bar: tqdm, budget: tuple[int | None, float | None]) -> None:
        """Keep the record (the history a checkpoint carries) and show it on the progress bar."""
        self.result.history.append(record)
        bar.total = projected_env_steps(record, *budget)
        bar.update(self.learner.env_steps - bar.n)
        bar.set_postfix(
            fps=f"{record['env_steps_per_s']:.0f}",
            ret=f"{record['mean_return']:.1f}",
            success=f"{record['success_rate']:.0%}",
        )

    def save(self) -> None:
        """Write the checkpoint (atomically): training state, history, the worlds' random state."""
        metadata = training_metadata(self.worlds, self.learner)
        metadata.update(
            self.checkpoint_metadata,
            history=self.result.history,
            wall_s=self.earlier_wall_s + time.perf_counter() - self.start,
            worlds_random_state=self.worlds.random_state(),
        )
        save_checkpoint(self.checkpoint_path, self.learner, self.config, metadata)

    def save_on_failure(self) -> str:
        """The checkpoint of a run whose worlds were lost (the partial rollout dropped), and what to say."""
        if self.checkpoint_path is None:
            return f"training stopped at {self.learner.env_steps} env steps, no checkpoint asked for"
        self.save()
        return f"checkpoint at {self.learner.env_steps} env steps in {self.checkpoint_path} (a rerun resumes)"

    def run(self, max_env_steps: int | None = None, max_wall_s: float | None = None) -> TrainResult:
        """Train until ``max_env_steps`` or ``max_wall_s`` (both counted over resumes), a stop
        request, or ``on_iteration`` asking to; before the first step, ``JobStoppedError`` propagates."""
        if max_env_steps is None and max_wall_s is None:
            raise ValueError("give max_env_steps or max_wall_s, or training never ends")
        learner, result = self.learner, self.result
        self.worlds.reset(stagger=self.stagger_episodes)
        distributed.share_learner(learner, self.config.seed)
        self.first_env_steps = learner.env_steps
        bar = tqdm(
            total=max_env_steps if max_wall_s is None else None,  # known once throughput is
            initial=self.first_env_steps,
            unit="step",
            unit_scale=True,
            disable=not self.progress,
            dynamic_ncols=True,
        )
        observations = self.worlds.observation()
        while True:
            rollout_start = time.perf_counter()
            try:
                observations = self.collect(observations)
            except JobStoppedError:
                result.interrupted = True
                break
            except WorldsLostError as exc:
                bar.close()
                raise WorldsLostError(f"{exc}; {self.save_on_failure()}") from exc
            record = self.update(observations, rollout_start)
            self.log(record, bar, (max_env_steps, max_wall_s))
            periodic = self.checkpoint_every and learner.iteration % self.checkpoint_every == 0
            if self.checkpoint_path is not None and periodic:
                self.save()
            done = bool(self.on_iteration(record, learner)) if self.on_iteration is not None else False
            done = (
                done
                or (max_env_steps is not None and learner.env_steps >= max_env_steps)
                or (max_wall_s is not None and record["wall_s"] >= max_wall_s)
            )
            stopping = not self.stop_each_step and self.stop is not None and self.stop.is_set()
            done, result.interrupted = distributed.decide(done, stopping)
            if done or result.interrupted:
                break
        bar.close()
        if self.checkpoint_path is not None:
            self.save()
        result.run_wall_s = time.perf_counter() - self.start
        result.wall_s = self.earlier_wall_s + result.run_wall_s
        result.env_steps = learner.env_steps
        result.run_env_steps = learner.env_steps - self.first_env_steps
        return result


PpoRunner = Runner  # the name that callers from before SAC and TD3 use


def train(
    worlds: Worlds,
    config: LearnerConfig | None = None,
    max_env_steps: int | None = None,
    max_wall_s: float | None = None,
    *,
    resume: str | os.PathLike | None = None,
    fine_tune: bool = False,
    algorithm: str = "ppo",
    **options: Any,
) -> TrainResult:
    """Train ``algorithm`` (``config``: its config class) on ``worlds`` until ``max_env_steps`` or
    ``max_wall_s``: a ``Runner`` (its keyword ``options``), restored from ``resume`` when given,
    run once."""
    if max_env_steps is None and max_wall_s is None:
        raise ValueError("give max_env_steps or max_wall_s, or training never ends")
    runner = Runner(worlds, config, algorithm=algorithm, **options)
    if resume is not None:
        runner.restore(resume, fine_tune)
    return runner.run(max_env_steps, max_wall_s)


def projected_env_steps(
    record: dict[str, float], max_env_steps: int | None, max_wall_s: float | None
) -> int | None:
    """Env steps at which the run will end: at ``max_env_steps`` or, at the throughput so far,
    when ``max_wall_s`` runs out, whichever comes first (the progress bar's total, so its ETA
    is that of the budget that binds)."""
    ends = [max_env_steps] if max_env_steps is not None else []
    if max_wall_s is not None:
        left_s = max(0.0, max_wall_s - record["wall_s"])
        ends.append(round(record["env_steps"] + record["env_steps_per_s"] * left_s))
    return max(min(ends), int(record["env_steps"])) if ends else None


@torch.no_grad()
def evaluate(worlds: Worlds, model: Policy, episodes: int, stop: threading.Event | None = None) -> float:
    """Success rate of the deterministic policy over at least ``episodes`` fresh episodes.

    Every world starts a new episode, and each counted world counts the same number of its
    episodes (the first ``ceil(episodes / num_envs)``; with fewer episodes than worlds, one each
    in the first ``episodes`` worlds). Counting whichever episodes end first instead would favour
    short ones: falls, or goals reached early. Success is as the task reports it at the last
    step. Setting ``stop`` raises ``JobStoppedError`` at the next step.
    """
    model.eval()
    model_device = next(model.parameters()).device
    worlds.reset()
    wanted = np.zeros(worlds.num_envs, dtype=int)
    wanted[: min(episodes, worlds.num_envs)] = -(-episodes // worlds.num_envs)
    counted = np.zeros(worlds.num_envs, dtype=int)
    successes = 0
    while np.any(counted < wanted):
        if stop is not None and stop.is_set():
            raise JobStoppedError("evaluation stopped on request")
        observations = worlds.observation()
        actions = model.act_inference(torch.as_tensor(observations, device=model_device))
        actions = actions.cpu().numpy() if is_host(observations) else actions.to(observations.device)
        step = worlds.step(worlds.task.action_to_targets(actions))
        done = to_host(step.done) & (counted < wanted)
        counted += done
        successes += int(to_host(step.success)[done].sum())
    return successes / int(counted.sum())


def plot_training_curve(history: list[dict[str, float]], png_path: str | os.PathLike) -> Path:
    """Env steps against mean episode return and success rate, as a PNG (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [record["env_steps"] for record in history]
    figure = Figure(figsize=(7, 4), tight_layout=True)
    FigureCanvasAgg(figure)
    returns_axis = figure.add_subplot()
    returns_axis.plot(steps, [record["mean_return"] for record in history], color="tab:blue")
    returns_axis.set_xlabel("env steps")
    returns_axis.set_ylabel("mean episode return", color="tab:blue")
    success_axis = returns_axis.twinx()
    success_axis.plot(steps, [record["success_rate"] for record in history], color="tab:green")
    success_axis.set_ylabel("success rate", color="tab:green")
    success_axis.set_ylim(0.0, 1.0)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path)
    return png_path
