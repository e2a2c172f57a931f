"""Checkpoints (weights + what they were trained for) and exported policies.

A checkpoint is a plain dict of tensors, dicts, lists, strings and numbers, so it loads
with ``torch.load(weights_only=True)`` (no code runs from the file):

    format    CHECKPOINT_FORMAT
    config    the PpoConfig as a dict
    metadata  model, joint_names, observation_size, action_size, task, iteration, env_steps, ...,
              and ``contract``: the policy contract (``sim_bridge_core.contract``)
    model     ActorCritic state dict (normalizer statistics included)
    learner   PpoLearner state (optimizer, learning rate, counters, RNG), absent for a bare model

``load_checkpoint`` refuses, with one line, a file that is missing or unreadable or that
was trained for another robot, observation size or task; building the network refuses
weights with NaN or inf (what a diverged run leaves).

``export_policy`` writes the deterministic policy as TorchScript and ONNX, with the contract in
``policy.json`` and in the ONNX file's metadata (``sim_bridge_contract``).
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from sim_bridge_core.contract import METADATA_KEY, ContractError, PolicyContract
from sim_bridge_core.learning.config import PpoConfig
from sim_bridge_core.learning.modules import ActorCritic, EmpiricalNormalizer
from sim_bridge_core.learning.ppo import PpoLearner

CHECKPOINT_FORMAT = "sim_bridge_policy/1"
REQUIRED_METADATA = ("model", "joint_names", "observation_size", "action_size", "task")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here; the message is one line naming the file and why."""


@dataclass(frozen=True)
class Checkpoint:
    path: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    model_state: dict[str, Any]
    learner_state: dict[str, Any] | None

    def ppo_config(self) -> PpoConfig:
        return PpoConfig.from_dict(self.config)

    @property
    def contract(self) -> PolicyContract:
        """How the policy is run (observation, action mapping, limits, rate, command interface)."""
        try:
            return PolicyContract.from_dict(self.metadata.get("contract"), f"checkpoint {self.path}")
        except ContractError as exc:
            raise CheckpointError(str(exc)) from exc

    def build_model(self) -> ActorCritic:
        """The trained ActorCritic (eval mode, cpu)."""
        config = self.ppo_config()
        model = ActorCritic(
            int(self.metadata["observation_size"]),
            int(self.metadata["action_size"]),
            config.actor_hidden,
            config.critic_hidden,
            config.init_log_std,
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
    learner: PpoLearner | ActorCritic,
    config: PpoConfig | dict[str, Any],
    metadata: dict[str, Any],
) -> Path:
    """Write atomically (temporary file in the same folder, then rename): a crash leaves the old file."""
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {', '.join(missing)}")
    contents: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict() if isinstance(config, PpoConfig) else dict(config),
        "metadata": dict(metadata, joint_names=list(metadata["joint_names"])),
    }
    if isinstance(learner, PpoLearner):
        state = learner.state_dict()
        contents["model"] = state.pop("model")
        contents["learner"] = state
    else:
        contents["model"] = learner.state_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(contents, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


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
    )


class InferencePolicy(nn.Module):
    """The deterministic policy alone (normalizer, then actor mean): what deployment runs."""

    def __init__(self, model: ActorCritic) -> None:
        super().__init__()
        self.normalizer: EmpiricalNormalizer = copy.deepcopy(model.normalizer).cpu()
        self.actor: nn.Sequential = copy.deepcopy(model.actor).cpu()

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(observations))


def export_policy(
    model: ActorCritic, directory: str | os.PathLike, contract: PolicyContract
) -> dict[str, Path]:
    """Write ``policy.pt`` (TorchScript), ``policy.onnx`` and ``policy.json`` (the contract).

    Both networks take float32 observations (batch, observation_size) and return actions
    (batch, action_size) in [-1, 1] before clipping, i.e. what ``Task.action_to_targets`` takes;
    the contract says the rest (also in the ONNX metadata, so the file alone is enough).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    policy = InferencePolicy(model).eval()
    example = torch.zeros(1, model.observation_size)

    script_path, onnx_path = directory / "policy.pt", directory / "policy.onnx"
    contract_path = directory / "policy.json"
    with warnings.catch_warnings():
        # torch 2.13 marks TorchScript and its ONNX exporter deprecated; both still work and
        # need no extra package (the torch.export-based ONNX exporter needs onnxscript).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(policy).save(str(script_path))
        torch.onnx.export(
            policy,
            (example,),
            str(onnx_path),
            dynamo=False,
            input_names=["observations"],
            output_names=["actions"],
            dynamic_axes={"observations": {0: "batch"}, "actions": {0: "batch"}},
            opset_version=17,
        )
    exported = onnx.load(str(onnx_path))
    onnx.helper.set_model_props(exported, {METADATA_KEY: contract.to_json()})
    onnx.save(exported, str(onnx_path))
    contract_path.write_text(contract.to_json())
    return {"torchscript": script_path, "onnx": onnx_path, "contract": contract_path}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
