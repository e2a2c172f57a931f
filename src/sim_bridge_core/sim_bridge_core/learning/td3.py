"""TD3 (Fujimoto et al., 2018) at massive parallelism, as FastTD3 (Seo et al., 2025) runs it.

A deterministic tanh actor and two critics with target copies. Each gradient step:

1. critic target: ``r + discount * min(Q1', Q2')(s', clip(pi'(s') + clip(noise)))``, over
   n-step transitions (``replay``), with target policy smoothing (the clipped noise) and the
   clipped double Q minimum;
2. both critics regress onto it;
3. every ``policy_delay`` steps, the actor climbs Q1 and the targets follow by Polyak averaging.

Exploration is mixed, as FastTD3's: world i adds Gaussian noise of std
``exploration_noise * (i + 1) / N``, so some worlds act almost greedily and others widely.
Acting, replay and the iteration cadence are ``offpolicy.OffPolicyLearner``'s.
"""

from __future__ import annotations

import copy

import torch

from sim_bridge_core.learning.modules import DeterministicActor, TwinQ
from sim_bridge_core.learning.offpolicy import OffPolicyLearner, polyak


class Td3Learner(OffPolicyLearner):
    algorithm = "td3"
    stat_names = ("critic_loss", "actor_loss", "q_value")

    def _build(self, observation_size: int, action_size: int) -> None:
        config = self.config
        self.model = DeterministicActor(observation_size, action_size, config.actor_hidden).to(self.device)
        self.critic = TwinQ(observation_size, action_size, config.critic_hidden).to(self.device)
        self.actor_target = copy.deepcopy(self.model.actor)  # the normalizer is the model's, shared
        self.critic_target = copy.deepcopy(self.critic)
        self.networks = {
            "critic": self.critic,
            "actor_target": self.actor_target,
            "critic_target": self.critic_target,
        }
        self.optimizers = {
            "actor_optimizer": torch.optim.Adam(self.model.parameters(), lr=config.learning_rate),
            "critic_optimizer": torch.optim.Adam(self.critic.parameters(), lr=config.learning_rate),
        }
        worlds = torch.arange(1, self.num_envs + 1, device=self.device, dtype=torch.float32)
        self.noise_std = (config.exploration_noise * worlds / self.num_envs)[:, None]

    def _explore(self, normalized: torch.Tensor) -> torch.Tensor:
        actions = self.model.actor(normalized)
        noise = torch.randn(actions.shape, generator=self.generator, device=self.device)
        return (actions + noise * self.noise_std).clamp(-1.0, 1.0)

    def _gradient_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        config = self.config
        observations, actions = batch["observations"], batch["actions"]
        with torch.no_grad():
            noise = torch.randn(actions.shape, generator=self.generator, device=self.device)
            noise = (noise * config.policy_noise).clamp(-config.noise_clip, config.noise_clip)
            next_actions = (self.actor_target(batch["next_observations"]) + noise).clamp(-1.0, 1.0)
            next_q = self.critic_target(batch["next_observations"], next_actions).min(0).values
            target = batch["rewards"] + batch["discounts"] * next_q

        q = self.critic(observations, actions)
        critic_loss = (q - target).square().mean(1).sum()
        self.optimizers["critic_optimizer"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.optimizers["critic_optimizer"].step()
        stats = {"critic_loss": critic_loss.detach(), "q_value": q.detach().mean()}

        if self.gradient_steps % config.policy_delay == 0:
            actor_loss = -self.critic.q1_value(observations, self.model.actor(observations)).mean()
            self.optimizers["actor_optimizer"].zero_grad(set_to_none=True)
            actor_loss.backward(inputs=list(self.model.parameters()))  # the critics' gradients: not needed
            self.optimizers["actor_optimizer"].step()
            polyak(self.actor_target, self.model.actor, config.tau)
            polyak(self.critic_target, self.critic, config.tau)
            stats["actor_loss"] = actor_loss.detach()
        return stats
