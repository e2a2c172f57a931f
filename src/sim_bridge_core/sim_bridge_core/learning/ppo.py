"""PPO that does not care how the worlds are reached: arrays in, actions out.

The same calls serve both transports: in-process (``runner.train`` hands a ``BatchedEnv``'s
arrays over in memory) and over ROS (the arrays come from ``batch/joint_states`` and
``batch/task``). One control step is::

    actions = learner.act(observations)             # (N, obs) -> (N, act), stored with logp and value
    ...step the worlds with actions...
    learner.observe(rewards, terminated, truncated)  # what that step did
    if learner.ready:
        stats = learner.update(next_observations)    # GAE, clipped PPO epochs, new rollout

Timeouts are bootstrapped the rsl_rl way: a truncated step earns ``gamma * V(s_t)`` on
top of its reward, using the value stored when acting, because the final observation of
an auto-reset world is not on the ROS wire.

Under torchrun each rank runs one of these on its own worlds, and ``distributed`` keeps them one
learner: gradients averaged before clipping, advantages normalized, the learning rate adapted and
the normalizer updated over every rank's samples, ``env_steps`` counting every rank's steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sim_bridge_core.arrays import is_host
from sim_bridge_core.learning import distributed
from sim_bridge_core.learning.config import PpoConfig
from sim_bridge_core.learning.modules import ActorCritic
from sim_bridge_core.learning.storage import RolloutStorage

MIN_LEARNING_RATE = 1e-5


class PpoLearner:
    """Collects a rollout of ``config.num_steps`` steps of ``num_envs`` worlds, then updates."""

    algorithm = "ppo"

    def __init__(
        self,
        observation_size: int,
        action_size: int,
        num_envs: int,
        config: PpoConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config = config or PpoConfig()
        self.device = torch.device(device)
        self.num_envs = num_envs
        self.steps_per_step = num_envs * distributed.world_size()  # env steps of every rank
        # Acting runs on one thread: batches of a few thousand rows gain little from more, and
        # OpenMP workers that spin-wait after each call steal cores from the physics that follows.
        # The update (large minibatches, physics idle) uses ``threads`` (default: every core, shared
        # out among the ranks on this host under torchrun).
        self.update_threads = config.threads or distributed.cores_per_rank()
        torch.set_num_threads(1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = ActorCritic(
                observation_size, action_size, config.actor_hidden, config.critic_hidden, config.init_log_std
            ).to(self.device)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.learning_rate = config.learning_rate
        self.storage = RolloutStorage(config.num_steps, num_envs, observation_size, action_size, self.device)
        self.iteration = 0
        self.env_steps = 0
        self._acted = False

    @property
    def ready(self) -> bool:
        """The rollout is full: call ``update`` before acting again."""
        return self.storage.full

    def _tensor(self, array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device).to(dtype)

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Sampled actions (N, action_size) for observations (N, observation_size); stored for PPO.
        Numpy observations get numpy actions, tensors (device-resident worlds) tensors beside them."""
        if self.ready:
            raise RuntimeError("the rollout is full: call update() before act()")
        if self._acted:
            raise RuntimeError("act() called twice without observe()")
        obs = self._tensor(observations)
        mean, value = self.model.mean_and_value(obs)
        noise = torch.randn(mean.shape, generator=self.generator, device=self.device)
        actions = mean + noise * self.model.log_std.exp()
        storage, t = self.storage, self.storage.step
        storage.observations[t] = obs
        storage.actions[t] = actions
        storage.means[t] = mean
        storage.log_probs[t] = self.model.log_prob(actions, mean)
        storage.values[t] = value
        self._acted = True
        return actions.cpu().numpy() if is_host(observations) else actions.to(observations.device)

    @torch.no_grad()
    def observe(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Outcome (N,) of the step taken with the last ``act``'s actions."""
        if not self._acted:
            raise RuntimeError("observe() called without act()")
        storage, t = self.storage, self.storage.step
        terminated = self._tensor(terminated, torch.bool)
        timeout = self._tensor(truncated, torch.bool) & ~terminated
        storage.rewards[t] = self._tensor(rewards) + self.config.gamma * storage.values[t] * timeout
        storage.dones[t] = (terminated | timeout).float()
        storage.step += 1
        self.env_steps += self.steps_per_step
        self._acted = False

    def update(self, last_observations: np.ndarray) -> dict[str, float]:
        """PPO on the full rollout; ``last_observations`` are those after its last step (to bootstrap)."""
        if not self.ready:
            raise RuntimeError(f"the rollout has {self.storage.step} of {self.config.num_steps} steps")
        torch.set_num_threads(self.update_threads)
        try:
            return self._update(last_observations)
        finally:
            torch.set_num_threads(1)

    def _update(self, last_observations: np.ndarray) -> dict[str, float]:
        config, model, storage = self.config, self.model, self.storage
        with torch.no_grad():
            storage.compute_returns(
                model.value(self._tensor(last_observations)), config.gamma, config.gae_lambda
            )
            advantages = storage.advantages
            center, spread = distributed.mean_and_std(advantages)
            advantages.sub_(center).div_(spread + 1e-8)
            old_log_std = model.log_std.detach().clone()

        totals = {"surrogate_loss": 0.0, "value_loss": 0.0, "kl": 0.0, "clip_fraction": 0.0}
        updates = 0
        for _ in range(config.num_epochs):
            for batch in storage.minibatches(config.num_minibatches, self.generator):
                mean, value = model.mean_and_value(batch["observations"])
                log_prob = model.log_prob(batch["actions"], mean)

                with torch.no_grad():
                    kl = _gaussian_kl(batch["means"], old_log_std, mean, model.log_std).mean()
                    kl = distributed.mean(kl)  # every rank adapts to the same KL: one learning rate
                    if config.schedule == "adaptive":
                        self._adapt_learning_rate(kl.item())

                ratio = torch.exp(log_prob - batch["log_probs"])
                advantage = batch["advantages"]
                surrogate = -torch.min(
                    advantage * ratio, advantage * ratio.clamp(1.0 - config.clip, 1.0 + config.clip)
                ).mean()
                if config.clip_value_loss:
                    old = batch["values"]
                    clipped = old + (value - old).clamp(-config.clip, config.clip)
                    value_loss = torch.max(
                        (value - batch["returns"]).square(), (clipped - batch["returns"]).square()
                    ).mean()
                else:
                    value_loss = (value - batch["returns"]).square().mean()
                loss = surrogate + config.value_coef * value_loss - config.entropy_coef * model.entropy()

                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                distributed.average_gradients(model.parameters())
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                self.optimizer.step()

                totals["surrogate_loss"] += surrogate.item()
                totals["value_loss"] += value_loss.item()
                totals["kl"] += kl.item()
                totals["clip_fraction"] += ((ratio - 1.0).abs() > config.clip).float().mean().item()
                updates += 1

        if config.normalize_observations:
            # After the epochs, so that acting and learning on this rollout saw the same statistics.
            distributed.update_normalizer(model.normalizer, storage.observations)
        storage.clear()
        self.iteration += 1
        stats = {name: value / updates for name, value in totals.items()}
        stats.update(learning_rate=self.learning_rate, action_std=model.log_std.exp().mean().item())
        return stats

    def _adapt_learning_rate(self, kl: float) -> None:
        if kl > 2.0 * self.config.desired_kl:
            self.set_learning_rate(max(MIN_LEARNING_RATE, self.learning_rate / 1.5))
        elif 0.0 < kl < 0.5 * self.config.desired_kl:
            self.set_learning_rate(min(self.config.max_learning_rate, self.learning_rate * 1.5))

    def set_learning_rate(self, rate: float) -> None:
        self.learning_rate = float(rate)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate

    def state_dict(self) -> dict[str, Any]:
        """Everything to continue training (tensors and plain values only)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "learning_rate": self.learning_rate,
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``; the current rollout is dropped."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.set_learning_rate(state["learning_rate"])
        self.iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        self.generator.set_state(state["generator"])
        self.storage.clear()
        self._acted = False


def _gaussian_kl(
    old_mean: torch.Tensor, old_log_std: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """(B,) KL(old || new) of diagonal Gaussians."""
    ratio = torch.exp(2.0 * (old_log_std - log_std))
    return (
        log_std - old_log_std + 0.5 * (ratio + (old_mean - mean).square() * torch.exp(-2.0 * log_std)) - 0.5
    ).sum(-1)
