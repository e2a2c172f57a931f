"""The learners by name: PPO (on-policy), SAC and TD3 (off-policy), each with its config class,
its config section and its deployable policy module. Jobs, checkpoints and the runner choose
through here, so an algorithm is added in one table."""

from __future__ import annotations

from typing import Any

import torch

from sim_bridge_core.config import ConfigError
from sim_bridge_core.learning.config import PpoConfig
from sim_bridge_core.learning.modules import ActorCritic, DeterministicActor, Policy, SquashedGaussianActor
from sim_bridge_core.learning.offpolicy_config import ALGORITHMS, OFF_POLICY_SECTION, OffPolicyConfig
from sim_bridge_core.learning.ppo import PpoLearner
from sim_bridge_core.learning.sac import SacLearner
from sim_bridge_core.learning.td3 import Td3Learner

Learner = PpoLearner | SacLearner | Td3Learner
LearnerConfig = PpoConfig | OffPolicyConfig

LEARNERS: dict[str, type[Learner]] = {"ppo": PpoLearner, "sac": SacLearner, "td3": Td3Learner}
CONFIGS: dict[str, type[LearnerConfig]] = {"ppo": PpoConfig, "sac": OffPolicyConfig, "td3": OffPolicyConfig}
SECTIONS = {"ppo": "ppo", "sac": OFF_POLICY_SECTION, "td3": OFF_POLICY_SECTION}
POLICIES: dict[str, type[Policy]] = {
    "ppo": ActorCritic,
    "sac": SquashedGaussianActor,
    "td3": DeterministicActor,
}


def check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm: must be one of {', '.join(ALGORITHMS)}, got '{algorithm}'")
    return algorithm


def make_config(algorithm: str, values: dict[str, Any] | None = None) -> LearnerConfig:
    """``algorithm``'s config from plain values (defaults for those missing); ConfigError names a bad key
    by its section (``ppo`` or ``off_policy``)."""
    algorithm = check_algorithm(algorithm)
    return CONFIGS[algorithm].from_dict(dict(values or {}), SECTIONS[algorithm])


def make_learner(
    algorithm: str,
    observation_size: int,
    action_size: int,
    num_envs: int,
    config: LearnerConfig | None = None,
    device: str | torch.device = "cpu",
) -> Learner:
    """A fresh learner for ``num_envs`` worlds; ``config`` must be the algorithm's config class."""
    algorithm = check_algorithm(algorithm)
    config = config if config is not None else CONFIGS[algorithm]()
    if not isinstance(config, CONFIGS[algorithm]):
        raise TypeError(f"{algorithm} takes a {CONFIGS[algorithm].__name__}, not a {type(config).__name__}")
    return LEARNERS[algorithm](observation_size, action_size, num_envs, config, device)


def make_policy(algorithm: str, observation_size: int, action_size: int, config: LearnerConfig) -> Policy:
    """An untrained deployable module of the shape ``config`` gives (to load weights into)."""
    if check_algorithm(algorithm) == "ppo":
        return ActorCritic(
            observation_size, action_size, config.actor_hidden, config.critic_hidden, config.init_log_std
        )
    return POLICIES[algorithm](observation_size, action_size, config.actor_hidden)


def algorithm_of(policy: Policy) -> str:
    """The algorithm whose deployable module ``policy`` is."""
    return next(name for name, cls in POLICIES.items() if isinstance(policy, cls))
