"""Training and evaluation jobs, start to outputs (DESIGN §6), whatever transport carries the steps.

A training job trains PPO on ``Worlds``, checkpoints every ``checkpoint_every`` iterations
(a rerun with the same ``output_dir`` resumes from ``checkpoint.pt``), exports the policy,
evaluates it with nominal and with randomized physics, and writes ``summary.json`` and
``training_curve.png``. An evaluation job does the last two steps for a given checkpoint.

``fused`` worlds are built here from the simulator settings (the same ``Simulator`` class the
simulator node runs); ``ros`` worlds come from the caller, already connected to the topics.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim_bridge_core.config import ConfigError
from sim_bridge_core.env import Worlds
from sim_bridge_core.learning import (
    ActorCritic,
    CheckpointError,
    PpoConfig,
    TrainResult,
    evaluate,
    export_policy,
    load_checkpoint,
    plot_training_curve,
    train,
)
from sim_bridge_core.policy import PolicyConfig
from sim_bridge_core.simulator import Simulator, SimulatorConfig

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
CURVE = "training_curve.png"
ROLLOUTS = "rollouts"


def prepare_output_dir(output_dir: str) -> Path:
    """The run folder (default ``runs/<timestamp>``), created and checked writable: ConfigError otherwise."""
    path = Path(output_dir or time.strftime("runs/%Y%m%d-%H%M%S")).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"policy.output_dir: {path} is not writable: {exc.strerror or exc}") from exc
    return path


def fused_simulator(sim: SimulatorConfig, **changes: Any) -> Simulator:
    """Worlds in this process, exactly as the simulator node would build them from ``sim``."""
    return Simulator(dataclasses.replace(sim, **changes))


def evaluate_both(worlds: Worlds, model: ActorCritic, episodes: int) -> dict[str, float]:
    """Success rates with nominal physics and with the randomization in effect (equal without a spec)."""
    worlds.set_randomization_enabled(False)
    nominal = evaluate(worlds, model, episodes)
    worlds.set_randomization_enabled(True)
    randomized = evaluate(worlds, model, episodes)
    return {"eval_success_rate_nominal": nominal, "eval_success_rate_randomized": randomized}


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
        "episode_length_s": float(worlds.episode_steps * worlds.control_dt),
        "randomization": sim.randomization or "none",
        "seed": sim.seed,
    }


def write_summary(output_dir: Path, summary: dict[str, Any]) -> Path:
    path = output_dir / SUMMARY
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return path


@dataclass
class TrainingJob:
    """One training run; ``run`` blocks until the outputs are written and returns the summary."""

    policy: PolicyConfig
    ppo: PpoConfig
    sim: SimulatorConfig
    progress: bool = True
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.output_dir = prepare_output_dir(self.policy.output_dir)
        self.checkpoint_path = self.output_dir / CHECKPOINT
        self.resume_from = self._resume_source()

    def _resume_source(self) -> Path | None:
        """``output_dir/checkpoint.pt`` if an earlier run left one, else ``policy.checkpoint`` if given."""
        if self.checkpoint_path.exists():
            return self.checkpoint_path
        if self.policy.checkpoint:
            source = Path(self.policy.checkpoint)
            try:
                load_checkpoint(source)
            except CheckpointError as exc:
                raise ConfigError(f"policy.checkpoint: {exc}") from exc
            return source
        return None

    def run(
        self, worlds: Worlds | None = None, on_applied: Callable[[bytes], None] | None = None
    ) -> dict[str, Any]:
        """Train on ``worlds`` (default: fused worlds from ``sim``), then evaluate and write the outputs.

        Fused worlds hand each new ``randomization/applied`` message to ``on_applied``, as the
        simulator node would publish it.
        """
        policy = self.policy
        eval_worlds = worlds
        on_step = None
        if worlds is None:
            simulator = fused_simulator(self.sim)
            worlds = simulator.env
            if on_applied is not None:

                def publish_applied(*_: Any) -> None:
                    applied = simulator.randomization_applied()
                    if applied is not None:
                        on_applied(applied)

                publish_applied()
                on_step = publish_applied
            # Evaluation gets fresh worlds with their own seed, not the training worlds' state.
            eval_worlds = fused_simulator(
                self.sim, num_envs=min(self.sim.num_envs, policy.eval_episodes), seed=self.sim.seed + 1
            ).env
        if self.resume_from is not None:
            self.log(f"resuming from {self.resume_from}")
        try:
            result = train(
                worlds,
                self.ppo,
                max_env_steps=policy.max_env_steps,
                max_wall_s=policy.max_wall_s,
                on_step=on_step,
                checkpoint_path=self.checkpoint_path,
                checkpoint_every=policy.checkpoint_every,
                resume=self.resume_from,
                device=policy.device,
                progress=self.progress,
            )
        except CheckpointError as exc:
            raise ConfigError(f"policy.checkpoint: {exc}") from exc
        return self.finish(worlds, eval_worlds, result)

    def finish(self, worlds: Worlds, eval_worlds: Worlds, result: TrainResult) -> dict[str, Any]:
        """Export, evaluate, plot and summarize a finished training."""
        exported = export_policy(result.model, self.output_dir)
        rates = evaluate_both(eval_worlds, result.model, self.policy.eval_episodes)
        plot_training_curve(result.history, self.output_dir / CURVE)
        last = result.history[-1] if result.history else {}
        summary = {
            "env_steps": result.env_steps,
            "wall_s": result.wall_s,
            "env_steps_per_s": result.env_steps_per_s,
            **describe_run(worlds, self.policy.transport, self.sim),
            **rates,
            "eval_episodes": self.policy.eval_episodes,
            "iterations": result.learner.iteration,
            "train_success_rate": last.get("success_rate"),
            "train_mean_return": last.get("mean_return"),
            "resumed_from": str(self.resume_from) if self.resume_from else None,
            "checkpoint": str(self.checkpoint_path),
            "exported": {kind: str(path) for kind, path in exported.items()},
            "training_curve": str(self.output_dir / CURVE),
        }
        write_summary(self.output_dir, summary)
        return summary


def run_evaluation(
    policy: PolicyConfig, sim: SimulatorConfig, worlds: Worlds | None = None
) -> dict[str, Any]:
    """Evaluate ``policy.checkpoint`` with nominal and randomized physics; write summary.json."""
    if not policy.checkpoint:
        raise ConfigError("policy.checkpoint: required in eval mode")
    output_dir = prepare_output_dir(policy.output_dir)
    if worlds is None:
        worlds = fused_simulator(sim, num_envs=min(sim.num_envs, policy.eval_episodes)).env
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
    start = time.perf_counter()
    rates = evaluate_both(worlds, model, policy.eval_episodes)
    summary = {
        "checkpoint": str(Path(policy.checkpoint).resolve()),
        **describe_run(worlds, policy.transport, sim),
        **rates,
        "eval_episodes": policy.eval_episodes,
        "eval_wall_s": time.perf_counter() - start,
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
    "prepare_output_dir",
    "run_evaluation",
]
