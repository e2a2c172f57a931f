"""TD3 and SAC settings (section ``off_policy``), in the one config schema that PPO's share.

The defaults follow the parallel-world recipes (FastTD3, FastSAC; 2025), scaled to a small
CPU: many worlds fill a large replay buffer quickly, so n-step returns and fast target networks
(tau 0.1) learn from it in few gradient steps, and about one gradient step per control step
keeps the update's time near the physics' time. On 2 cores, batches of 1024 (not FastTD3's
4096+) and a few hundred worlds (512 for arm7 reach, not PPO's 2048) give the most learning per
second of wall time: docs/performance.md ("Off-policy: TD3 and SAC beside PPO") has the figures.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sim_bridge_core.config import from_mapping, setting

ALGORITHMS = ("ppo", "sac", "td3")
OFF_POLICY_SECTION = "off_policy"


@dataclass(frozen=True)
class OffPolicyConfig:
    steps_per_iteration: int = setting(
        8, "control steps of every world per iteration (the log and checkpoint cadence)", low=1, high=100_000
    )
    updates_per_step: float = setting(
        1.0,
        "update-to-data ratio: gradient steps per control step of all worlds (at least one per iteration)",
        low=0.0,
        high=1000.0,
    )
    batch_size: int = setting(1024, "transitions per gradient step", low=1)
    buffer_size: int = setting(
        1_000_000, "replay capacity in transitions, all worlds together (the oldest are overwritten)", low=1
    )
    learning_starts: int = setting(
        10_000,
        "transitions the buffer holds before the first gradient step (until then actions are "
        "uniformly random); after a resume it refills to this many, acting with the policy",
        low=1,
    )
    learning_rate: float = setting(
        3e-4, "Adam learning rate of actor, critics and temperature", low=1e-7, high=1.0
    )
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0)
    tau: float = setting(0.1, "Polyak rate of the target networks (1: copy)", low=0.0, high=1.0)
    n_step: int = setting(
        3, "steps summed per transition before bootstrapping (n-step returns)", low=1, high=100
    )
    actor_hidden: list[int] = setting([256, 128], "actor MLP hidden layer sizes", low=1)
    critic_hidden: list[int] = setting([256, 256], "each critic's MLP hidden layer sizes", low=1)
    exploration_noise: float = setting(
        0.4,
        "td3: the largest std of the action noise; worlds spread evenly from near 0 up to it (mixed noise)",
        low=0.0,
        high=10.0,
    )
    policy_noise: float = setting(0.2, "td3: std of the target policy smoothing noise", low=0.0, high=10.0)
    noise_clip: float = setting(0.5, "td3: clip of the smoothing noise (+-)", low=0.0, high=10.0)
    policy_delay: int = setting(2, "td3: critic steps per actor and target update", low=1, high=1000)
    init_alpha: float = setting(0.01, "sac: initial temperature (entropy weight)", low=1e-8, high=100.0)
    autotune: bool = setting(True, "sac: tune the temperature toward an entropy of -action_size")
    normalize_observations: bool = setting(True, "normalize observations by running mean and variance")
    seed: int = setting(0, "seed of network initialization, exploration and replay sampling", low=0)
    threads: int = setting(
        0, "torch CPU threads of the update (0: one per core); acting uses one", low=0, high=1024
    )

    @property
    def updates_per_iteration(self) -> int:
        return max(1, round(self.updates_per_step * self.steps_per_iteration))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what checkpoints and YAML hold)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], section: str = OFF_POLICY_SECTION) -> OffPolicyConfig:
        """Validated config; a bad key or value raises ConfigError naming it."""
        return from_mapping(cls, values, section)
