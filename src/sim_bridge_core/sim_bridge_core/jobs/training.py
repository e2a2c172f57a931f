"""Training and evaluation jobs, start to outputs, whatever transport carries the steps (the outputs:
docs/policy.md, "Outputs").

A training job trains PPO on ``Worlds``, checkpoints every ``checkpoint_every`` iterations
(a rerun with the same ``output_dir`` resumes from ``checkpoint.pt``), writes TensorBoard event
files as it goes, exports the policy, evaluates it with nominal and with randomized physics,
and writes ``summary.json`` and ``training_curve.png``. An evaluation job does the last two
steps for a given checkpoint. A job asked to stop (``stop``: SIGINT/SIGTERM) ends at the next
step; training still writes its checkpoint, closes the bag and writes every output but the
evaluation. A recording that fails stops with one error line; training goes on.

``fused`` worlds are built here from the simulator settings (the same ``Simulator`` class the
simulator node runs); ``ros`` worlds come from the caller, already connected to the topics.

Under torchrun (``learning.distributed``, docs/scale-out.md) every rank runs the job on fused
worlds of its own, seeded by its rank; rank 0 alone writes: checkpoint, bag, TensorBoard,
exports, evaluation, videos, plot and summary. The other ranks train, then return at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim_bridge_core.arrays import to_host
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.contract import PolicyContract
from sim_bridge_core.deploy.policy import PolicyConfig, command_safety
from sim_bridge_core.envs.batched import BatchedEnv, JobStoppedError, StepResult, Worlds
from sim_bridge_core.jobs.robustness import RobustnessSweep
from sim_bridge_core.jobs.videos import VIDEOS, write_policy_videos
from sim_bridge_core.learning import (
    CheckpointError,
    TrainResult,
    distributed,
    evaluate,
    export_policy,
    load_checkpoint,
    plot_training_curve,
    train,
)
from sim_bridge_core.learning.algorithms import CONFIGS, SECTIONS, LearnerConfig
from sim_bridge_core.learning.modules import Policy
from sim_bridge_core.learning.tensorboard_log import TensorBoardLog
from sim_bridge_core.models import RobotModel, load_robot_config
from sim_bridge_core.recording import RecordingError, RolloutRecorder
from sim_bridge_core.recording.bag import ROLLOUTS, prepare_output_dir, rollouts_dir
from sim_bridge_core.rendering import require_gl, sample_mp4_frames
from sim_bridge_core.simulator.core import (
    Simulator,
    SimulatorConfig,
    robot_simulator_parameters,
    simulated_robot,
)
from sim_bridge_core.simulator.protocol import task_signal_rows
from sim_bridge_core.simulator.shards import ShardedWorlds
from sim_bridge_core.tasks import Task

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
CURVE = "training_curve.png"
VIDEO_EPISODES = 2  # eval: videos of this many nominal and this many randomized episodes


def make_task_for(sim: SimulatorConfig) -> Task:
    """The task the simulator settings describe (for worlds reached over the topics)."""
    return simulated_robot(sim, "sim")[1]


def fused_simulator(sim: SimulatorConfig, resident: bool = False, **changes: Any) -> Simulator:
    """Worlds in this process, exactly as the simulator node would build them from ``sim``
    (``resident``: their arrays stay on the warp backend's device)."""
    return Simulator(dataclasses.replace(sim, **changes), resident=resident)


def resident_worlds(sim: SimulatorConfig, algorithm: str) -> bool:
    """Whether fused training keeps its worlds on the device: MuJoCo Warp worlds trained by PPO
    (SAC and TD3 replay from host arrays)."""
    return sim.backend == "warp" and algorithm == "ppo"


def prepare_run_dir(policy: PolicyConfig) -> Path:
    """The run folder (``prepare_output_dir``: default ``runs/<timestamp>``, created and checked
    writable). Under torchrun the ranks join here (``distributed.init``), a job they cannot share
    fails naming its key, and rank 0 alone prepares the folder and tells the others its path: they
    write nothing there."""
    ranks = distributed.launch().world_size
    if ranks > 1:
        if policy.mode != "train":
            raise ConfigError(f"policy.mode: {policy.mode} runs in one process, not in {ranks} ranks")
        if policy.transport != "fused":
            raise ConfigError(
                f"policy.transport: torchrun's {ranks} ranks each train on fused worlds of their own: "
                "set transport fused (ros: one learner over simulator shards, docs/scale-out.md)"
            )
        distributed.init(policy.device)
    path = str(prepare_output_dir(policy.output_dir)) if distributed.is_main() else None
    return Path(distributed.broadcast_object(path))


def rank_simulator_changes(sim: SimulatorConfig) -> dict[str, Any]:
    """What a data-parallel rank changes in its fused worlds' settings (nothing in one process): a
    seed of its own (``distributed.rank_seed``) and its share of this host's cores."""
    if not distributed.active():
        return {}
    return {"seed": distributed.rank_seed(sim.seed), "threads": sim.threads or distributed.cores_per_rank()}


def evaluation_worlds(sim: SimulatorConfig, episodes: int, **changes: Any) -> BatchedEnv:
    """Fresh fused worlds for an evaluation of ``episodes`` episodes, under the randomization
    spec's full ranges (fresh worlds would start at the first stage of its curriculum)."""
    env = fused_simulator(sim, num_envs=min(sim.num_envs, episodes), **changes).env
    if env.randomizer is not None:
        env.randomizer.complete_curriculum()
    return env


def evaluate_both(
    worlds: Worlds, model: Policy, episodes: int, stop: threading.Event | None = None
) -> dict[str, float]:
    """Success rates with nominal physics and with the randomization in effect (equal without a spec)."""
    worlds.set_randomization_enabled(False)
    nominal = evaluate(worlds, model, episodes, stop)
    worlds.set_randomization_enabled(True)
    randomized = evaluate(worlds, model, episodes, stop)
    return {"eval_success_rate_nominal": nominal, "eval_success_rate_randomized": randomized}


def evaluation_videos(
    sim: SimulatorConfig, model: Policy, output_dir: Path, episodes: int, **options: Any
) -> dict[str, Any]:
    """Videos of ``model`` in one fresh fused world (whatever transport the evaluation used), to
    ``output_dir/videos``; the summary keys that list them and what they cost."""
    start = time.perf_counter()
    paths = write_policy_videos(evaluation_worlds(sim, 1), model, output_dir / VIDEOS, episodes, **options)
    return {"videos": [str(path) for path in paths], "video_wall_s": time.perf_counter() - start}


def describe_run(worlds: Worlds, transport: str, sim: SimulatorConfig) -> dict[str, Any]:
    """The summary keys that say what was simulated."""
    robot = worlds.task.robot
    return {
        "num_envs": worlds.num_envs,
        "transport": transport,
        "model": robot.name,
        "model_path": str(robot.path),
        "task": worlds.task.name,
        "control_dt": float(worlds.control_dt),
        "physics_dt": float(robot.physics_dt),
        "model_parameters": robot.parameters.to_mapping(),
        "command_interface": worlds.command_interface,
        "episode_length_s": float(worlds.episode_steps * worlds.control_dt),
        "randomization": sim.randomization or "none",
        "seed": sim.seed,
        "simulator_shards": worlds.names if isinstance(worlds, ShardedWorlds) else [],
    }


def write_summary(output_dir: Path, summary: dict[str, Any]) -> Path:
    path = output_dir / SUMMARY
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return path


StateReader = Callable[[StepResult], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
AppliedReader = Callable[[], tuple[np.ndarray, tuple[str, ...]] | None]


def recording_hook(
    recorder: RolloutRecorder,
    worlds: Worlds,
    read_state: StateReader,
    read_applied: AppliedReader,
    on_error: Callable[[str], None],
) -> Callable[[np.ndarray, StepResult], None]:
    """A ``train`` step hook writing the recorded worlds' command, state and task signals.

    ``randomization/applied`` (all worlds) is written when the recorded worlds' values
    change, not whenever any world resets, which keeps the bag small with thousands of worlds.
    A failed write (e.g. a full disk) goes to ``on_error`` once and ends the recording, not
    the training: the bag stays as at its last flush (see recording.bag).
    """
    rows = list(recorder.worlds)
    period_ns = round(worlds.control_dt * 1e9)
    last: dict[str, Any] = {}

    def on_step(targets: np.ndarray, result: StepResult) -> None:
        applied = read_applied()  # also what publishes randomization/applied (fused worlds)
        if recorder.closed:
            return
        now = worlds.time_ns
        try:
            recorder.record_command(now - period_ns, to_host(targets))
            recorder.record_state(now, *read_state(result))
            if applied is None:
                return
            values, names = applied
            if last.get("names") != names or not np.array_equal(last["rows"], values[rows]):
                recorder.record_applied(now, values, names)
                last.update(names=names, rows=values[rows].copy())
        except RecordingError as exc:
            on_error(f"recording stopped, training goes on: {exc}")

    return on_step


@dataclass(frozen=True)
class _Feed:
    """Where a training job's steps come from: the worlds, the worlds it evaluates on, and how the
    recording reads their state and their randomization."""

    worlds: Worlds
    eval_worlds: Worlds | None  # None: a data-parallel rank above 0, which does not evaluate
    task_fields: tuple[str, ...]
    read_state: StateReader
    read_applied: AppliedReader | None
    publishes_applied: bool = False  # reading randomization/applied is also what publishes it


def _remote_feed(worlds: Worlds, read_applied: AppliedReader | None) -> _Feed:
    """Worlds over the topics: the recording reads what was last received there."""

    def read_state(result: StepResult) -> tuple[np.ndarray, ...]:
        return worlds.positions, worlds.velocities, worlds.efforts, worlds.signals

    return _Feed(worlds, worlds, worlds.task_fields, read_state, read_applied)


@dataclass
class TrainingJob:
    """One training run; ``run`` blocks until the outputs are written and returns the summary.
    ``learning`` holds the settings of ``policy.algorithm`` (``PpoConfig`` or ``OffPolicyConfig``)."""

    policy: PolicyConfig
    learning: LearnerConfig
    sim: SimulatorConfig
    progress: bool = True
    log: Callable[[str], None] = print
    log_error: Callable[[str], None] = functools.partial(print, file=sys.stderr)

    def __post_init__(self) -> None:
        algorithm = self.policy.algorithm
        if not isinstance(self.learning, CONFIGS[algorithm]):
            raise ConfigError(
                f"policy.algorithm: {algorithm} takes {SECTIONS[algorithm]}.* settings, "
                f"not a {type(self.learning).__name__}"
            )
        self.output_dir = prepare_run_dir(self.policy)
        self.world_size = distributed.world_size()  # data-parallel ranks (1: a single process)
        self.checkpoint_path = self.output_dir / CHECKPOINT
        # Ranks above 0 read no checkpoint: they start from rank 0's learner (distributed.share_learner).
        self.resume_from, self.fine_tune = self._resume_source() if distributed.is_main() else (None, False)

    def _resume_source(self) -> tuple[Path | None, bool]:
        """``output_dir/checkpoint.pt`` if an earlier run left one (resumed), else ``policy.checkpoint``
        if given (fine-tuned: its weights, this run's own counters and budget), and which it is."""
        if self.checkpoint_path.exists():
            return self.checkpoint_path, False
        if self.policy.checkpoint:
            source = Path(self.policy.checkpoint)
            try:
                load_checkpoint(source)
            except CheckpointError as exc:
                raise ConfigError(f"policy.checkpoint: {exc}") from exc
            return source, True
        return None, False

    def run(
        self,
        worlds: Worlds | None = None,
        on_applied: Callable[[bytes], None] | None = None,
        read_applied: AppliedReader | None = None,
        stop: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Train on ``worlds`` (default: fused worlds from ``sim``), then evaluate and write the outputs.

        Fused worlds hand each new ``randomization/applied`` message to ``on_applied``, as the
        simulator node would publish it; for worlds over the topics, ``read_applied`` gives
        the values last received there (for the recording). Setting ``stop`` ends training
        early (summary ``interrupted``: true, no evaluation).
        """
        policy, main = self.policy, distributed.is_main()  # only rank 0 writes, and publishes
        if policy.video and main:
            require_gl()  # before training, not after it
        if worlds is None:
            feed = self._fused_feed(on_applied if main else None)
        else:
            feed = _remote_feed(worlds, read_applied)
        worlds = feed.worlds
        recorder = self._open_recorder(worlds, feed.task_fields) if policy.record and main else None
        safety = command_safety(policy, worlds.task.robot, worlds.control_dt)
        self.contract = PolicyContract.describe(
            worlds.task, safety, worlds.control_dt, worlds.command_interface
        )
        if self.resume_from is not None:
            self.log(f"{'fine-tuning' if self.fine_tune else 'resuming'} from {self.resume_from}")
        with TensorBoardLog(self.output_dir) if main else contextlib.nullcontext() as board:
            try:
                result = train(
                    worlds,
                    self.learning,
                    algorithm=policy.algorithm,
                    max_env_steps=policy.max_env_steps,
                    max_wall_s=policy.max_wall_s,
                    resume=self.resume_from,
                    fine_tune=self.fine_tune,
                    on_iteration=board.iteration if board is not None else None,
                    on_step=self._step_hook(feed, recorder),
                    checkpoint_path=self.checkpoint_path,
                    checkpoint_every=policy.checkpoint_every,
                    checkpoint_metadata={"contract": self.contract.to_dict()},
                    device=policy.device,
                    progress=self.progress,
                    stop=stop,
                )
            except CheckpointError as exc:
                raise ConfigError(f"policy.checkpoint: {exc}") from exc
            finally:
                self._close_recorder(recorder)
                distributed.close()  # the ranks are done together; rank 0 evaluates alone
            if self.world_size > 1:
                self._log_rank(result)
            if not main:
                return {"rank": distributed.launch().rank, "env_steps": result.env_steps}
            return self.finish(worlds, feed.eval_worlds, result, board, stop)

    def _log_rank(self, result: TrainResult) -> None:
        """A data-parallel rank's last word: every rank prints the same digest of the parameters
        (the checkpoint's), or they did not train one model."""
        digest = distributed.state_digest(result.model.state_dict())
        rank = distributed.launch().rank
        self.log(f"rank {rank} of {self.world_size}: {result.env_steps} env steps, parameters {digest}")

    def _fused_feed(self, on_applied: Callable[[bytes], None] | None) -> _Feed:
        """Fused worlds from ``sim``, evaluated later on fresh worlds with their own seed (not the
        training worlds' state); each new ``randomization/applied`` message goes to ``on_applied``."""
        resident = resident_worlds(self.sim, self.policy.algorithm)
        simulator = fused_simulator(self.sim, resident, **rank_simulator_changes(self.sim))
        env = simulator.env
        if resident:
            self.log(f"worlds, observations, rewards and resets stay on {env.backend.device}")
        if env.randomizer is not None and not distributed.is_main():  # its own draws too
            env.randomizer.seed(distributed.rank_seed(env.randomizer.spec.seed))
            env.randomizer.resample()

        def read_state(result: StepResult) -> tuple[np.ndarray, ...]:
            signals = task_signal_rows(result.on_host(), to_host(env.inputs), env.time_ns, env.control_dt)
            state = env.measured_positions(), env.measured_velocities(), env.backend.joint_efforts()
            return (*(to_host(values) for values in state), signals)

        def read_applied() -> tuple[np.ndarray, tuple[str, ...]] | None:
            message = simulator.randomization_applied()
            if message is None:
                return None
            if on_applied is not None:
                on_applied(message)
            if env.randomizer is None:  # recorded as what the simulator publishes: no parameters
                return np.zeros((env.num_envs, 0)), ()
            return env.randomizer.applied()

        read_applied()  # what is in effect from the start
        eval_worlds = None  # ranks above 0 do not evaluate
        if distributed.is_main():
            eval_worlds = evaluation_worlds(
                self.sim, self.policy.eval_episodes, resident=resident, seed=self.sim.seed + 1
            )
        return _Feed(
            env, eval_worlds, simulator.task_fields, read_state, read_applied, publishes_applied=True
        )

    def _step_hook(
        self, feed: _Feed, recorder: RolloutRecorder | None
    ) -> Callable[[np.ndarray, StepResult], None] | None:
        """What runs after every control step: the recording, else (fused) the publishing of each
        new ``randomization/applied``, else nothing."""
        if recorder is not None:
            return recording_hook(
                recorder, feed.worlds, feed.read_state, feed.read_applied or (lambda: None), self.log_error
            )
        if feed.publishes_applied and feed.read_applied is not None:
            read_applied = feed.read_applied
            return lambda targets, result: read_applied()
        return None

    def _close_recorder(self, recorder: RolloutRecorder | None) -> None:
        if recorder is None:
            return
        try:
            recorder.close()
        except RecordingError as exc:  # the last file could not be finished; the rest is listed
            self.log_error(f"recording stopped: {exc}")

    def _open_recorder(self, worlds: Worlds, task_fields: tuple[str, ...]) -> RolloutRecorder:
        sim = self.sim
        recorded = [0] if worlds.num_envs == 1 else sorted(set(sim.mirror_envs))
        path = rollouts_dir(self.output_dir)
        self.log(f"recording worlds {recorded} to {path}")
        try:
            return RolloutRecorder(
                path,
                worlds.task.robot.joint_names,
                recorded,
                task_fields,
                worlds.control_dt,
                max_bag_size_mb=self.policy.record_split_mb,
            )
        except RecordingError as exc:
            raise ConfigError(f"policy.record: {exc}") from exc

    def finish(
        self,
        worlds: Worlds,
        eval_worlds: Worlds,
        result: TrainResult,
        board: TensorBoardLog | None = None,
        stop: threading.Event | None = None,
    ) -> dict[str, Any]:
        """Export, evaluate, plot and summarize a finished training (stopped: not evaluated)."""
        exported = export_policy(result.model, self.output_dir, self.contract)
        interrupted = result.interrupted
        rates = dict.fromkeys(("eval_success_rate_nominal", "eval_success_rate_randomized"))
        if not interrupted:
            try:
                rates = evaluate_both(eval_worlds, result.model, self.policy.eval_episodes, stop)
            except JobStoppedError:
                interrupted = True
        videos: dict[str, Any] = {}
        if self.policy.video and not interrupted:
            prefix = f"training_{result.env_steps}_"
            videos = evaluation_videos(
                self.sim, result.model, self.output_dir, 1, prefix=prefix, randomized=(False,)
            )
        if board is not None:
            board.evaluation(rates, result.env_steps)
            for path in videos.get("videos", []):  # every other frame at half size: a GIF is large
                frames = sample_mp4_frames(path, 10**6)[::2, ::2, ::2]
                board.video("eval/video", frames, result.env_steps, 0.5 / self.sim.control_dt)
        plot_training_curve(result.history, self.output_dir / CURVE)
        last = result.history[-1] if result.history else {}
        summary = {
            "env_steps": result.env_steps,
            "wall_s": result.wall_s,
            "env_steps_per_s": result.env_steps_per_s,
            **describe_run(worlds, self.policy.transport, self.sim),
            "num_envs": worlds.num_envs * self.world_size,  # every rank's worlds
            "world_size": self.world_size,
            "algorithm": self.policy.algorithm,
            **rates,
            **videos,
            "eval_episodes": self.policy.eval_episodes,
            "iterations": result.learner.iteration,
            "train_success_rate": last.get("success_rate"),
            "train_mean_return": last.get("mean_return"),
            "resumed_from": str(self.resume_from) if self.resume_from and not self.fine_tune else None,
            "fine_tuned_from": str(self.resume_from) if self.fine_tune else None,
            "interrupted": interrupted,
            "checkpoint": str(self.checkpoint_path),
            "exported": {kind: str(path) for kind, path in exported.items()},
            "training_curve": str(self.output_dir / CURVE),
        }
        write_summary(self.output_dir, summary)
        return summary


def evaluate_compare_robot(
    policy: PolicyConfig, sim: SimulatorConfig, robot: RobotModel, model: Policy
) -> dict[str, Any]:
    """Success on ``policy.compare_robot`` (e.g. an identified robot.yaml), nominal physics, fused
    worlds otherwise as ``sim``: the figure to put beside ``eval_success_rate_nominal``."""
    source = Path(policy.compare_robot)
    config, path, _ = load_robot_config(str(source), source.parent)
    worlds = evaluation_worlds(
        sim, policy.eval_episodes, **robot_simulator_parameters(config, sim.task), randomization=""
    )
    if worlds.task.robot.joint_names != robot.joint_names:
        raise ConfigError(
            f"policy.compare_robot: {path} has joints {list(worlds.task.robot.joint_names)}, "
            f"not {list(robot.joint_names)}"
        )
    return {
        "compare_robot": str(path.resolve()),
        "eval_success_rate_compare_robot": evaluate(worlds, model, policy.eval_episodes),
    }


def run_evaluation(
    policy: PolicyConfig,
    sim: SimulatorConfig,
    worlds: Worlds | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Evaluate ``policy.checkpoint`` with nominal and randomized physics; write summary.json.

    Setting ``stop`` raises ``JobStoppedError`` at the next step (nothing is written).
    """
    if not policy.checkpoint:
        raise ConfigError("policy.checkpoint: required in eval mode")
    if policy.video:
        require_gl()
    output_dir = prepare_output_dir(policy.output_dir)
    if worlds is None:
        worlds = evaluation_worlds(sim, policy.eval_episodes)
    robot = worlds.task.robot
    try:
        checkpoint = load_checkpoint(
            policy.checkpoint,
            expect_joints=robot.joint_names,
            expect_observation_size=worlds.task.observation_size,
            expect_task=worlds.task.name,
        )
        model = checkpoint.build_model().to(policy.device)
    except CheckpointError as exc:
        raise ConfigError(f"policy.checkpoint: {exc}") from exc
    sweep = RobustnessSweep.prepare(policy, sim, worlds.task) if policy.sweep else None  # checked first
    start = time.perf_counter()
    rates = evaluate_both(worlds, model, policy.eval_episodes, stop)
    if policy.compare_robot:
        rates.update(evaluate_compare_robot(policy, sim, robot, model))
    eval_wall_s = time.perf_counter() - start
    if sweep is not None:  # fused worlds, whatever transport the evaluation used
        rates.update(sweep.run(model, output_dir, functools.partial(evaluation_worlds, sim), stop))
    if policy.video:
        rates.update(evaluation_videos(sim, model, output_dir, VIDEO_EPISODES))
    summary = {
        "checkpoint": str(Path(policy.checkpoint).resolve()),
        **describe_run(worlds, policy.transport, sim),
        "algorithm": checkpoint.algorithm,
        **rates,
        "eval_episodes": policy.eval_episodes,
        "eval_wall_s": eval_wall_s,
        "trained_env_steps": checkpoint.metadata.get("env_steps"),
    }
    write_summary(output_dir, summary)
    return summary


__all__ = [
    "CHECKPOINT",
    "CURVE",
    "ROLLOUTS",
    "SUMMARY",
    "TrainingJob",
    "describe_run",
    "evaluate_both",
    "fused_simulator",
    "make_task_for",
    "prepare_output_dir",
    "prepare_run_dir",
    "run_evaluation",
]
