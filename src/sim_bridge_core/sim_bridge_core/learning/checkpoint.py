"""Checkpoints (weights + what they were trained for) and exported policies.

A checkpoint is a plain dict of tensors, dicts, lists, strings and numbers, so it loads
with ``torch.load(weights_only=True)`` (no code runs from the file):

    format     CHECKPOINT_FORMAT
    algorithm  ppo, sac or td3 (absent in older files: ppo)
    config     the algorithm's config (PpoConfig, OffPolicyConfig) as a dict
    metadata   model, joint_names, observation_size, action_size, task, iteration, env_steps, ...,
               and what the job adds (the policy contract, ``sim_bridge_core.deploy.contract``)
    model      the deployable module's state dict (normalizer statistics included): PPO's
               ActorCritic, SAC's SquashedGaussianActor, TD3's DeterministicActor
    learner    the learner's other state (optimizers, learning rate, counters, RNG; off-policy:
               critics, targets, temperature), absent for a bare model; never the replay buffer

``load_checkpoint`` refuses, with one line, a file that is missing or unreadable or that
was trained for another robot, observation size or task; building the network refuses
weights with NaN or inf (what a diverged run leaves).

``export_policy`` writes the deterministic policy as TorchScript and ONNX, with the description the
job gives (the policy contract) in ``policy.json`` and in the ONNX file's metadata. Every file is written in
full beside its final name before any is renamed into place, so a failed or killed export leaves
the previous files, and a ``policy.onnx`` always carries its own contract.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from sim_bridge_core.learning.algorithms import (
    Learner,
    LearnerConfig,
    algorithm_of,
    make_config,
    make_policy,
)
from sim_bridge_core.learning.config import PpoConfig
from sim_bridge_core.learning.modules import EmpiricalNormalizer, Policy
from sim_bridge_core.learning.offpolicy_config import ALGORITHMS

CHECKPOINT_FORMAT = "sim_bridge_policy/1"
REQUIRED_METADATA = ("model", "joint_names", "observation_size", "action_size", "task")


class PolicyDescription(Protocol):
    """What travels with an exported policy so another runtime can run it (the policy contract):
    JSON, written to ``policy.json`` and into the ONNX metadata under ``metadata_key``."""

    metadata_key: ClassVar[str]

    def to_json(self) -> str: ...


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here; the message is one line naming the file and why."""


@dataclass(frozen=True)
class Checkpoint:
    path: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    model_state: dict[str, Any]
    learner_state: dict[str, Any] | None
    algorithm: str = "ppo"

    def ppo_config(self) -> PpoConfig:
        return PpoConfig.from_dict(self.config)

    def learner_config(self) -> LearnerConfig:
        """The config it was trained with, of its algorithm's class."""
        return make_config(self.algorithm, self.config)

    def build_model(self) -> Policy:
        """The trained deployable module of its algorithm (eval mode, cpu)."""
        model = make_policy(
            self.algorithm,
            int(self.metadata["observation_size"]),
            int(self.metadata["action_size"]),
            self.learner_config(),
        )
        try:
            model.load_state_dict(self.model_state)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.path}: weights do not fit the network: {_first_line(exc)}") from exc
        bad = [name for name, value in model.state_dict().items() if not torch.isfinite(value).all()]
        if bad:
            raise CheckpointError(f"{self.path}: weights contain NaN or inf ({bad[0]}): a diverged run?")
        return model.eval()

    def policy(self, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
        """The deterministic policy as numpy in, numpy out (what ``deploy.Deployment`` takes)."""
        model = self.build_model().to(device)

        @torch.no_grad()
        def act(observations: np.ndarray) -> np.ndarray:
            tensor = torch.as_tensor(observations, dtype=torch.float32, device=device)
            return model.act_inference(tensor).cpu().numpy()

        return act


def save_checkpoint(
    path: str | os.PathLike,
    learner: Learner | Policy,
    config: LearnerConfig | dict[str, Any],
    metadata: dict[str, Any],
) -> Path:
    """Write atomically (temporary file in the same folder, then rename): a crash leaves the old file.
    A learner writes its whole training state, a bare policy module its weights; either names its
    algorithm."""
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {', '.join(missing)}")
    bare = isinstance(learner, nn.Module)
    contents: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "algorithm": algorithm_of(learner) if bare else learner.algorithm,
        "config": dict(config) if isinstance(config, dict) else config.to_dict(),
        "metadata": dict(metadata, joint_names=list(metadata["joint_names"])),
    }
    if bare:
        contents["model"] = learner.state_dict()
    else:
        state = learner.state_dict()
        contents["model"] = state.pop("model")
        contents["learner"] = state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_staged(path, lambda temporary: torch.save(contents, temporary)), path)
    return path


