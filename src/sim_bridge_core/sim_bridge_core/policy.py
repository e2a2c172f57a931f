"""The policy node's settings and the deployable policy loaded from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from sim_bridge_core.config import ConfigError, setting
from sim_bridge_core.deploy import Deployment
from sim_bridge_core.learning.checkpoint import CheckpointError, load_checkpoint
from sim_bridge_core.models import ModelError, load_robot
from sim_bridge_core.tasks import make_task

MODES = ("deploy", "train", "eval")
TRANSPORTS = ("fused", "ros")


@dataclass(frozen=True)
class PolicyConfig:
    mode: str = setting(
        "deploy",
        "deploy: drive a robot; train: PPO over the simulator; eval: run a checkpoint and report success",
        choices=MODES,
    )
    checkpoint: str = setting("", "checkpoint.pt to deploy or evaluate, or to resume training from")
    model: str = setting("", "deploy: robot model (name or MJCF/URDF path); default: the checkpoint's")
    device: str = setting("cpu", "torch device for inference and training")
    control_rate_hz: float = setting(50.0, "commands per second in deploy mode", low=0.1, high=5000.0)
    output_dir: str = setting(
        "", "run folder for training/eval outputs (default runs/<timestamp>); a training run resumes there"
    )
    transport: str = setting(
        "fused",
        "train/eval: fused = worlds in this process (settings sim.*); "
        "ros = the simulator node's worlds over the lockstep batch/* topics",
        choices=TRANSPORTS,
    )
    simulator: str = setting("/simulator", "ros transport: the simulator node's name")
    max_env_steps: int = setting(
        50_000_000, "train: stop after this many env steps (over resumes)", low=1, high=(1 << 62)
    )
    max_wall_s: float = setting(
        600.0, "train: stop after this many seconds of training (over resumes)", low=0.0, high=1e9
    )
    eval_episodes: int = setting(
        1024, "episodes per evaluation (nominal and randomized physics)", low=1, high=1 << 30
    )
    checkpoint_every: int = setting(
        1, "train: write checkpoint.pt every this many iterations (a kill loses at most these)", low=1
    )
    record: bool = setting(False, "train: record the mirrored worlds to output_dir/rollouts (rosbag2, MCAP)")
    record_split_mb: float = setting(
        64.0, "train: start a new bag file when the current one passes this size", low=0.1, high=1e6
    )
    step_timeout_s: float = setting(
        30.0, "ros transport: fail when the simulator does not answer a step within this time", low=0.1
    )
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
        policy = checkpoint.policy(config.device)
    except (CheckpointError, ModelError) as exc:
        raise ConfigError(f"policy.checkpoint: {exc}") from exc
    if config.position_limits and len(config.position_limits) != 2 * robot.num_joints:
        raise ConfigError(
            f"policy.position_limits: needs lower, upper for each of the {robot.num_joints} joints, "
            f"got {len(config.position_limits)} values"
        )

    return Deployment(
        robot, task, policy, config.max_position_step, config.state_timeout_s, config.position_limits
    )
