"""Several simulator nodes (shards) seen as one batch of worlds, in lockstep with one learner.

Each shard is a ``RemoteWorlds`` on its own namespace's ``batch/*`` topics, possibly on another
host. Their worlds are concatenated in the order the shards are given: shard 0's worlds first.
A step sends every shard its targets before it waits for any, so the shards simulate side by
side; then it waits for each in turn, each until ``timeout_s`` after its command went out. A
shard that does not answer in time ends the step with a ``RemoteError`` naming it (training
then ends with a checkpoint: ``learning.runner``), so a dead shard never hangs the learner.

Draws (resets, randomization) happen in each simulator node from its own seed: a launch with
``num_shards:=K`` gives shard k the seed ``seed + k``, so the whole batch is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from sim_bridge_core.envs.batched import StepResult
from sim_bridge_core.simulator.remote import RemoteError, RemoteWorlds

T = TypeVar("T")


def shard_sizes(num_envs: int, shards: int) -> list[int]:
    """Worlds per shard when ``num_envs`` are split over ``shards``: as even as can be, the first
    shards taking one more; ValueError when a shard would have none."""
    if not 1 <= shards <= num_envs:
        raise ValueError(f"{num_envs} worlds cannot be split over {shards} simulator shards")
    base, extra = divmod(num_envs, shards)
    return [base + (k < extra) for k in range(shards)]


class ShardedWorlds:
    """The worlds of ``shards`` (``RemoteWorlds``), named ``names``, as one ``Worlds``."""

    def __init__(self, shards: Sequence[RemoteWorlds], names: Sequence[str]) -> None:
        if not shards or len(shards) != len(names):
            raise ValueError("give one name per shard, and at least one shard")
        first = shards[0]
        for shard, name in zip(shards[1:], names[1:], strict=True):
            if (shard.task.name, shard.control_dt, shard.episode_steps) != (
                first.task.name,
                first.control_dt,
                first.episode_steps,
            ):
                raise ValueError(f"shard {name} runs another task, control_dt or episode length")
        self.shards, self.names = list(shards), list(names)
        self.task = first.task
        self.robot = first.robot
        self.control_dt = first.control_dt
        self.episode_steps = first.episode_steps
        self.command_interface = first.command_interface
        self.task_fields = first.task_fields
        self.num_envs = sum(shard.num_envs for shard in shards)
        self._bounds = np.cumsum([0, *(shard.num_envs for shard in shards)])

    def _each(self, call: Callable[[RemoteWorlds], T]) -> list[T]:
        """``call`` on every shard in order; a RemoteError names the shard that raised it."""
        results = []
        for shard, name, start, stop in zip(
            self.shards, self.names, self._bounds[:-1], self._bounds[1:], strict=True
        ):
            try:
                results.append(call(shard))
            except RemoteError as exc:
                raise RemoteError(f"simulator shard '{name}' (worlds {start}-{stop - 1}): {exc}") from exc
        return results

    def interrupt(self) -> None:
        for shard in self.shards:
            shard.interrupt()

    def reset(self, *, stagger: bool = False) -> None:
        self._each(lambda shard: shard.reset(stagger=stagger))

    def observation(self) -> np.ndarray:
        return np.concatenate(self._each(RemoteWorlds.observation))

    def step(self, targets: np.ndarray) -> StepResult:
        """Targets (N, J) for all worlds: every shard is sent its rows, then each is waited for."""
        targets = np.asarray(targets)
        if targets.shape[:1] != (self.num_envs,):
            raise ValueError(f"targets for {targets.shape[:1]} worlds, expected {self.num_envs}")
        rows = iter(np.split(targets, self._bounds[1:-1]))
        self._each(lambda shard: shard.send(next(rows)))
        results = self._each(RemoteWorlds.receive)
        return StepResult(
            reward=np.concatenate([r.reward for r in results]),
            terminated=np.concatenate([r.terminated for r in results]),
            truncated=np.concatenate([r.truncated for r in results]),
            success=np.concatenate([r.success for r in results]),
            final_observations=np.concatenate([r.final_observations for r in results]),
        )

    def set_randomization_enabled(self, enabled: bool) -> None:
        self._each(lambda shard: shard.set_randomization_enabled(enabled))

    def random_state(self) -> dict[str, Any]:
        """Nothing: each simulator node keeps its own streams (as for one)."""
        return {}

    def restore_random_state(self, state: dict[str, Any]) -> None:
        return

    # The current state, for the training job and the recorder -------------------------------------

    @property
    def time_ns(self) -> int:
        """Sim time of the first shard's current state (all step together from a common reset)."""
        return self.shards[0].time_ns

    def _joined(self, read: Callable[[RemoteWorlds], np.ndarray]) -> np.ndarray:
        return np.concatenate(self._each(read))

    @property
    def positions(self) -> np.ndarray:
        return self._joined(lambda shard: shard.positions)

    @property
    def velocities(self) -> np.ndarray:
        return self._joined(lambda shard: shard.velocities)

    @property
    def efforts(self) -> np.ndarray:
        return self._joined(lambda shard: shard.efforts)

    @property
    def signals(self) -> np.ndarray:
        return self._joined(lambda shard: shard.signals)

    @property
    def inputs(self) -> np.ndarray:
        return self._joined(lambda shard: shard.inputs)
