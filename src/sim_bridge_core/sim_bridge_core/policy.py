"""The policy node's settings and the deployable policy loaded from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sim_bridge_core.config import ConfigError, setting
from sim_bridge_core.deploy import Deployment
from sim_bridge_core.learning.checkpoint import CheckpointError, load_checkpoint
from sim_bridge_core.models import ModelError, load_robot
from sim_bridge_core.tasks import make_task

MODES = ("deploy", "train", "eval")


@dataclass(frozen=True)
class PolicyConfig:
    mode: str = setting(
        "deploy",
        "deploy: drive a robot; train: PPO over the simulator; eval: run a checkpoint and report success",
        choices=MODES,
    )
    checkpoint: str = setting("", "checkpoint.pt to deploy or evaluate, or to resume training from")
    model: str = setting("", "robot model (built-in name or MJCF/URDF path); default: the checkpoint's")
    device: str = setting("cpu", "torch device for inference and training")
    control_rate_hz: float = setting(50.0, "commands per second in deploy mode", low=0.1, high=5000.0)
    output_dir: str = setting("", "run folder for training/eval outputs (default runs/<timestamp>)")
    max_position_step: float = setting(
        0.1,
        "safety: largest target change from the measured position per control period, rad (or m)",
        low=0.0,
        high=100.0,
    )
    state_timeout_s: float = setting(
        0.2,
        "safety: joint_states older than this stop commands (one hold command is sent)",
        low=0.001,
        high=3600.0,
    )
    position_limits: list[float] = setting(
        [], "safety: lower, upper per joint, flattened in the model's joint order; empty = the model's limits"
    )
    dry_run: bool = setting(False, "log commands instead of publishing them", read_only=False)


def load_deployment(config: PolicyConfig) -> Deployment:
    """A Deployment running the checkpoint's policy on its robot; clear one-line errors otherwise."""
    if not config.checkpoint:
        raise ConfigError("policy.checkpoint: required in deploy mode")
    try:
        checkpoint = load_checkpoint(config.checkpoint)
        robot = load_robot(config.model or checkpoint.metadata["model"])
        task = make_task(checkpoint.metadata["task"], robot)
        checkpoint = load_checkpoint(
            config.checkpoint, expect_joints=robot.joint_names, expect_observation_size=task.observation_size
        )
        model = checkpoint.build_model().to(config.device)
    except (CheckpointError, ModelError) as exc:
        raise ConfigError(f"policy.checkpoint: {exc}") from exc
    if config.position_limits and len(config.position_limits) != 2 * robot.num_joints:
        raise ConfigError(
            f"policy.position_limits: needs lower, upper for each of the {robot.num_joints} joints, "
            f"got {len(config.position_limits)} values"
        )

    @torch.no_grad()
    def policy(observations: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(observations, dtype=torch.float32, device=config.device)
        return model.act_inference(tensor).cpu().numpy()

    return Deployment(
        robot, task, policy, config.max_position_step, config.state_timeout_s, config.position_limits
    )
