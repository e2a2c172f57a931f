"""Replay for thousands of worlds: each world's last steps become n-step transitions, kept in one
fixed-size ring on the learner's device and sampled uniformly.

A transition is ``(observation, action, reward, next_observation, discount)`` and its critic
target is ``reward + discount * Q(next_observation, next_action)``: the reward sums up to n
steps, and the discount (``gamma ** steps``, 0 after a termination) says how far the
bootstrap lies. Episode ends, per world:

- terminated at step t: every pending step s <= t is emitted with the rewards up to t and
  discount 0 (nothing follows a terminal state);
- truncated at step t (a timeout): the final observation is lost (the world auto-resets and
  the ROS wire does not carry it). Steps s < t are emitted with the rewards up to t - 1,
  bootstrapping from step t's own observation (discount ``gamma ** (t - s)``); step t is
  dropped: it is the one transition whose next observation nobody saw.
"""

from __future__ import annotations

import torch


class NStepWindow:
    """Each world's last ``n`` steps of its current episode, until their n-step return is known."""

    def __init__(
        self,
        n: int,
        gamma: float,
        num_envs: int,
        observation_size: int,
        action_size: int,
        device: torch.device,
    ) -> None:
        # Slot i holds the step taken i steps ago (slot 0: the latest); ``returns`` its
        # discounted reward sum so far, ``pending`` whether it still waits to be emitted.
        self.observations = torch.zeros(n, num_envs, observation_size, device=device)
        self.actions = torch.zeros(n, num_envs, action_size, device=device)
        self.returns = torch.zeros(n, num_envs, device=device)
        self.pending = torch.zeros(n, num_envs, dtype=torch.bool, device=device)
        self.powers = gamma ** torch.arange(n + 1, device=device, dtype=torch.float32)

    def clear(self) -> None:
        self.pending.zero_()

    def push(
        self,
        observations: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        terminated: torch.Tensor,
        truncated: torch.Tensor,
        next_observations: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """One control step of every world (N rows each); the transitions it completes."""
        # Age every slot by one step; the oldest slot was emitted when it reached n rewards.
        self.observations = self.observations.roll(1, 0)
        self.actions = self.actions.roll(1, 0)
        self.returns = self.returns.roll(1, 0)
        self.pending = self.pending.roll(1, 0)
        self.observations[0], self.actions[0] = observations, actions
        self.returns[0], self.pending[0] = 0.0, True
        n = self.returns.shape[0]
        self.returns += self.powers[:n, None] * rewards

        truncated = truncated & ~terminated
        ended = terminated | truncated
        emit = self.pending & ended
        emit[-1] |= self.pending[-1]  # n rewards summed
        emit[0] &= ~truncated  # the timeout's own step: its next observation is lost
        slot, world = emit.nonzero(as_tuple=True)
        cut = truncated[world]
        steps = slot + 1 - cut.long()
        transitions = {
            "observations": self.observations[slot, world],
            "actions": self.actions[slot, world],
            "rewards": self.returns[slot, world] - cut * self.powers[slot] * rewards[world],
            "next_observations": torch.where(
                cut[:, None], self.observations[0, world], next_observations[world]
            ),
            "discounts": self.powers[steps] * ~terminated[world],
        }
        self.pending &= ~(emit | ended)
        return transitions


class ReplayBuffer:
    """The last ``capacity`` transitions, written as a ring, sampled uniformly with replacement."""

    def __init__(self, capacity: int, observation_size: int, action_size: int, device: torch.device) -> None:
        self.capacity = capacity
        self.fields = {
            "observations": torch.zeros(capacity, observation_size, device=device),
            "actions": torch.zeros(capacity, action_size, device=device),
            "rewards": torch.zeros(capacity, device=device),
            "next_observations": torch.zeros(capacity, observation_size, device=device),
            "discounts": torch.zeros(capacity, device=device),
        }
        self.position = 0  # where the next transition goes
        self.size = 0

    def clear(self) -> None:
        self.position = self.size = 0

    def add(self, transitions: dict[str, torch.Tensor]) -> None:
        count = min(len(transitions["rewards"]), self.capacity)
        index = (self.position + torch.arange(count, device=self.fields["rewards"].device)) % self.capacity
        for name, tensor in self.fields.items():
            tensor[index] = transitions[name][-count:]
        self.position = (self.position + count) % self.capacity
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        index = torch.randint(self.size, (batch_size,), generator=generator, device=generator.device)
        return {name: tensor[index] for name, tensor in self.fields.items()}
