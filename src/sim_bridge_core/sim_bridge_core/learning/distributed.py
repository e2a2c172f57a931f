"""Data-parallel learners under torchrun: K processes (ranks), each stepping worlds of its own, one
model kept identical on every rank.

torchrun (``torch.distributed.run``) starts K copies of the training entry point and tells each its
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. ``init`` joins them into one process group (gloo when
the learner runs on the CPU, nccl on CUDA). The learner then keeps the ranks in step: every rank
starts from rank 0's training state (``share_learner``), every update averages the gradients over
the ranks before clipping and stepping (``average_gradients``), normalizes advantages and adapts
its learning rate on statistics of all ranks' samples (``mean_and_std``, ``mean``), and the
observation normalizer merges every rank's batch (``update_normalizer``). The result is one
learner over K x N worlds, its samples collected by K processes.

Without torchrun (no ``WORLD_SIZE``, or 1) nothing here does anything: every helper returns its
input or acts as in one process, so a single process trains exactly as it would without this module.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from sim_bridge_core.config import ConfigError
from sim_bridge_core.learning.modules import EmpiricalNormalizer

# Rank r draws from seed + r * RANK_SEED_STRIDE; a training job's evaluation worlds use seed + 1,
# which is no rank's.
RANK_SEED_STRIDE = 1000

T = TypeVar("T")


class StatefulLearner(Protocol):
    generator: torch.Generator

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Launch:
    """Where torchrun put this process: its global rank, the number of ranks, its rank on this host
    and the number of ranks on this host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1


def _env_int(name: str, default: int, low: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}: '{text}' is not an integer (torchrun sets it)") from None
    if value < low:
        raise ConfigError(f"{name}: {value} is less than {low}")
    return value


def launch() -> Launch:
    """This process's place among torchrun's ranks, from its environment (one rank without torchrun)."""
    world_size = _env_int("WORLD_SIZE", 1, 1)
    rank = _env_int("RANK", 0, 0)
    if rank >= world_size:
        raise ConfigError(f"RANK: {rank} is not below WORLD_SIZE {world_size}")
    local_world_size = _env_int("LOCAL_WORLD_SIZE", 1, 1) if world_size > 1 else 1
    return Launch(rank, world_size, _env_int("LOCAL_RANK", 0, 0), local_world_size)


def init(device: str | torch.device = "cpu") -> bool:
    """Join torchrun's ranks in one process group, once per process (gloo for a learner on the CPU,
    nccl for one on CUDA, each rank on the GPU of its local rank); True when there are several."""
    if dist.is_available() and dist.is_initialized():
        return active()
    where = launch()
    if where.world_size == 1:
        return False
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE: {where.world_size} ranks, but this torch has no torch.distributed")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ConfigError(f"{name}: not set (start data-parallel learners with torchrun)")
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(where.local_rank)
    dist.init_process_group(backend, rank=where.rank, world_size=where.world_size)
    return True


def close() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """This process is one of several data-parallel ranks (``init`` joined them)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, or a single process: the one that writes the outputs."""
    return rank() == 0


def rank_seed(seed: int) -> int:
    """This rank's seed for ``seed`` (rank 0 and a single process: ``seed`` itself)."""
    return seed + rank() * RANK_SEED_STRIDE


def cores_per_rank() -> int:
    """CPU cores for each rank on this host (a single process: all of them)."""
    return max(1, (os.cpu_count() or 1) // launch().local_world_size)


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """A short SHA-256 of a state dict's names and values: the same on every rank that holds the
    same model (and in its checkpoint), bit for bit."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _device() -> torch.device:
    """Where the process group's tensors must be: the current GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_device())
    return box[0]


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def share_learner(learner: StatefulLearner, seed: int) -> None:
    """Every rank takes rank 0's training state (weights, normalizer, optimizer, learning rate,
    counters), whether rank 0 starts fresh, resumed or fine-tuned; ranks above 0 then reseed their
    generator with ``rank_seed(seed)``, so that each draws its own action noise and minibatch order."""
    if not active():
        return
    state = broadcast_object(_to_cpu(learner.state_dict()) if is_main() else None)
    if not is_main():
        learner.load_state_dict(state)
        learner.generator.manual_seed(rank_seed(seed))


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Each parameter's gradient replaced by its mean over the ranks (one all-reduce for them all)."""
    if not active():
        return
    gradients = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if not gradients:
        return
    flat = torch.cat([gradient.reshape(-1) for gradient in gradients])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for gradient in gradients:
        gradient.copy_(flat[offset : offset + gradient.numel()].view_as(gradient))
        offset += gradient.numel()


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar (e.g. a minibatch's KL) over the ranks."""
    if not active():
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def mean_and_std(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (unbiased) standard deviation of ``values`` of every rank together."""
    if not active():
        return values.mean(), values.std()
    flat = values.detach().reshape(-1).double()
    sums = torch.stack([torch.ones_like(flat).sum(), flat.sum(), flat.square().sum()]).to(_device())
    dist.all_reduce(sums)
    count, total, squares = sums.tolist()
    average = total / count
    variance = max(0.0, (squares - count * average * average) / max(count - 1.0, 1.0))
    as_values = {"dtype": values.dtype, "device": values.device}
    return torch.tensor(average, **as_values), torch.tensor(variance, **as_values).sqrt()


def update_normalizer(normalizer: EmpiricalNormalizer, batch: torch.Tensor) -> None:
    """Merge a batch from every rank into ``normalizer``: each rank's count, mean and variance,
    merged in rank order (Chan et al.), so every rank holds the statistics of all the ranks'
    samples, identically."""
    if not active():
        normalizer.update(batch)
        return
    size = normalizer.mean.shape[0]
    batch = batch.reshape(-1, size)
    variance, average = torch.var_mean(batch, dim=0, correction=0)
    count = torch.tensor([float(batch.shape[0])], dtype=torch.float64, device=batch.device)
    row = torch.cat([count, average.double(), variance.double()]).to(_device())
    rows = [torch.empty_like(row) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, row)
    for gathered in rows:
        stats = gathered.to(normalizer.mean.device, normalizer.mean.dtype)
        normalizer.merge(int(gathered[0].item()), stats[1 : 1 + size], stats[1 + size :])


def sum_over_ranks(values: np.ndarray) -> np.ndarray:
    """Elementwise sums of ``values`` over the ranks (float64)."""
    values = np.asarray(values, dtype=np.float64)
    if not active():
        return values
    total = torch.as_tensor(values).to(_device())
    dist.all_reduce(total)
    return total.cpu().numpy()


def decide(stop: bool, interrupted: bool) -> tuple[bool, bool]:
    """The same decision on every rank at the end of an iteration: rank 0's ``stop`` (its budget,
    its wall clock), and ``interrupted`` if any rank was asked to stop."""
    if not active():
        return stop, interrupted
    flags = torch.tensor([float(stop and is_main()), float(interrupted)], device=_device())
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return bool(flags[0].item()), bool(flags[1].item())
