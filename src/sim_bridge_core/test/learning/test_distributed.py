"""Data-parallel learners: two real gloo ranks under torchrun against one process over both ranks'
samples (the normalizer's merge, a PPO update with averaged gradients), and that a single process
is untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sim_bridge_core.config import ConfigError
from sim_bridge_core.learning import EmpiricalNormalizer, PpoConfig, PpoLearner, distributed

WORKER = Path(__file__).with_name("distributed_worker.py")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """What each of two ranks of distributed_worker.py saved (one torchrun, shared by the tests)."""
    out = tmp_path_factory.mktemp("ranks")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, str(WORKER), str(out)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(2)]


def test_the_normalizer_holds_every_ranks_samples_the_same_on_every_rank(ranks):
    for name in ("mean", "var", "count"):
        assert torch.equal(ranks[0]["normalizer"][name], ranks[1]["normalizer"][name]), name
    seen = torch.cat([rank["batch"] for rank in ranks]).double().numpy()
    merged = ranks[0]["normalizer"]
    assert merged["count"].item() == len(seen) == 50 + 80
    np.testing.assert_allclose(merged["mean"].numpy(), seen.mean(0), rtol=1e-5)
    np.testing.assert_allclose(merged["var"].numpy(), seen.var(0), rtol=1e-4)


def test_a_ppo_update_over_two_ranks_is_one_process_update_over_both_rollouts(ranks):
    # Rank 1 was built from another seed: it started from rank 0's weights all the same.
    for name, value in ranks[0]["start"].items():
        assert torch.equal(value, ranks[1]["start"][name]), name
    for name, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][name]), name  # bit for bit: one model
    assert not torch.equal(ranks[0]["model"]["log_std"], ranks[0]["start"]["log_std"])  # it learned
    assert ranks[0]["learning_rate"] == ranks[1]["learning_rate"] and ranks[0]["kl"] == ranks[1]["kl"]
    assert not torch.equal(ranks[0]["generator"], ranks[1]["generator"])  # their own noise

    # One process, 16 worlds: rank 0's worlds, then rank 1's, the same transitions.
    config = PpoConfig(
        num_steps=4, num_epochs=3, num_minibatches=1, actor_hidden=[16], critic_hidden=[16], threads=1
    )
    learner = PpoLearner(3, 2, num_envs=16, config=config)
    learner.model.load_state_dict(ranks[0]["start"])
    for name in ranks[0]["rollout"]:
        getattr(learner.storage, name).copy_(torch.cat([rank["rollout"][name] for rank in ranks], dim=1))
    learner.storage.step = config.num_steps
    stats = learner.update(torch.cat([rank["last_observations"] for rank in ranks]).numpy())
    for name, value in learner.model.state_dict().items():
        torch.testing.assert_close(ranks[0]["model"][name], value, rtol=1e-4, atol=1e-6, msg=name)
    assert ranks[0]["kl"] == pytest.approx(stats["kl"], rel=1e-4)
    assert ranks[0]["learning_rate"] == pytest.approx(learner.learning_rate)
    assert ranks[0]["env_steps"] == ranks[1]["env_steps"] == 2 * 8 * config.num_steps  # every rank's


def test_sums_and_decisions_are_the_same_on_every_rank(ranks):
    for rank in ranks:
        assert rank["sums"] == [3.0, 2.0]
        # Only rank 0 decides to stop (its budget); any rank's interruption stops them all.
        assert rank["decided"] == (False, True)


def test_off_policy_learners_refuse_several_ranks_naming_the_key(ranks):
    for rank in ranks:
        assert rank["refused"] == (
            "policy.algorithm: sac learns in one process; data-parallel learners (2 ranks under torchrun) "
            "are ppo only"
        )


def test_a_single_process_is_untouched(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.init("cpu") and not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.rank_seed(7)) == (0, 1, 7)
    normalizer, direct = EmpiricalNormalizer(2), EmpiricalNormalizer(2)
    batch = torch.arange(12.0).reshape(6, 2)
    distributed.update_normalizer(normalizer, batch)
    direct.update(batch)
    for name in ("mean", "var", "count"):
        assert torch.equal(normalizer.state_dict()[name], direct.state_dict()[name]), name
    values = torch.tensor([1.0, 2.0, 4.0])
    assert distributed.mean_and_std(values) == (values.mean(), values.std())


def test_a_bad_torchrun_environment_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match=r"^RANK: 2 is not below WORLD_SIZE 2$"):
        distributed.init("cpu")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match=r"^MASTER_ADDR: not set"):
        distributed.init("cpu")
