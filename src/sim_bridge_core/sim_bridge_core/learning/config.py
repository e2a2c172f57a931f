"""PPO settings, in the one config schema (YAML, ROS parameters and checkpoints share them).

The defaults are sized for massively parallel training on a small machine: thousands of
worlds, a short horizon, few large minibatches, small networks, and an adaptive learning
rate that keeps each update near ``desired_kl`` (the rsl_rl recipe).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sim_bridge_core.config import from_mapping, setting

SCHEDULES = ("adaptive", "fixed")


@dataclass(frozen=True)
class PpoConfig:
    num_steps: int = setting(
        24, "rollout horizon: control steps per world between updates", low=1, high=100_000
    )
    num_epochs: int = setting(4, "passes over each rollout per update", low=1, high=1000)
    num_minibatches: int = setting(2, "minibatches per epoch (rollout = num_steps x num_envs samples)", low=1)
    learning_rate: float = setting(
        1e-3, "Adam learning rate (the start value when adaptive)", low=1e-7, high=1.0
    )
    schedule: str = setting(
        "adaptive", "adaptive: scale the rate to keep the KL near desired_kl; fixed", choices=SCHEDULES
    )
    desired_kl: float = setting(0.01, "target KL divergence per minibatch for the adaptive rate", low=1e-6)
    max_learning_rate: float = setting(
        3e-3, "ceiling of the adaptive rate (higher rates overshoot into collapses)", low=1e-7, high=1.0
    )
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0)
    gae_lambda: float = setting(0.95, "GAE lambda", low=0.0, high=1.0)
    clip: float = setting(0.2, "PPO ratio clip", low=0.0, high=10.0)
    value_coef: float = setting(1.0, "value loss weight", low=0.0)
    clip_value_loss: bool = setting(False, "clip value updates to +-clip around the rollout's values")
    entropy_coef: float = setting(0.0, "entropy bonus weight", low=0.0)
    max_grad_norm: float = setting(1.0, "gradient norm clip", low=0.0)
    actor_hidden: list[int] = setting([128, 64], "actor MLP hidden layer sizes", low=1)
    critic_hidden: list[int] = setting([128, 64], "critic MLP hidden layer sizes", low=1)
    init_log_std: float = setting(-0.5, "initial log standard deviation of the actions", low=-20.0, high=5.0)
    normalize_observations: bool = setting(True, "normalize observations by running mean and variance")
    seed: int = setting(0, "seed of network initialization, action noise and minibatch order", low=0)
    threads: int = setting(
        0, "torch CPU threads of the update (0: one per core); acting uses one", low=0, high=1024
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what checkpoints and YAML hold)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], section: str = "ppo") -> PpoConfig:
        """Validated config; a bad key or value raises ConfigError naming it."""
        return from_mapping(cls, values, section)
