"""The rollout buffer: num_steps x num_envs transitions, then returns and advantages by GAE."""

from __future__ import annotations

from collections.abc import Iterator

import torch


class RolloutStorage:
    """Transitions of one rollout, written step by step, read as shuffled flat minibatches."""

    def __init__(
        self, num_steps: int, num_envs: int, observation_size: int, action_size: int, device: torch.device
    ) -> None:
        self.num_steps, self.num_envs = num_steps, num_envs

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(num_steps, num_envs, *shape, device=device)

        self.observations = zeros(observation_size)
        self.actions = zeros(action_size)
        self.means = zeros(action_size)
        self.log_probs = zeros()
        self.values = zeros()
        self.rewards = zeros()
        self.dones = zeros()
        self.returns = zeros()
        self.advantages = zeros()
        self.step = 0

    @property
    def full(self) -> bool:
        return self.step == self.num_steps

    def clear(self) -> None:
        self.step = 0

    def compute_returns(self, last_values: torch.Tensor, gamma: float, lam: float) -> None:
        """GAE(lambda) advantages and value targets; ``dones`` cut the recursion at episode ends.

        Timeouts must already be folded into ``rewards`` (bootstrapped), since a truncated
        step is a done step here too: the next observation belongs to a new episode.
        """
        advantage = torch.zeros_like(last_values)
        next_values = last_values
        for t in reversed(range(self.num_steps)):
            alive = 1.0 - self.dones[t]
            delta = self.rewards[t] + gamma * next_values * alive - self.values[t]
            advantage = delta + gamma * lam * alive * advantage
            self.advantages[t] = advantage
            next_values = self.values[t]
        self.returns.copy_(self.advantages + self.values)

    def minibatches(
        self, num_minibatches: int, generator: torch.Generator
    ) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch: every transition once, in ``num_minibatches`` random flat batches."""
        total = self.num_steps * self.num_envs
        size = total // num_minibatches
        order = torch.randperm(total, generator=generator, device=generator.device)
        flat = {
            "observations": self.observations.flatten(0, 1),
            "actions": self.actions.flatten(0, 1),
            "means": self.means.flatten(0, 1),
            "log_probs": self.log_probs.flatten(0, 1),
            "values": self.values.flatten(0, 1),
            "returns": self.returns.flatten(0, 1),
            "advantages": self.advantages.flatten(0, 1),
        }
        for i in range(num_minibatches):
            index = order[i * size : (i + 1) * size]
            yield {name: tensor[index] for name, tensor in flat.items()}
