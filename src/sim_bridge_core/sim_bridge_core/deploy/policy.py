"""The policy node's settings, and the deployable policy loaded from a checkpoint or an ONNX export."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim_bridge_core.config import ConfigError, setting
from sim_bridge_core.deploy.contract import METADATA_KEY, ContractError, PolicyContract
from sim_bridge_core.deploy.deployment import (
    Deployment,
    DeploySettings,
    Policy,
    SafetyFilter,
    require_bounded,
    safety_filter,
    tightest,
)
from sim_bridge_core.learning.offpolicy_config import ALGORITHMS
from sim_bridge_core.models import (
    ModelError,
    RobotConfig,
    RobotModel,
    driver_joint_names,
    load_robot,
    read_robot_config,
    robot_from_config,
)
from sim_bridge_core.sim.control import COMMAND_INTERFACES
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
    robot: str = setting(
        "",
        "deploy: the robot config (YAML) of the robot driven: the policy is checked against it, its "
        "limits apply and its drivers' joint names are used ('' = the model the policy was trained on)",
    )
    device: str = setting("cpu", "torch device for inference and training")
    algorithm: str = setting(
        "ppo",
        "train: the learning algorithm: ppo (settings ppo.*), sac or td3 (settings off_policy.*)",
        choices=ALGORITHMS,
    )
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
    simulator: str = setting(
        "simulator", "ros transport: the simulator node's name (relative: in this node's namespace)"
    )
    simulators: list[str] = setting(
        [],
        "ros transport: namespaces of simulator shards (any host) one learner drives as one batch, "
        "sim.num_envs split over them in this order ([] = the one simulator in this node's namespace)",
    )
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
    video: bool = setting(
        False,
        "eval: write output_dir/videos/*.mp4 of a few nominal and randomized episodes; train: one at "
        "the evaluation (offscreen GL: MUJOCO_GL=egl without a display)",
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
    allow_looser_limits: bool = setting(
        False,
        "deploy: the node's position_limits/velocity_limits/max_position_step replace the policy's "
        "instead of tightening them (the robot model's and robot config's still bound them)",
    )
    start_enabled: bool = setting(
        False,
        "deploy: command as soon as states arrive; false = wait for ~/enable (the safe default in "
        "front of a real robot)",
    )
    home_ramp_s: float = setting(
        2.0,
        "deploy: on enable, first move from the measured pose to the home pose over at least this "
        "long (within the velocity limits), then hand over to the policy; 0 = no ramp",
        low=0.0,
        high=600.0,
    )
    cmd_vel_timeout_s: float = setting(
        0.5, "deploy: a velocity command older than this is a command to stand (zero)", low=0.01, high=3600.0
    )
    cmd_vel_stamped: bool = setting(
        False, "deploy: cmd_vel is geometry_msgs/TwistStamped (Jazzy's controllers) instead of Twist"
    )
    max_clock_skew_s: float = setting(
        0.25,
        "deploy: joint_states/imu stamped further ahead of this node's clock are refused (clocks not "
        "synchronised)",
        low=0.0,
        high=60.0,
    )
    clock_timeout_s: float = setting(
        10.0, "deploy: with use_sim_time, give up when no /clock has come within this long", low=0.1
    )
    command_joint_names: list[str] = setting(
        [],
        "deploy: the order of the position interface's array, in the drivers' joint names (the "
        "forward position controller's joints); [] = the robot's joint order",
    )
    dry_run: bool = setting(False, "log commands instead of publishing them", read_only=False)
    compare_robot: str = setting(
        "",
        "eval: a robot config (YAML) to evaluate on as well, nominal physics, e.g. the robot.yaml of "
        "bringup sysid: summary.json then holds both success rates",
    )
    sweep: str = setting(
        "",
        "eval: a robustness sweep file (YAML; bringup also takes a preset of config/sweeps/): success "
        "over a grid of one parameter at a time, to output_dir/robustness.json and robustness.png",
    )


def command_safety(
    config: PolicyConfig,
    robot: RobotModel,
    period_s: float,
    contract: PolicyContract | None = None,
    robot_config: RobotConfig | None = None,
) -> SafetyFilter:
    """The policy node's safety filter: the tightest of the robot model, the robot config, the
    node's own limits and the contract's (``allow_looser_limits``: each limit the node gives
    replaces the contract's; the contract's others still hold)."""
    sources = [(config.position_limits, config.velocity_limits, config.max_position_step, "policy")]
    if robot_config is not None:
        limits = (robot_config.position_limits, robot_config.velocity_limits, robot_config.max_position_step)
        sources.append((*limits, "robot"))
    if contract is not None:
        looser = config.allow_looser_limits
        limits = (
            () if looser and config.position_limits else contract.position_limits,
            () if looser and config.velocity_limits else contract.velocity_limits,
            0.0 if looser and config.max_position_step else contract.max_position_step,
        )
        sources.append((*limits, "policy.checkpoint"))
    filters = [safety_filter(robot, period_s, *limits, section=section) for *limits, section in sources]
    return tightest(robot, filters, period_s)


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
    from sim_bridge_core.learning.checkpoint import CheckpointError, load_checkpoint  # torch, when read

    source = Path(path)
    try:
        return (
            _onnx_contract(source)
            if source.suffix == ".onnx"
            else PolicyContract.of_checkpoint(load_checkpoint(source))
        )
    except (CheckpointError, ContractError) as exc:
        raise ConfigError(f"policy.checkpoint: {exc}") from exc


def load_policy(
    path: str, model: str = "", device: str = "cpu", robot: RobotModel | None = None
) -> LoadedPolicy:
    """A checkpoint.pt (torch) or policy.onnx (onnxruntime) with its contract, checked against the
    task this code builds on ``robot`` (default: the model the policy was trained on) and probed
    with one zero observation; ConfigError naming ``policy.checkpoint`` (or ``policy.robot``, for
    a robot the policy does not fit) otherwise."""
    from sim_bridge_core.learning.checkpoint import CheckpointError, load_checkpoint

    source = Path(path)
    contract = read_contract(path)
    key = "policy.robot" if robot is not None else "policy.checkpoint"
    try:
        if robot is None:
            robot = load_robot(
                model or _contract_model(contract),
                joint_names=contract.joint_names,
                home=contract.home,
                sites=contract.sites,
            )
        task = make_task(contract.task, robot, contract.task_settings)
        contract.check(task, str(source))
    except (ContractError, ModelError, ConfigError) as exc:
        raise ConfigError(f"{key}: {exc}") from exc
    try:
        if source.suffix == ".onnx":
            policy, runtime = _onnx_policy(source), "onnxruntime"
        else:
            policy, runtime = load_checkpoint(source).policy(device), "torch"
        _probe(policy, task, str(source))
    except (CheckpointError, ContractError) as exc:
        raise ConfigError(f"policy.checkpoint: {exc}") from exc
    return LoadedPolicy(policy, contract, robot, task, runtime)


def _probe(policy: Policy, task: Task, source: str) -> None:
    """One forward pass on a zero observation: the network must give (1, joints) finite actions,
    or it would drive joints with actions meant for others (ContractError)."""
    size, joints = task.observation_size, task.robot.num_joints
    try:
        actions = np.asarray(policy(np.zeros((1, size), dtype=np.float32)))
    except Exception as exc:  # onnxruntime and torch raise their own kinds for a wrong input
        raise ContractError(f"{source}: the network fails on a (1, {size}) observation: {exc}") from exc
    if actions.shape != (1, joints):
        raise ContractError(
            f"{source}: the network maps a (1, {size}) observation to shape {actions.shape}, "
            f"not (1, {joints}) actions"
        )
    if not np.isfinite(actions).all():
        raise ContractError(f"{source}: the network outputs NaN or inf for a zero observation")


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
    """What deploy mode runs: the deployment, its period and command interface, the drivers' joint
    names (robot order) and the position interface's array order, and any warning."""

    deployment: Deployment
    runtime: str
    period_s: float
    command_interface: str
    driver_names: tuple[str, ...]
    command_joint_names: tuple[str, ...]
    warnings: tuple[str, ...]

    def command_order(self) -> np.ndarray:
        """Index into the robot's joints of each entry of the position interface's array."""
        return np.array([self.driver_names.index(name) for name in self.command_joint_names])


