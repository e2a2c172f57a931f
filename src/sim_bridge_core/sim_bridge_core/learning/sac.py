"""SAC (Haarnoja et al., 2018) at massive parallelism, as FastSAC (2025) runs it.

A tanh-squashed Gaussian actor, two critics with target copies, and a temperature alpha that
weighs the policy's entropy against the return. Each gradient step:

1. critic target: ``r + discount * (min(Q1', Q2')(s', a') - alpha * log pi(a'|s'))`` with
   ``a' ~ pi(s')``, over n-step transitions (``replay``);
2. both critics regress onto it;
3. the actor minimizes ``alpha * log pi(a|s) - min(Q1, Q2)(s, a)`` for fresh ``a ~ pi(s)``;
4. with ``autotune``, alpha moves the policy's entropy toward ``-action_size``;
5. the target critics follow by Polyak averaging.

The deployed policy is deterministic: tanh of the mean (``SquashedGaussianActor.actor``).
Acting, replay and the iteration cadence are ``offpolicy.OffPolicyLearner``'s.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from sim_bridge_core.learning.modules import SquashedGaussianActor, TwinQ
from sim_bridge_core.learning.offpolicy import OffPolicyLearner, polyak


class Temperature(nn.Module):
    """alpha, learned as its logarithm so it stays positive."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()


class SacLearner(OffPolicyLearner):
    algorithm = "sac"
    stat_names = ("critic_loss", "actor_loss", "q_value", "alpha", "entropy")

    def _build(self, observation_size: int, action_size: int) -> None:
        config = self.config
        self.model = SquashedGaussianActor(observation_size, action_size, config.actor_hidden).to(self.device)
        self.critic = TwinQ(observation_size, action_size, config.critic_hidden).to(self.device)
        self.critic_target = copy.deepcopy(self.critic)
        self.temperature = Temperature(config.init_alpha).to(self.device)
        self.target_entropy = -float(action_size)
        self.networks = {
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
        }
        self.optimizers = {
            "actor_optimizer": torch.optim.Adam(self.model.parameters(), lr=config.learning_rate),
            "critic_optimizer": torch.optim.Adam(self.critic.parameters(), lr=config.learning_rate),
            "temperature_optimizer": torch.optim.Adam(self.temperature.parameters(), lr=config.learning_rate),
        }

    def _explore(self, normalized: torch.Tensor) -> torch.Tensor:
        return self.model.sample(normalized, self.generator)[0]

    def _gradient_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        config = self.config
        observations, next_observations = batch["observations"], batch["next_observations"]
        alpha = self.temperature.alpha.detach()
        with torch.no_grad():
            next_actions, next_log_prob = self.model.sample(next_observations, self.generator)
            next_q = self.critic_target(next_observations, next_actions).min(0).values
            target = batch["rewards"] + batch["discounts"] * (next_q - alpha * next_log_prob)

        q = self.critic(observations, batch["actions"])
        critic_loss = (q - target).square().mean(1).sum()
        self.optimizers["critic_optimizer"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.optimizers["critic_optimizer"].step()

        actions, log_prob = self.model.sample(observations, self.generator)
        actor_loss = (alpha * log_prob - self.critic(observations, actions).min(0).values).mean()
        self.optimizers["actor_optimizer"].zero_grad(set_to_none=True)
        actor_loss.backward(inputs=list(self.model.parameters()))  # the critics' gradients: not needed
        self.optimizers["actor_optimizer"].step()

        if config.autotune:
            # d/d(log alpha) of -log alpha * (log pi + target): alpha grows while entropy is short.
            alpha_loss = -(self.temperature.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            self.optimizers["temperature_optimizer"].zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.optimizers["temperature_optimizer"].step()

        polyak(self.critic_target, self.critic, config.tau)
        return {
            "critic_loss": critic_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q_value": q.detach().mean(),
            "alpha": alpha,
            "entropy": -log_prob.detach().mean(),
        }
