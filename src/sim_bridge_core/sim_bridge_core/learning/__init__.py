"""PPO for the batched worlds, by role (rsl_rl's layout): config, networks, rollout storage,
the transport-agnostic learner, checkpoints/export, and the training loop over any transport."""

from sim_bridge_core.learning.checkpoint import (
    Checkpoint,
    CheckpointError,
    export_policy,
    load_checkpoint,
    save_checkpoint,
)
from sim_bridge_core.learning.config import PpoConfig
from sim_bridge_core.learning.modules import ActorCritic, EmpiricalNormalizer
from sim_bridge_core.learning.ppo import PpoLearner
from sim_bridge_core.learning.runner import (
    PpoRunner,
    TrainResult,
    evaluate,
    plot_training_curve,
    train,
    training_metadata,
)
from sim_bridge_core.learning.storage import RolloutStorage

__all__ = [
    "ActorCritic",
    "Checkpoint",
    "CheckpointError",
    "EmpiricalNormalizer",
    "PpoConfig",
    "PpoLearner",
    "PpoRunner",
    "RolloutStorage",
    "TrainResult",
    "evaluate",
    "export_policy",
    "load_checkpoint",
    "plot_training_curve",
    "save_checkpoint",
    "train",
    "training_metadata",
]
