"""The policy node's settings, and the deployable policy loaded from a checkpoint or an ONNX export."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim_bridge_core.config import ConfigError, setting
from sim_bridge_core.contract import METADATA_KEY, ContractError, PolicyContract
from sim_bridge_core.control import COMMAND_INTERFACES
from sim_bridge_core.deploy import Deployment, Policy, SafetyFilter, require_bounded, safety_filter
from sim_bridge_core.learning.checkpoint import CheckpointError, load_checkpoint
from sim_bridge_core.models import ModelError, RobotModel, load_robot
from sim_bridge_core.tasks import Task, make_task

MODES = ("deploy", "train", "eval")
TRANSPORTS = ("fused", "ros")


@dataclass(frozen=True)
class PolicyConfig:
    mode: str = setting(
        "deploy",
        "deploy: drive a robot; train: PPO over the simulator; eval: run a checkpoint and report success",
        choices=MODES,
    )
    checkpoint: str = setting(
        "",
        "checkpoint.pt to deploy or evaluate, or to resume training from; deploy also takes a "
        "policy.onnx (run with onnxruntime, its contract read from the file)",
    )
    model: str = setting("", "deploy: robot model (name or MJCF/URDF path); default: the policy's")
    device: str = setting("cpu", "torch device for inference and training")
    control_rate_hz: float = setting(
        0.0,
        "deploy: commands per second; 0 = the policy's control period (another rate is refused "
        "unless allow_contract_mismatch)",
        low=0.0,
        high=5000.0,
    )
    command_interface: str = setting(
        "",
        "deploy: trajectory (JointTrajectory on joint_trajectory) or position (Float64MultiArray on "
        "joint_commands); '' = the policy's (another is refused unless allow_contract_mismatch)",
        choices=("", *COMMAND_INTERFACES),
    )
    allow_contract_mismatch: bool = setting(
        False,
        "deploy at a control rate or through a command interface other than the policy was trained "
        "with (warns: the policy then meets what it never met in training)",
    )
    output_dir: str = setting(
        "",
        "run folder for training/eval outputs and deploy recordings (default runs/<timestamp>); "
        "a training run resumes there",
    )
    transport: str = setting(
        "fused",
        "train/eval: fused = worlds in this process (settings sim.*); "
        "ros = the simulator node's worlds over the lockstep batch/* topics",
        choices=TRANSPORTS,
    )
    simulator: str = setting("/simulator", "ros transport: the simulator node's name")
    max_env_steps: int = setting(
        50_000_000, "train: stop after this many env steps (over resumes)", low=1, high=(1 << 62)
    )
    max_wall_s: float = setting(
        600.0, "train: stop after this many seconds of training (over resumes)", low=0.0, high=1e9
    )
    eval_episodes: int = setting(
        1024, "episodes per evaluation (nominal and randomized physics)", low=1, high=1 << 30
    )
    checkpoint_every: int = setting(
        1, "train: write checkpoint.pt every this many iterations (a kill loses at most these)", low=1
    )
    record: bool = setting(
        False,
        "train: the mirrored worlds; deploy: joint_states, commands, goals and /clock; "
        "to output_dir/rollouts (rosbag2, MCAP)",
    )
    record_split_mb: float = setting(
        64.0, "start a new bag file when the current one passes this size", low=0.1, high=1e6
    )
    step_timeout_s: float = setting(
        30.0, "ros transport: fail when the simulator does not answer a step within this time", low=0.1
    )
    velocity_limits: list[float] = setting(
        [],
        "safety: joint velocity limits, rad/s (m/s), one per joint or one for all: no command moves "
        "further than one control period at this speed from the measured position; [] = the "
        "policy's (deploy), else the model's",
        low=0.0,
    )
    max_position_step: float = setting(
        0.0,
        "safety: an extra cap on the target change per control period, rad (or m); 0 = only the "
        "velocity limit",
        low=0.0,
        high=100.0,
    )
    state_timeout_s: float = setting(
        0.2,
        "safety: joint_states older than this (by header.stamp, or arrival when unstamped) stop "
        "commands; one hold command is sent",
        low=0.001,
        high=3600.0,
    )
    position_limits: list[float] = setting(
        [],
        "safety: lower, upper per joint, flattened in the model's joint order; [] = the policy's "
        "(deploy), else the model's",
    )
    dry_run: bool = setting(False, "log commands instead of publishing them", read_only=False)
    compare_robot: str = setting(
        "",
        "eval: a robot config (YAML) to evaluate on as well, nominal physics, e.g. the robot.yaml of "
        "bringup sysid: summary.json then holds both success rates",
    )


def command_safety(
    config: PolicyConfig, robot: RobotModel, period_s: float, contract: PolicyContract | None = None
) -> SafetyFilter:
    """The policy node's safety filter: its own limits where set, else the contract's, else the model's."""
    return safety_filter(
        robot,
        period_s,
        config.position_limits or (contract.position_limits if contract else ()),
        config.velocity_limits or (contract.velocity_limits if contract else ()),
        config.max_position_step or (contract.max_position_step if contract else 0.0),
    )


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy ready to run: its network as numpy in, numpy out, its contract, robot and task."""

    policy: Policy
    contract: PolicyContract
    robot: RobotModel
    task: Task
    runtime: str  # torch or onnxruntime


def read_contract(path: str) -> PolicyContract:
    """The contract of a checkpoint.pt or policy.onnx; ConfigError naming ``policy.checkpoint``."""
    source = Path(path)
    try:
        return _onnx_contract(source) if source.suffix == ".onnx" else load_checkpoint(source).contract
    except (CheckpointError, ContractError) as exc:
        raise ConfigError(f"policy.checkpoint: {exc}") from exc


def load_policy(path: str, model: str = "", device: str = "cpu") -> LoadedPolicy:
    """A checkpoint.pt (torch) or policy.onnx (onnxruntime) with its contract, checked against the
    task this code builds; ConfigError naming ``policy.checkpoint`` otherwise."""
    source = Path(path)
    contract = read_contract(path)
    try:
        robot = load_robot(
            model or _contract_model(contract),
            joint_names=contract.joint_names,
            home=contract.home,
            sites=contract.sites,
        )
        task = make_task(contract.task, robot, contract.task_settings)
        contract.check(task, str(source))
        if source.suffix == ".onnx":
            policy, runtime = _onnx_policy(source), "onnxruntime"
        else:
            policy, runtime = load_checkpoint(source).policy(device), "torch"
    except (CheckpointError, ContractError, ModelError) as exc:
        raise ConfigError(f"policy.checkpoint: {exc}") from exc
    return LoadedPolicy(policy, contract, robot, task, runtime)


def _contract_model(contract: PolicyContract) -> str:
    """The model file the policy was trained on when it is still there, else its name."""
    return contract.model_path if Path(contract.model_path).is_file() else contract.model


def _onnx_contract(path: Path) -> PolicyContract:
    """The contract in the ONNX metadata, else in policy.json beside it."""
    import onnx

    if not path.is_file():
        raise ContractError(f"policy {path} does not exist")
    try:
        exported = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a damaged file
        raise ContractError(f"policy {path} is not a readable ONNX model: {exc}") from exc
    props = {prop.key: prop.value for prop in exported.metadata_props}
    if METADATA_KEY in props:
        return PolicyContract.from_json(props[METADATA_KEY], str(path))
    sidecar = path.with_name("policy.json")
    if sidecar.is_file():
        return PolicyContract.from_json(sidecar.read_text(), str(sidecar))
    raise ContractError(f"policy {path} carries no contract (metadata '{METADATA_KEY}' or policy.json)")


def _onnx_policy(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The network in onnxruntime on one CPU thread (a single observation per call: latency)."""
    import onnx
    import onnxruntime
    from onnx import numpy_helper

    for initializer in onnx.load(str(path)).graph.initializer:
        if not np.isfinite(numpy_helper.to_array(initializer)).all():
            raise ContractError(f"policy {path}: weights contain NaN or inf ({initializer.name})")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def act(observations: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.asarray(observations, dtype=np.float32)})[0]

    return act


