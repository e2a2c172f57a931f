"""Learning for the batched worlds, by role (rsl_rl's layout): configs, networks, rollout storage
and replay, the transport-agnostic learners (PPO on-policy; SAC and TD3 off-policy), checkpoints
and exports, and the training loop over any transport."""

from sim_bridge_core.learning.algorithms import (
    Learner,
    LearnerConfig,
    make_config,
    make_learner,
    make_policy,
)
from sim_bridge_core.learning.checkpoint import (
    Checkpoint,
    CheckpointError,
    export_policy,
    load_checkpoint,
    save_checkpoint,
)
from sim_bridge_core.learning.config import PpoConfig
from sim_bridge_core.learning.modules import (
    ActorCritic,
    DeterministicActor,
    EmpiricalNormalizer,
    Policy,
    SquashedGaussianActor,
    TwinQ,
)
from sim_bridge_core.learning.offpolicy_config import ALGORITHMS, OFF_POLICY_SECTION, OffPolicyConfig
from sim_bridge_core.learning.ppo import PpoLearner
from sim_bridge_core.learning.replay import NStepWindow, ReplayBuffer
from sim_bridge_core.learning.runner import (
    PpoRunner,
    Runner,
    TrainResult,
    evaluate,
    plot_training_curve,
    train,
    training_metadata,
)
from sim_bridge_core.learning.sac import SacLearner
from sim_bridge_core.learning.storage import RolloutStorage
from sim_bridge_core.learning.td3 import Td3Learner

__all__ = [
    "ALGORITHMS",
    "OFF_POLICY_SECTION",
    "ActorCritic",
    "Checkpoint",
    "CheckpointError",
    "DeterministicActor",
    "EmpiricalNormalizer",
    "Learner",
    "LearnerConfig",
    "NStepWindow",
    "OffPolicyConfig",
    "Policy",
    "PpoConfig",
    "PpoLearner",
    "PpoRunner",
    "ReplayBuffer",
    "RolloutStorage",
    "Runner",
    "SacLearner",
    "SquashedGaussianActor",
    "Td3Learner",
    "TrainResult",
    "TwinQ",
    "evaluate",
    "export_policy",
    "load_checkpoint",
    "make_config",
    "make_learner",
    "make_policy",
    "plot_training_curve",
    "save_checkpoint",
    "train",
    "training_metadata",
]
