"""One rank of test_distributed.py's data-parallel run (started by torchrun): it merges a batch of its
own into an observation normalizer and takes one PPO update on a rollout of its own, then saves what
it holds and what it saw to ``<out>/rank<r>.pt`` for the test to compare with one process."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sim_bridge_core.config import ConfigError
from sim_bridge_core.envs.gym import make_batched_env
from sim_bridge_core.learning import EmpiricalNormalizer, PpoConfig, PpoLearner, Runner, distributed

NUM_ENVS = 8  # per rank
CONFIG = PpoConfig(
    num_steps=4, num_epochs=3, num_minibatches=1, actor_hidden=[16], critic_hidden=[16], threads=1
)
ROLLOUT = ("observations", "actions", "means", "log_probs", "values", "rewards", "dones")


def main(out: Path) -> None:
    assert distributed.init("cpu"), "not started by torchrun with several ranks"
    rank = distributed.rank()
    rng = np.random.default_rng(rank)  # each rank its own samples

    normalizer = EmpiricalNormalizer(3, epsilon=0.0)
    samples = rng.normal([1.0, -3.0, 10.0], [0.5, 2.0, 4.0], (50 + 30 * rank, 3))
    batch = torch.tensor(samples, dtype=torch.float32)
    distributed.update_normalizer(normalizer, batch)

    # Each rank builds its learner from a seed of its own: sharing must make them one.
    learner = PpoLearner(3, 2, NUM_ENVS, PpoConfig(**{**CONFIG.to_dict(), "seed": rank}))
    distributed.share_learner(learner, CONFIG.seed)
    start = {name: value.clone() for name, value in learner.model.state_dict().items()}
    observations = rng.uniform(-1, 1, (NUM_ENVS, 3)).astype(np.float32)
    while not learner.ready:
        actions = learner.act(observations)
        reward = -np.square(actions - 0.5 * observations[:, :2]).sum(1)
        learner.observe(reward, rng.uniform(size=NUM_ENVS) < 0.2, np.zeros(NUM_ENVS, bool))
        observations = rng.uniform(-1, 1, (NUM_ENVS, 3)).astype(np.float32)
    rollout = {name: getattr(learner.storage, name).clone() for name in ROLLOUT}
    try:
        Runner(make_batched_env("pendulum", "pendulum", num_envs=2), algorithm="sac")
        refused = ""
    except ConfigError as exc:
        refused = str(exc)
    stats = learner.update(observations)
    torch.save(
        {
            "batch": batch,
            "normalizer": normalizer.state_dict(),
            "start": start,
            "rollout": rollout,
            "last_observations": torch.from_numpy(observations),
            "model": learner.model.state_dict(),
            "learning_rate": learner.learning_rate,
            "kl": stats["kl"],
            "env_steps": learner.env_steps,
            "generator": learner.generator.get_state(),
            "sums": distributed.sum_over_ranks(np.array([rank + 1.0, 1.0])).tolist(),
            "decided": distributed.decide(stop=rank == 1, interrupted=rank == 1),
            "refused": refused,
        },
        out / f"rank{rank}.pt",
    )
    distributed.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
