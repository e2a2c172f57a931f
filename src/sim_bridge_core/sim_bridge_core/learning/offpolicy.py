"""What TD3 and SAC share: acting in N worlds, replay, the iteration cadence, counters and state.

The calls are PPO's, so the runner and both transports drive every learner alike::

    actions = learner.act(observations)             # (N, obs) -> (N, act) in [-1, 1], exploring
    ...step the worlds with actions...
    learner.observe(rewards, terminated, truncated)  # what that step did
    if learner.ready:                                # every steps_per_iteration control steps
        stats = learner.update(next_observations)    # updates_per_iteration gradient steps

A step's transition is complete once the next observations arrive (the next ``act``, or
``update``); the n-step window (``replay.NStepWindow``, which also says how episode ends are
handled) then hands the finished transitions to the replay buffer. The observation normalizer
sees every observation as it arrives; the buffer keeps raw observations, normalized when
sampled, so the critics always see them with the current statistics.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sim_bridge_core.config import ConfigError
from sim_bridge_core.learning.modules import DeterministicActor, SquashedGaussianActor
from sim_bridge_core.learning.offpolicy_config import OFF_POLICY_SECTION, OffPolicyConfig
from sim_bridge_core.learning.replay import NStepWindow, ReplayBuffer


class OffPolicyLearner(ABC):
    """The plumbing around an off-policy algorithm; a subclass builds ``model`` (the deployable
    actor), its other ``networks`` and ``optimizers`` in ``_build``, and defines ``_explore``
    and ``_gradient_step``."""

    algorithm: ClassVar[str]
    stat_names: ClassVar[tuple[str, ...]]  # what ``_gradient_step`` reports
    model: DeterministicActor | SquashedGaussianActor

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        num_envs: int,
        config: OffPolicyConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config = config or OffPolicyConfig()
        if config.learning_starts > config.buffer_size:
            raise ConfigError(
                f"{OFF_POLICY_SECTION}.learning_starts: {config.learning_starts} is more than the "
                f"buffer_size {config.buffer_size}: learning would never start"
            )
        self.device = torch.device(device)
        self.num_envs, self.action_size = num_envs, action_size
        # As PPO: acting on one thread (the physics follows at once), the update on ``threads``.
        self.update_threads = config.threads or os.cpu_count() or 1
        torch.set_num_threads(1)
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self._build(observation_size, action_size)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.learning_rate = config.learning_rate
        self.window = NStepWindow(
            config.n_step, config.gamma, num_envs, observation_size, action_size, self.device
        )
        self.buffer = ReplayBuffer(config.buffer_size, observation_size, action_size, self.device)
        self.iteration = 0
        self.env_steps = 0
        self.gradient_steps = 0
        self.steps = 0  # control steps of this iteration
        self._taken: tuple[torch.Tensor, torch.Tensor] | None = None  # the last step's observations, actions
        self._outcome: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # and what it did

    @abstractmethod
    def _build(self, observation_size: int, action_size: int) -> None: ...

    @abstractmethod
    def _explore(self, normalized: torch.Tensor) -> torch.Tensor:
        """(N, action_size) exploring actions in [-1, 1] for normalized observations."""

    @abstractmethod
    def _gradient_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One update from a batch whose observations are normalized; its losses (detached scalars)."""

    @property
    def ready(self) -> bool:
        """The iteration's control steps are done: call ``update`` before acting again."""
        return self.steps == self.config.steps_per_iteration

    def _tensor(self, array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), device=self.device).to(dtype)

    def _remember(self, next_observations: torch.Tensor) -> None:
        """The last step's transition is complete: the window hands what that completes to replay."""
        if self._outcome is not None:
            self.buffer.add(self.window.push(*self._taken, *self._outcome, next_observations))
        self._taken = self._outcome = None

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Exploring actions (N, action_size) in [-1, 1] for observations (N, observation_size);
        uniformly random until the first gradient step (an untrained policy explores worse)."""
        if self.ready:
            raise RuntimeError("the iteration is complete: call update() before act()")
        if self._taken is not None and self._outcome is None:
            raise RuntimeError("act() called twice without observe()")
        obs = self._tensor(observations)
        self._remember(obs)
        if self.config.normalize_observations:
            self.model.normalizer.update(obs)
        if self.gradient_steps == 0:
            shape = (len(obs), self.action_size)
            actions = torch.rand(shape, generator=self.generator, device=self.device) * 2.0 - 1.0
        else:
            actions = self._explore(self.model.normalizer(obs))
        self._taken = (obs, actions)
        return actions.cpu().numpy()

    def observe(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Outcome (N,) of the step taken with the last ``act``'s actions."""
        if self._taken is None or self._outcome is not None:
            raise RuntimeError("observe() called without act()")
        self._outcome = (
            self._tensor(rewards),
            self._tensor(terminated, torch.bool),
            self._tensor(truncated, torch.bool),
        )
        self.steps += 1
        self.env_steps += self.num_envs

    def update(self, next_observations: np.ndarray) -> dict[str, float]:
        """The iteration's gradient steps (none until the buffer holds ``learning_starts``
        transitions: then the losses are NaN); ``next_observations`` follow its last step."""
        if not self.ready:
            raise RuntimeError(f"the iteration has {self.steps} of {self.config.steps_per_iteration} steps")
        self._remember(self._tensor(next_observations))
        torch.set_num_threads(self.update_threads)
        try:
            totals: dict[str, list[torch.Tensor]] = {}
            if self.buffer.size >= self.config.learning_starts:
                for _ in range(self.config.updates_per_iteration):
                    batch = self.buffer.sample(self.config.batch_size, self.generator)
                    for key in ("observations", "next_observations"):
                        batch[key] = self.model.normalizer(batch[key])
                    for name, value in self._gradient_step(batch).items():
                        totals.setdefault(name, []).append(value)
                    self.gradient_steps += 1
        finally:
            torch.set_num_threads(1)
        self.steps = 0
        self.iteration += 1
        stats = {
            name: torch.stack(totals[name]).mean().item() if name in totals else float("nan")
            for name in self.stat_names
        }
        stats.update(learning_rate=self.learning_rate, replay_size=float(self.buffer.size))
        return stats

    def set_learning_rate(self, rate: float) -> None:
        self.learning_rate = float(rate)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate

    def state_dict(self) -> dict[str, Any]:
        """Everything to continue training but the replay (tensors and plain values only)."""
        return {
            "model": self.model.state_dict(),
            **{name: network.state_dict() for name, network in self.networks.items()},
            **{name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "learning_rate": self.learning_rate,
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "gradient_steps": self.gradient_steps,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``; the replay starts empty and refills to ``learning_starts``
        before learning goes on."""
        self.model.load_state_dict(state["model"])
        for name, network in self.networks.items():
            network.load_state_dict(state[name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state[name])
        self.set_learning_rate(state["learning_rate"])
        self.iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        self.gradient_steps = int(state["gradient_steps"])
        self.generator.set_state(state["generator"])
        self.window.clear()
        self.buffer.clear()
        self.steps = 0
        self._taken = self._outcome = None


@torch.no_grad()
def polyak(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, parameter by parameter."""
    for target_parameter, parameter in zip(target.parameters(), source.parameters(), strict=True):
        target_parameter.lerp_(parameter, tau)
