"""Learning for the batched worlds, by role (rsl_rl's layout): configs, networks, rollout storage
and replay, the transport-agnostic learners (PPO on-policy; SAC and TD3 off-policy), checkpoints
and exports, and the training loop over any transport."""

from __future__ import annotations

import importlib
from typing import Any

# Each public name and the module it lives in. A module (and torch, which most of them need) is
# imported when one of its names is first used, so that the configs (config, offpolicy_config)
# load without torch: bringup and the launch files describe a run in a fraction of the time.
_HOMES = {
    "ALGORITHMS": "offpolicy_config",
    "ActorCritic": "modules",
    "Checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "DeterministicActor": "modules",
    "EmpiricalNormalizer": "modules",
    "Learner": "algorithms",
    "LearnerConfig": "algorithms",
    "NStepWindow": "replay",
    "OFF_POLICY_SECTION": "offpolicy_config",
    "OffPolicyConfig": "offpolicy_config",
    "Policy": "modules",
    "PpoConfig": "config",
    "PpoLearner": "ppo",
    "PpoRunner": "runner",
    "ReplayBuffer": "replay",
    "RolloutStorage": "storage",
    "Runner": "runner",
    "SacLearner": "sac",
    "SquashedGaussianActor": "modules",
    "Td3Learner": "td3",
    "TrainResult": "runner",
    "TwinQ": "modules",
    "evaluate": "runner",
    "export_policy": "checkpoint",
    "load_checkpoint": "checkpoint",
    "make_config": "algorithms",
    "make_learner": "algorithms",
    "make_policy": "algorithms",
    "plot_training_curve": "runner",
    "save_checkpoint": "checkpoint",
    "train": "runner",
    "training_metadata": "runner",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