@dataclass(frozen=True)
class DeployPlan:
    """What deploy mode runs: the deployment, its period and command interface, and any warning."""

    deployment: Deployment
    runtime: str
    period_s: float
    command_interface: str
    warnings: tuple[str, ...]


def load_deployment(config: PolicyConfig) -> DeployPlan:
    """The policy behind its safety filter at the policy's rate and interface; ConfigError otherwise."""
    if not config.checkpoint:
        raise ConfigError("policy.checkpoint: required in deploy mode")
    loaded = load_policy(config.checkpoint, config.model, config.device)
    contract = loaded.contract
    period_s = 1.0 / config.control_rate_hz if config.control_rate_hz else contract.control_dt
    interface = config.command_interface or contract.command_interface
    mismatches = []
    if not math.isclose(period_s, contract.control_dt, rel_tol=1e-6):
        mismatches.append(
            f"policy.control_rate_hz: {config.control_rate_hz} Hz, but the policy was trained at "
            f"{1.0 / contract.control_dt:g} Hz (control_dt {contract.control_dt} s)"
        )
    if interface != contract.command_interface:
        mismatches.append(
            f"policy.command_interface: {interface}, but the policy was trained through "
            f"{contract.command_interface}"
        )
    if mismatches and not config.allow_contract_mismatch:
        raise ConfigError(f"{mismatches[0]}; set allow_contract_mismatch to deploy anyway")
    safety = command_safety(config, loaded.robot, period_s, contract)
    require_bounded(safety, loaded.robot)
    deployment = Deployment(
        loaded.robot, loaded.task, loaded.policy, safety, period_s, config.state_timeout_s
    )
    return DeployPlan(deployment, loaded.runtime, period_s, interface, tuple(mismatches))