def load_deployment(config: PolicyConfig) -> DeployPlan:
    """The policy bound to the robot it drives, behind its safety filter, at the policy's rate and
    interface; ConfigError (one line naming the key) for anything that does not fit."""
    if not config.checkpoint:
        raise ConfigError("policy.checkpoint: required in deploy mode")
    robot, robot_config, driver_names = None, None, ()
    if config.robot:
        robot, robot_config, driver_names = _bound_robot(config.robot)
    loaded = load_policy(config.checkpoint, config.model, config.device, robot)
    contract = loaded.contract
    driver_names = driver_names or loaded.robot.joint_names
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
    command_names = tuple(config.command_joint_names) or tuple(driver_names)
    if sorted(command_names) != sorted(driver_names):
        raise ConfigError(
            f"policy.command_joint_names: {list(command_names)} is not an order of the robot's joints "
            f"{list(driver_names)}"
        )
    safety = command_safety(config, loaded.robot, period_s, contract, robot_config)
    require_bounded(safety, loaded.robot)
    settings = DeploySettings(
        period_s=period_s,
        state_timeout_s=config.state_timeout_s,
        cmd_vel_timeout_s=config.cmd_vel_timeout_s,
        max_clock_skew_s=config.max_clock_skew_s,
        home_ramp_s=config.home_ramp_s,
    )
    deployment = Deployment(
        loaded.robot, loaded.task, loaded.policy, safety, settings, driver_names, config.start_enabled
    )
    return DeployPlan(
        deployment, loaded.runtime, period_s, interface, tuple(driver_names), command_names, tuple(mismatches)
    )


def _bound_robot(path_text: str) -> tuple[RobotModel, RobotConfig, tuple[str, ...]]:
    """The robot config deploy binds to, the robot it describes and its drivers' joint names."""
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"policy.robot: no robot file {path}")
    try:
        robot_config = read_robot_config(path)
        robot = robot_from_config(robot_config, path.name)
        names = driver_joint_names(
            robot_config.joint_name_map, robot_config.joint_prefix, robot.joint_names, path.name
        )
        return robot, robot_config, names
    except (ConfigError, ModelError) as exc:
        raise ConfigError(f"policy.robot: {exc}") from exc
