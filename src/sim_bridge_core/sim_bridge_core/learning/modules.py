"""Networks: an observation normalizer, PPO's Gaussian actor-critic, and TD3's and SAC's actors
and critics.

Every policy module (``ActorCritic``, ``DeterministicActor``, ``SquashedGaussianActor``) has a
``normalizer`` and an ``actor`` whose composition, ``act_inference``, is the deterministic
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
        if x.shape[0] == 0:
            return
        batch_var, batch_mean = torch.var_mean(x, dim=0, correction=0)
        self.merge(x.shape[0], batch_mean, batch_var)

    @torch.no_grad()
    def merge(self, batch_count: int, batch_mean: torch.Tensor, batch_var: torch.Tensor) -> None:
        """Merge the count, mean and (biased) variance of a batch seen elsewhere (another rank's)."""
        if batch_count == 0:
            return
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


def hidden_layers(inputs: int, hidden: Sequence[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(inputs, size), nn.ELU()]
        inputs = size
    return layers


def mlp(inputs: int, hidden: Sequence[int], outputs: int) -> nn.Sequential:
    width = hidden[-1] if hidden else inputs
    return nn.Sequential(*hidden_layers(inputs, hidden), nn.Linear(width, outputs))


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


class DeterministicActor(nn.Module):
    """TD3's policy: normalize, then an MLP squashed by tanh into the action range [-1, 1]."""

    def __init__(self, observation_size: int, action_size: int, hidden: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        self.observation_size, self.action_size = observation_size, action_size
        self.normalizer = EmpiricalNormalizer(observation_size)
        self.actor = nn.Sequential(mlp(observation_size, hidden, action_size), nn.Tanh())
        # Small last layer: the first actions stay near the middle of the range (near home).
        nn.init.orthogonal_(self.actor[0][-1].weight, gain=0.01)
        nn.init.zeros_(self.actor[0][-1].bias)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.act_inference(observations)

    def act_inference(self, observations: torch.Tensor) -> torch.Tensor:
        """Deterministic actions in [-1, 1] for raw observations."""
        return self.actor(self.normalizer(observations))


class SquashedGaussianActor(nn.Module):
    """SAC's policy: a Gaussian with state-dependent std whose samples tanh squashes into [-1, 1].

    ``actor`` is the deterministic part, tanh of the mean (trunk, mean head, tanh), so it
    deploys and exports like TD3's; ``log_std`` is the head only training uses.
    """

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, observation_size: int, action_size: int, hidden: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        self.observation_size, self.action_size = observation_size, action_size
        self.normalizer = EmpiricalNormalizer(observation_size)
        width = hidden[-1] if hidden else observation_size
        trunk = nn.Sequential(*hidden_layers(observation_size, hidden))
        self.actor = nn.Sequential(trunk, nn.Linear(width, action_size), nn.Tanh())
        self.log_std = nn.Linear(width, action_size)
        for head in (self.actor[1], self.log_std):
            nn.init.orthogonal_(head.weight, gain=0.01)
            nn.init.zeros_(head.bias)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.act_inference(observations)

    def act_inference(self, observations: torch.Tensor) -> torch.Tensor:
        """Deterministic actions (tanh of the mean) for raw observations."""
        return self.actor(self.normalizer(observations))

    def sample(
        self, normalized: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions in (-1, 1) for normalized observations, and their (B,) log densities."""
        trunk, mean_head, _ = self.actor
        features = trunk(normalized)
        mean = mean_head(features)
        log_std = self.log_std(features).clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        unsquashed = mean + noise * log_std.exp()
        # log tanh'(u) = 2 (log 2 - u - softplus(-2u)): the change of variables, stable for large |u|.
        log_det = 2.0 * (math.log(2.0) - unsquashed - nn.functional.softplus(-2.0 * unsquashed))
        log_prob = (-0.5 * noise.square() - log_std - _LOG_SQRT_2PI - log_det).sum(-1)
        return torch.tanh(unsquashed), log_prob


class TwinQ(nn.Module):
    """Two independent critics Q(s, a) on normalized observations: targets take their minimum
    (clipped double Q), which counters the overestimation a single critic's maximum feeds."""

    def __init__(self, observation_size: int, action_size: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.q1 = mlp(observation_size + action_size, hidden, 1)
        self.q2 = mlp(observation_size + action_size, hidden, 1)

    def forward(self, normalized: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(2, B) values of both critics."""
        inputs = torch.cat([normalized, actions], dim=-1)
        return torch.stack([self.q1(inputs).squeeze(-1), self.q2(inputs).squeeze(-1)])

    def q1_value(self, normalized: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B,) values of the first critic alone (what TD3's actor climbs)."""
        return self.q1(torch.cat([normalized, actions], dim=-1)).squeeze(-1)


Policy = ActorCritic | DeterministicActor | SquashedGaussianActor
"""A deployable policy module: ``normalizer``, ``actor``, ``act_inference``, ``observation_size``."""
