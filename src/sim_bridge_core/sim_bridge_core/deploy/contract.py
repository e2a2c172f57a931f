"""The policy contract: everything around the network that a runtime needs to reproduce the policy.

It travels with the policy: in ``checkpoint.pt``'s metadata, in ``policy.json`` beside the
exports, and in ``policy.onnx``'s metadata (key ``sim_bridge_contract``), so another runtime
(onnxruntime, a C++ ros2_control controller) can run the policy exactly as the policy node does:

1. observation: the terms of ``observation`` in order, from a JointState mapped by ``joint_names``
   and the task inputs ``input_names`` (float32; the exported network normalizes it itself);
2. network: ``actions = policy(observation)``;
3. targets: ``clip(action_offset + action_scale * clip(actions, -1, 1), position_lower, position_upper)``,
   then within ``max_step`` (= ``velocity_limits`` * ``control_dt``, capped by ``max_position_step``
   when that is positive) of the measured position;
4. command: one per ``control_dt`` through ``command_interface`` (``trajectory``: a one-point
   JointTrajectory ``control_dt`` ahead, stamp 0; ``position``: Float64MultiArray in joint order).

Unlimited position limits, and velocity limits the model and config did not give, are ``null``
in JSON (the policy node then refuses to deploy until the robot config gives them).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sim_bridge_core.deploy.deployment import SafetyFilter, safety_filter
from sim_bridge_core.sim.control import COMMAND_INTERFACES

if TYPE_CHECKING:
    from sim_bridge_core.envs.batched import Worlds
    from sim_bridge_core.learning.checkpoint import Checkpoint
    from sim_bridge_core.learning.ppo import PpoLearner
    from sim_bridge_core.tasks import Task

CONTRACT_FORMAT = "sim_bridge_contract/1"
METADATA_KEY = "sim_bridge_contract"


class ContractError(ValueError):
    """A contract that is missing, malformed or does not fit this robot and task; one line."""


@dataclass(frozen=True)
class PolicyContract:
    model: str
    model_path: str
    home: str  # the home keyframe ('' = the model's own): the pose observations and actions are about
    sites: dict[str, Any]  # sites the robot config added to the model (e.g. the end effector's)
    task: str
    task_settings: dict[str, Any]
    joint_names: tuple[str, ...]
    input_names: tuple[str, ...]
    observation: tuple[tuple[str, int], ...]
    action_scale: float
    action_offset: tuple[float, ...]
    position_lower: tuple[float, ...]
    position_upper: tuple[float, ...]
    velocity_limits: tuple[float, ...]
    max_position_step: float
    control_dt: float
    command_interface: str
    metadata_key: ClassVar[str] = METADATA_KEY  # where an exported ONNX file carries it

    @classmethod
    def describe(
        cls, task: Task, safety: SafetyFilter, control_dt: float, command_interface: str
    ) -> PolicyContract:
        """The contract of a policy for ``task`` commanded through ``safety`` every ``control_dt``."""
        robot = task.robot
        return cls(
            model=robot.name,
            model_path=str(robot.path),
            home=robot.home_keyframe,
            sites=dict(robot.added_sites),
            task=task.name,
            task_settings=dataclasses.asdict(task.settings),
            joint_names=tuple(robot.joint_names),
            input_names=tuple(task.input_names),
            observation=tuple((name, int(size)) for name, size in task.observation_terms),
            action_scale=float(task.action_scale),
            action_offset=tuple(float(v) for v in robot.home),
            position_lower=tuple(float(v) for v in safety.lower),
            position_upper=tuple(float(v) for v in safety.upper),
            velocity_limits=tuple(float(v) for v in safety.velocity_limits),
            max_position_step=float(safety.max_position_step),
            control_dt=float(control_dt),
            command_interface=command_interface,
        )

    @property
    def position_limits(self) -> list[float]:
        """lower, upper per joint, flattened (what ``deploy.safety_filter`` takes)."""
        return [v for pair in zip(self.position_lower, self.position_upper, strict=True) for v in pair]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["observation"] = [{"name": name, "size": size} for name, size in self.observation]
        for key in ("position_lower", "position_upper", "velocity_limits"):
            data[key] = [v if math.isfinite(v) else None for v in data[key]]
        return {"format": CONTRACT_FORMAT, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> PolicyContract:
        """Read a contract; ContractError naming ``source`` if it is not one."""
        if not isinstance(data, Mapping) or data.get("format") != CONTRACT_FORMAT:
            raise ContractError(f"{source}: no {CONTRACT_FORMAT} policy contract")
        try:
            values = {field.name: data[field.name] for field in dataclasses.fields(cls)}
            values["observation"] = tuple((term["name"], int(term["size"])) for term in data["observation"])
            values["task_settings"] = dict(data["task_settings"])
            values["sites"] = dict(data["sites"])
            unlimited = {"position_lower": -np.inf, "position_upper": np.inf, "velocity_limits": np.inf}
            for key, bound in unlimited.items():
                values[key] = tuple(bound if v is None else float(v) for v in data[key])
            for key in ("joint_names", "input_names", "action_offset"):
                values[key] = tuple(data[key])
            contract = cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"{source}: malformed policy contract ({type(exc).__name__}: {exc})") from exc
        contract._check_sane(source)
        return contract

    @classmethod
    def of_checkpoint(cls, checkpoint: Checkpoint) -> PolicyContract:
        """The contract a training job wrote into ``checkpoint``; ContractError if there is none."""
        return cls.from_dict(checkpoint.metadata.get("contract"), f"checkpoint {checkpoint.path}")

    @classmethod
    def from_json(cls, text: str, source: str) -> PolicyContract:
        try:
            return cls.from_dict(json.loads(text), source)
        except json.JSONDecodeError as exc:
            raise ContractError(f"{source}: policy contract is not JSON: {exc}") from exc

    def _check_sane(self, source: str) -> None:
        """ContractError for values no runtime can act on: a contract edited by hand, or damaged."""
        joints = len(self.joint_names)
        problem = ""
        if len(set(self.joint_names)) != joints:
            problem = f"names a joint twice: {list(self.joint_names)}"
        elif not (math.isfinite(self.action_scale) and self.action_scale > 0):
            problem = f"action_scale {self.action_scale} is not positive"
        elif not (math.isfinite(self.control_dt) and 0 < self.control_dt <= 10):
            problem = f"control_dt {self.control_dt} s is not in (0, 10]"
        elif self.command_interface not in COMMAND_INTERFACES:
            problem = f"command_interface '{self.command_interface}' is not one of {COMMAND_INTERFACES}"
        elif not (math.isfinite(self.max_position_step) and self.max_position_step >= 0):
            problem = f"max_position_step {self.max_position_step} is not >= 0"
        for key in ("action_offset", "position_lower", "position_upper", "velocity_limits"):
            if not problem and len(getattr(self, key)) != joints:
                problem = f"{key} has not one value per joint ({joints})"
        if problem:
            raise ContractError(f"{source}: the policy contract's {problem}")

    def check(self, task: Task, source: str) -> None:
        """ContractError unless ``task`` (on its robot) builds what the policy expects."""
        robot = task.robot
        if tuple(robot.joint_names) != self.joint_names:
            raise ContractError(
                f"{source} was trained for joints {list(self.joint_names)}, "
                f"the robot has {list(robot.joint_names)}"
            )
        if not math.isclose(task.action_scale, self.action_scale, rel_tol=1e-9):
            raise ContractError(
                f"{source} was trained with action_scale {self.action_scale}, "
                f"this task uses {task.action_scale}"
            )
        if task.name != self.task:
            raise ContractError(f"{source} was trained for task '{self.task}', not '{task.name}'")
        if not np.allclose(robot.home, self.action_offset):
            raise ContractError(f"{source} was trained about another home pose: {list(self.action_offset)}")
        terms = tuple((name, int(size)) for name, size in task.observation_terms)
        if terms != self.observation:
            raise ContractError(
                f"{source} expects the observation {list(self.observation)}, this task builds {list(terms)}"
            )


def policy_metadata(
    worlds: Worlds, learner: PpoLearner | None = None, limits: SafetyFilter | None = None
) -> dict[str, Any]:
    """What a deployable checkpoint records: the training metadata and the policy contract, with the
    deploy ``limits`` (default: the robot's own)."""
    from sim_bridge_core.learning.runner import training_metadata  # torch: only where one trains

    limits = limits or safety_filter(worlds.task.robot, worlds.control_dt)
    contract = PolicyContract.describe(worlds.task, limits, worlds.control_dt, worlds.command_interface)
    return {**training_metadata(worlds, learner), "contract": contract.to_dict()}