def _staged(path: Path, write: Callable[[Path], object]) -> Path:
    """A temporary file beside ``path`` that ``write`` filled, flushed to disk, for the caller to
    rename over ``path`` (a rename in one folder is atomic; a failed write leaves nothing behind)."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        with temporary.open("rb") as file:
            os.fsync(file.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def load_checkpoint(
    path: str | os.PathLike,
    expect_joints: list[str] | tuple[str, ...] | None = None,
    expect_observation_size: int | None = None,
    expect_task: str | None = None,
) -> Checkpoint:
    """Read a checkpoint (weights_only) and check it fits the robot, observation and task given."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for damaged files
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint: {_first_line(exc)}") from exc
    if not isinstance(contents, dict) or contents.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} checkpoint")
    metadata = contents.get("metadata")
    if not isinstance(metadata, dict) or any(key not in metadata for key in REQUIRED_METADATA):
        raise CheckpointError(f"checkpoint {path} lacks metadata ({', '.join(REQUIRED_METADATA)})")
    algorithm = contents.get("algorithm", "ppo")
    if algorithm not in ALGORITHMS:
        raise CheckpointError(f"checkpoint {path} was trained with an unknown algorithm '{algorithm}'")

    joints = list(metadata["joint_names"])
    if expect_joints is not None and joints != list(expect_joints):
        raise CheckpointError(
            f"checkpoint {path} was trained for robot '{metadata['model']}' with joints {joints}, "
            f"not {list(expect_joints)}"
        )
    if expect_observation_size is not None and metadata["observation_size"] != expect_observation_size:
        raise CheckpointError(
            f"checkpoint {path} expects observations of size {metadata['observation_size']}, "
            f"this task builds {expect_observation_size}"
        )
    if expect_task is not None and metadata["task"] != expect_task:
        raise CheckpointError(
            f"checkpoint {path} was trained for task '{metadata['task']}', not '{expect_task}'"
        )
    return Checkpoint(
        path=str(path),
        config=dict(contents.get("config", {})),
        metadata=metadata,
        model_state=contents["model"],
        learner_state=contents.get("learner"),
        algorithm=algorithm,
    )


class InferencePolicy(nn.Module):
    """The deterministic policy alone (normalizer, then the actor: PPO's mean, TD3's and SAC's tanh
    included in ``actor``): what deployment runs."""

    def __init__(self, model: Policy) -> None:
        super().__init__()
        self.normalizer: EmpiricalNormalizer = copy.deepcopy(model.normalizer).cpu()
        self.actor: nn.Sequential = copy.deepcopy(model.actor).cpu()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(observations))


def export_policy(
    model: Policy, directory: str | os.PathLike, description: PolicyDescription
) -> dict[str, Path]:
    """Write ``policy.pt`` (TorchScript), ``policy.onnx`` and ``policy.json`` (the description).

    Both networks take float32 observations (batch, observation_size) and return actions
    (batch, action_size) in [-1, 1] before clipping, i.e. what ``Task.action_to_targets`` takes;
    the description says the rest (also in the ONNX metadata, so the file alone is enough).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    policy = InferencePolicy(model).eval()
    example = torch.zeros(1, model.observation_size)

    text = description.to_json()

    def write_onnx(path: Path) -> None:
        import onnx  # here, not at the top: 0.7 s to import, and every policy node imports this module

        torch.onnx.export(
            policy,
            (example,),
            str(path),
            dynamo=False,
            input_names=["observations"],
            output_names=["actions"],
            dynamic_axes={"observations": {0: "batch"}, "actions": {0: "batch"}},
            opset_version=17,
        )
        exported = onnx.load(str(path))
        onnx.helper.set_model_props(exported, {description.metadata_key: text})
        onnx.save(exported, str(path))

    paths = {
        "torchscript": directory / "policy.pt",
        "onnx": directory / "policy.onnx",
        "contract": directory / "policy.json",
    }
    writers: dict[str, Callable[[Path], object]] = {
        "torchscript": lambda path: torch.jit.script(policy).save(str(path)),
        "onnx": write_onnx,
        "contract": lambda path: path.write_text(text),
    }
    staged: dict[str, Path] = {}
    try:
        with warnings.catch_warnings():
            # torch 2.13 marks TorchScript and its ONNX exporter deprecated; both still work and
            # need no extra package (the torch.export-based ONNX exporter needs onnxscript).
            warnings.simplefilter("ignore", DeprecationWarning)
            for key, write in writers.items():
                staged[key] = _staged(paths[key], write)
    except BaseException:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)
        raise
    # Only renames from here: the files change together, policy.json right after policy.onnx.
    for key, temporary in staged.items():
        os.replace(temporary, paths[key])
    return paths


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
