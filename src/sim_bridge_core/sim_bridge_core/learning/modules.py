"""Networks: an observation normalizer and a Gaussian actor-critic.

``ActorCritic.act_inference`` (normalize, then the actor's mean) is the deterministic
policy that deployment runs and that ``export_policy`` writes out; the normalizer's
statistics are buffers, so they travel in the state dict with the weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class EmpiricalNormalizer(nn.Module):
    """``(x - mean) / (std + epsilon)`` with mean and variance over every sample seen so far."""

    def __init__(self, size: int, epsilon: float = 1e-2) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / (self.var.sqrt() + self.epsilon)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch (B, size) into the statistics (Chan et al.'s parallel variance)."""
        x = x.reshape(-1, self.mean.shape[0])
        batch_count = x.shape[0]
        if batch_count == 0:
            return
        batch_var, batch_mean = torch.var_mean(x, dim=0, correction=0)
        total = self.count + batch_count
        weight = float(batch_count / total)
        delta = batch_mean - self.mean
        if self.count == 0:
            self.mean.copy_(batch_mean)
            self.var.copy_(batch_var)
        else:
            self.mean.add_(delta * weight)
            self.var.copy_(
                self.var * (1 - weight) + batch_var * weight + delta.square() * weight * (1 - weight)
            )
        self.count.copy_(total)


def mlp(inputs: int, hidden: Sequence[int], outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(inputs, size), nn.ELU()]
        inputs = size
    layers.append(nn.Linear(inputs, outputs))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """MLP actor (Gaussian mean, state-independent log std) and MLP critic on normalized observations."""

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        actor_hidden: Sequence[int] = (128, 64),
        critic_hidden: Sequence[int] = (128, 64),
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        self.observation_size, self.action_size = observation_size, action_size
        self.normalizer = EmpiricalNormalizer(observation_size)
        self.actor = mlp(observation_size, actor_hidden, action_size)
        self.critic = mlp(observation_size, critic_hidden, 1)
        self.log_std = nn.Parameter(torch.full((action_size,), float(init_log_std)))
        # Small last actor layer: the first actions stay near the middle of the range (near home).
        nn.init.orthogonal_(self.actor[-1].weight, gain=0.01)
        nn.init.zeros_(self.actor[-1].bias)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.act_inference(observations)

    def act_inference(self, observations: torch.Tensor) -> torch.Tensor:
        """Deterministic actions (the Gaussian mean) for raw observations."""
        return self.actor(self.normalizer(observations))

    def value(self, observations: torch.Tensor) -> torch.Tensor:
        """(B,) state values for raw observations."""
        return self.critic(self.normalizer(observations)).squeeze(-1)

    def mean_and_value(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normalized = self.normalizer(observations)
        return self.actor(normalized), self.critic(normalized).squeeze(-1)

    def log_prob(self, actions: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """(B,) log density of ``actions`` under N(mean, exp(log_std)^2)."""
        z = (actions - mean) * torch.exp(-self.log_std)
        return (-0.5 * z.square() - self.log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 + _LOG_SQRT_2PI).sum()
