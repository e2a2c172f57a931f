"""From a bringup config (config/<name>.yaml) and ``key:=value`` arguments to node descriptions.

The launch files (one process per node) and the ``bringup`` executable (all nodes in one
process) both call ``describe``; neither holds any logic of its own. A config file has::

    arguments:   defaults of the launch arguments / bringup overrides (BringupArguments keys)
    nodes:       the nodes to run, each with
      <entry>:
        node:        the kind of node (simulator, policy, randomization, evaluator; default: the
                     entry's name), which is also its ROS name, so two entries may start the same
                     kind under different conditions
        when:        {argument: value, ...}  run only if every argument has that value
        unless:      {argument: value, ...}  skip if any argument has that value
        parameters:  node parameters beyond those the arguments set (nested maps become
                     dotted names: ppo: {num_steps: 24} -> ppo.num_steps)
        remappings:  {from: to, ...}

The arguments set the parameters they stand for on every node that has them (a file that
sets one of those under a node is refused: one place per setting), and every node's
parameters are validated by that node's own config schema here, so a bad key or value
fails before any node starts, with one line.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim_bridge_core.config import (
    ConfigError,
    check_value,
    from_mapping,
    read_yaml_file,
    setting,
    setting_specs,
)
from sim_bridge_core.deploy.policy import TRANSPORTS, PolicyConfig, read_contract
from sim_bridge_core.jobs.parity import EvaluatorConfig
from sim_bridge_core.jobs.robustness import load_sweep
from sim_bridge_core.learning import PpoConfig
from sim_bridge_core.learning.offpolicy_config import ALGORITHMS, OFF_POLICY_SECTION, OffPolicyConfig
from sim_bridge_core.models import (
    RobotConfig,
    RobotModel,
    driver_joint_names,
    load_robot_config,
    sensor_noise_randomization,
)
from sim_bridge_core.randomization.service import RandomizationNodeConfig
from sim_bridge_core.sim.backends import BACKENDS
from sim_bridge_core.sim.control import COMMAND_INTERFACES, COMMAND_TOPIC_NAMES
from sim_bridge_core.simulator.core import SimulatorConfig, robot_simulator_parameters
from sim_bridge_core.simulator.shards import shard_sizes
from sim_bridge_core.sysid.config import ExcitationConfig, ExciterConfig, SysidConfig
from sim_bridge_core.tasks import TASKS, make_task

JOBS = ("training", "sim", "deploy", "eval", "excite", "sysid")
# Arguments that, unless given, take simulate's value in jobs that drive a robot (deploy, excite).
FOLLOW_SIMULATE = ("use_sim_time", "start_enabled")
NAMESPACE = re.compile(r"/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")
# deploy (eval only): the checkpoint in a deploy-mode policy node drives one simulated robot
BRINGUP_TRANSPORTS = (*TRANSPORTS, "deploy")


@dataclass(frozen=True)
class BringupArguments:
    """Launch arguments and ``bringup`` overrides: the same keys, meaning and checks for both."""

    robot: str = setting("arm7", "config/robots/<robot>.yaml, or a robot YAML path")
    task: str = setting("reach", "task in every world", choices=tuple(TASKS))
    num_envs: int = setting(1, "parallel worlds", low=1, high=1 << 20)
    backend: str = setting("cpu", "physics backend", choices=BACKENDS)
    device: str = setting("", "warp device ('' = CUDA if present) and torch device for the policy")
    transport: str = setting(
        "fused",
        "training/eval: fused (one process) or ros (batch/* topics); eval: deploy (a deploy-mode policy "
        "node drives one simulated robot over its robot-facing topics)",
        choices=BRINGUP_TRANSPORTS,
    )
    command_interface: str = setting(
        "",
        "trajectory (JointTrajectory to a joint_trajectory_controller) or position (Float64MultiArray to "
        "a forward position controller); '' = the checkpoint's, else trajectory",
        choices=("", *COMMAND_INTERFACES),
    )
    randomization: str = setting(
        "none", "none, a preset of config/randomization/ (default, wide, go1), or a spec path"
    )
    record: bool = setting(
        False,
        "record to <output_dir>/rollouts (MCAP): training's mirrored worlds, deploy's robot and cameras, "
        "sim's camera streams",
    )
    video: bool = setting(
        False, "eval/training: videos of the policy to <output_dir>/videos (MUJOCO_GL=egl without a display)"
    )
    output_dir: str = setting("", "run folder (default runs/<timestamp>)")
    seed: int = setting(0, "seed of worlds, randomization and learner", low=0, high=(1 << 31) - 1)
    algorithm: str = setting(
        "ppo",
        "training: ppo, sac or td3 (their settings: the policy node's ppo.* or off_policy.*)",
        choices=ALGORITHMS,
    )
    max_env_steps: int = setting(50_000_000, "training budget in env steps", low=1, high=1 << 62)
    max_wall_s: float = setting(600.0, "training budget in wall seconds", low=0.0, high=1e9)
    eval_episodes: int = setting(1024, "episodes per evaluation", low=1, high=1 << 30)
    deploy_episodes: int = setting(100, "eval transport:=deploy: episodes through the deploy path", low=1)
    checkpoint: str = setting("", "deploy/eval: checkpoint.pt; training: start from it")
    control_dt: float = setting(
        0.02, "control period, s (0 = one physics step of the robot's model)", low=0.0, high=10.0
    )
    episode_length_s: float = setting(3.0, "episode length, s", low=1e-3, high=1e9)
    mirror_envs: list[int] = setting([0], "worlds with their own env_<i>/ topics (and recorded)", low=0)
    use_sim_time: bool = setting(
        False, "nodes take time from /clock (deploy, excite: default simulate's value)"
    )
    simulate: bool = setting(True, "deploy: run the simulator as the robot; false = a real robot's driver")
    namespace: str = setting(
        "", "every node's namespace: topics and services resolve in it (two robots side by side)"
    )
    num_shards: int = setting(
        1,
        "training/eval, transport:=ros: simulator nodes started here (namespaces shard_0, shard_1, ...), "
        "num_envs split over them, shard k seeded seed + k; one learner drives them as one batch",
        low=1,
        high=256,
    )
    simulators: list[str] = setting(
        [],
        "training/eval, transport:=ros: namespaces of simulator shards running elsewhere (other hosts), "
        "each started with its share of num_envs; no simulator is started here",
    )
    state_topic: str = setting("joint_states", "deploy/excite: the robot's JointState topic")
    imu_topic: str = setting("imu", "deploy: the robot's sensor_msgs/Imu topic (tasks that observe it)")
    cmd_vel_topic: str = setting("cmd_vel", "deploy: the velocity command topic (locomotion)")
    goal_topic: str = setting("goal", "deploy: the goal topic (reach)")
    command_topic: str = setting(
        "",
        "deploy/excite: the controller's topic, e.g. /joint_trajectory_controller/joint_trajectory or "
        "/forward_position_controller/commands ('' = /joint_trajectory or /joint_commands); sysid: "
        "the command topic in the bags ('' = the only one)",
    )
    dry_run: bool = setting(
        False,
        "excite: print the excitation's extent and limits, move nothing; deploy: log the commands "
        "instead of publishing them",
    )
    start_enabled: bool = setting(
        False, "deploy: command once states arrive, without ~/enable (default: simulate's value)"
    )
    home_ramp_s: float = setting(
        2.0,
        "deploy: on enable, ramp from the measured pose to home over at least this long, s (0 = no ramp)",
        low=0.0,
        high=600.0,
    )
    cmd_vel_timeout_s: float = setting(
        0.5, "deploy: a velocity command older than this is a command to stand", low=0.01, high=3600.0
    )
    cmd_vel_stamped: bool = setting(False, "deploy: cmd_vel is geometry_msgs/TwistStamped, not Twist")
    command_joint_names: list[str] = setting(
        [],
        "deploy: the position interface's array order in the drivers' names ([] = the robot's joint order)",
    )
    duration_s: float = setting(30.0, "excite: length of the excitation, s", low=1.0, high=3600.0)
    bag: list[str] = setting([], "sysid: rosbag2 folder(s) of the robot (bag:=A bag:=B, or bag:=[A, B])")
    validation_bag: list[str] = setting(
        [], "sysid: rosbag2 folder(s) of the robot doing something else: validated on, never fitted"
    )
    compare_robot: str = setting(
        "", "eval: also evaluate on this robot (e.g. sysid's robot.yaml), nominal physics, side by side"
    )
    eval_robot: str = setting(
        "",
        "eval: simulate this robot file instead of robot:= (its model_parameters, solver options, "
        "command delay and sensor_noise) and evaluate the policy trained on robot:= against it",
    )
    sweep: str = setting(
        "",
        "eval: robustness sweep, a preset of config/sweeps/ (default, ...) or a sweep file: "
        "<output_dir>/robustness.json and robustness.png",
    )


@dataclass(frozen=True)
class NodeDescription:
    """One node to start: what `launch_ros.actions.Node` and the bringup runner both take."""

    package: str
    executable: str
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    namespace: str = ""


@dataclass(frozen=True)
class Bringup:
    job: str
    arguments: BringupArguments
    robot: RobotConfig
    nodes: list[NodeDescription]


# package, executable and config schemas (by parameter prefix) of each node
NODES: dict[str, tuple[str, str, dict[str, type]]] = {
    "simulator": ("sim_bridge_sim", "simulator", {"": SimulatorConfig}),
    "policy": (
        "sim_bridge_policy",
        "policy",
        {
            "": PolicyConfig,
            "sim.": SimulatorConfig,
            "ppo.": PpoConfig,
            f"{OFF_POLICY_SECTION}.": OffPolicyConfig,
        },
    ),
    "randomization": ("sim_bridge_randomization", "randomization", {"": RandomizationNodeConfig}),
    "evaluator": ("sim_bridge_policy", "evaluator", {"": EvaluatorConfig, "sim.": SimulatorConfig}),
    "exciter": ("sim_bridge_policy", "excite", {"": ExciterConfig, "excitation.": ExcitationConfig}),
    "sysid": ("sim_bridge_policy", "sysid", {"": SysidConfig}),
}
# Arguments whose values add up when given more than once (bag:=A bag:=B).
REPEATABLE = ("bag", "validation_bag")


def runs_job(kind: str, parameters: Mapping[str, Any]) -> bool:
    """Whether a node runs its job to an end (then the launch, or the bringup process, ends with it):
    the policy in train or eval mode, the evaluator, the exciter and sysid."""
    return kind in ("evaluator", "exciter", "sysid") or (
        kind == "policy" and parameters.get("mode") in ("train", "eval")
    )


def parse_overrides(texts: list[str]) -> dict[str, Any]:
    """``key:=value`` strings (values parsed as YAML, as ``ros2 launch`` and ``-p`` do); a repeatable
    argument given several times collects every value in a list (the last value wins otherwise)."""
    overrides: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition(":=")
        if not sep or not key:
            raise ConfigError(f"argument '{text}': expected key:=value")
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key}: not a valid value: {exc}") from exc
        if key in REPEATABLE:
            parsed = [*overrides.get(key, []), *(parsed if isinstance(parsed, list) else [parsed])]
        overrides[key] = parsed
    return overrides


def load_arguments(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> BringupArguments:
    """The config file's argument defaults, overrides on top, validated (ConfigError names the key)."""
    specs = {spec.name: spec for spec in setting_specs(BringupArguments)}
    merged = dict(defaults)
    for key, value in overrides.items():
        if key not in specs:
            raise ConfigError(f"{key}: unknown argument (known: {', '.join(specs)})")
        # Launch arguments arrive as text; a string setting keeps numbers-as-text as given.
        merged[key] = str(value) if specs[key].type is str and not isinstance(value, str) else value
        if specs[key].is_list and specs[key].item_type is str and not isinstance(value, list):
            merged[key] = [str(value)] if value != "" else []  # bag:=A (a launch argument, one bag)
    return from_mapping(BringupArguments, merged, "arguments")


def check_robot_tasks(robot: RobotConfig, model: RobotModel) -> None:
    """Build every task the robot file configures, so a bad task setting fails before anything starts."""
    for task, settings in robot.tasks.items():
        if task not in TASKS:
            raise ConfigError(f"tasks.{task}: unknown task (known: {', '.join(TASKS)})")
        make_task(task, model, settings)


def resolve_preset(value: str, key: str, folder: Path) -> Path:
    """A preset name (``folder``/<name>.yaml) or a file path, as the file; ConfigError naming ``key``."""
    preset = folder / f"{value}.yaml"
    path = preset if "/" not in value and preset.is_file() else Path(value)
    if not path.is_file():
        presets = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(f"{key}: '{value}' is neither a preset ({presets}) nor a file")
    return path.resolve()


def resolve_randomization(value: str, config_dir: Path) -> str:
    """A preset name (config/randomization/<name>.yaml) or a spec path as the path the nodes load
    ('' for none)."""
    if value in ("", "none"):
        return ""
    return str(resolve_preset(value, "randomization", config_dir / "randomization"))


def resolve_sweep(args: BringupArguments, config_dir: Path) -> str:
    """The sweep preset (config/sweeps/<name>.yaml) or file as a checked path ('' for none)."""
    if not args.sweep:
        return ""
    if args.transport == "deploy":
        raise ConfigError("sweep: runs in fused worlds beside transport:=fused or ros, not deploy")
    return load_sweep(resolve_preset(args.sweep, "sweep", config_dir / "sweeps")).source


def resolve_command_interface(args: BringupArguments) -> str:
    """The argument, else the checkpoint's (when there is one to read), else trajectory."""
    if args.command_interface:
        return args.command_interface
    if args.checkpoint and Path(args.checkpoint).is_file():
        try:
            return read_contract(args.checkpoint).command_interface
        except ConfigError:
            pass  # the policy node refuses the checkpoint at start-up, with the reason
    return COMMAND_INTERFACES[0]


def simulator_parameters(
    args: BringupArguments, robot: RobotConfig, randomization: str, interface: str
) -> dict[str, Any]:
    """The simulator settings the arguments and the robot file decide."""
    deployed = args.transport == "deploy"  # one simulated robot, driven through its own topics
    return {
        **robot_simulator_parameters(robot, args.task),
        "num_envs": 1 if deployed else args.num_envs,
        "command_interface": interface,
        "backend": args.backend,
        "device": args.device,
        "control_dt": args.control_dt,
        "task": args.task,
        "episode_length_s": args.episode_length_s,
        "seed": args.seed,
        "mirror_envs": [0] if deployed else list(args.mirror_envs),
        # The deploy path is measured against fused worlds with the same physics: the robot's own,
        # with its sensors' noise.
        "randomization": sensor_noise_randomization(robot) if deployed else randomization,
    }


def argument_parameters(
    kind: str,
    args: BringupArguments,
    robot: RobotConfig,
    randomization: str,
    interface: str,
    robot_path: str = "",
    compare_robot: str = "",
    driver_names: tuple[str, ...] = (),
    simulated: RobotConfig | None = None,
) -> dict:
    """Parameters of a node of ``kind`` that the arguments set (they win over the config file's).

    ``robot_path`` and ``compare_robot`` are the robot files the arguments name, resolved;
    ``driver_names`` the robot's joints as its drivers name them; ``simulated`` the robot the
    simulated worlds are, when it is not ``robot`` (``eval_robot``)."""
    sim = simulator_parameters(args, simulated or robot, randomization, interface)
    sim_keys = {f"sim.{key}": value for key, value in sim.items()}
    common = {"use_sim_time": args.use_sim_time}
    if kind == "simulator":
        return {**sim, **common}
    if kind == "randomization":
        return {"config": randomization, "seed": args.seed, **common}
    if kind == "evaluator":
        evaluator = {
            "checkpoint": args.checkpoint,
            "output_dir": args.output_dir,
            "episodes": args.deploy_episodes,
            "eval_episodes": args.eval_episodes,
        }
        # The fused evaluation beside the deployed robot runs on num_envs worlds.
        return {**evaluator, **sim_keys, "sim.num_envs": args.num_envs, **common}
    if kind == "policy":
        policy = {
            "output_dir": args.output_dir,
            "max_env_steps": args.max_env_steps,
            "max_wall_s": args.max_wall_s,
            "eval_episodes": args.eval_episodes,
            "record": args.record,
            "video": args.video,
            "checkpoint": args.checkpoint,
            "algorithm": args.algorithm,
            "command_interface": args.command_interface,
            "position_limits": list(robot.position_limits),
            "velocity_limits": list(robot.velocity_limits),
            "max_position_step": robot.max_position_step,
            "compare_robot": compare_robot,
            "sweep": args.sweep,
            "dry_run": args.dry_run,
            "robot": robot_path,
            "start_enabled": args.start_enabled,
            "home_ramp_s": args.home_ramp_s,
            "cmd_vel_timeout_s": args.cmd_vel_timeout_s,
            "cmd_vel_stamped": args.cmd_vel_stamped,
            "command_joint_names": list(args.command_joint_names),
        }
        if args.transport in TRANSPORTS:
            policy["transport"] = args.transport
        if args.device:
            policy["device"] = args.device
        seeds = {"ppo.seed": args.seed, f"{OFF_POLICY_SECTION}.seed": args.seed}
        return {**policy, **sim_keys, **seeds, **common}
    if kind == "exciter":
        exciter = {
            "model": robot.model,
            "joint_names": list(robot.joint_names),
            "command_interface": interface,
            "position_limits": list(robot.position_limits),
            "velocity_limits": list(robot.velocity_limits),
            "max_position_step": robot.max_position_step,
            "driver_joint_names": list(driver_names),
            "output_dir": args.output_dir,
            "dry_run": args.dry_run,
        }
        return {**exciter, "excitation.duration_s": args.duration_s, **common}
    if kind == "sysid":
        sysid = {
            "bags": list(args.bag),
            "validation_bags": list(args.validation_bag),
            "robot": robot_path,
            "output_dir": args.output_dir,
            "state_topic": args.state_topic,
            "command_topic": args.command_topic,
        }
        return {**sysid, **common}
    raise ConfigError(f"nodes.{kind}: unknown node (known: {', '.join(NODES)})")


def evaluated_robot(source: str, config_dir: Path, trained: RobotConfig, model: RobotModel) -> RobotConfig:
    """The ``eval_robot`` file: another robot of the same joints, as its drivers name them."""
    robot, path, other = load_robot_config(source, config_dir, check_robot_tasks)
    ours = driver_joint_names(trained.joint_name_map, trained.joint_prefix, model.joint_names, "robot")
    theirs = driver_joint_names(robot.joint_name_map, robot.joint_prefix, other.joint_names, path.name)
    if theirs != ours:
        raise ConfigError(
            f"eval_robot: {path.name} has joints {list(theirs)}, the policy's robot {list(ours)}"
        )
    return robot


def describe(job: str, overrides: Mapping[str, Any], config_dir: str | Path) -> Bringup:
    """Everything to start for config/<job>.yaml with ``overrides``; ConfigError on any bad input."""
    config_dir = Path(config_dir)
    if job not in JOBS:
        raise ConfigError(f"bringup: unknown config '{job}' (choose from {', '.join(JOBS)})")
    path = config_dir / f"{job}.yaml"
    data = _read_yaml(path)
    sections = ("arguments", "task_arguments", "nodes", "record")
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"{path.name}: {unknown[0]}: unknown section (known: {', '.join(sections)})")
    defaults = _task_defaults(data, overrides, path.name)
    args = load_arguments(defaults, overrides)
    if "simulate" in defaults:  # a job that drives a robot, simulated or not
        # Sim time and starting enabled are right for the simulator, wrong for a real robot.
        follow = {
            key: args.simulate for key in FOLLOW_SIMULATE if key not in defaults and key not in overrides
        }
        args = dataclasses.replace(args, **follow)
    if args.namespace and not NAMESPACE.fullmatch(args.namespace):
        raise ConfigError(
            f"namespace: '{args.namespace}' is not a ROS namespace (e.g. robot1 or /lab/robot1)"
        )
    if args.transport == "ros" and TASKS[args.task].uses_imu:
        raise ConfigError(
            f"transport: task {args.task} observes the IMU, which the batch/* lockstep does not carry "
            "(use transport:=fused)"
        )
    robot, robot_path, model = load_robot_config(args.robot, config_dir, check_robot_tasks)
    if args.control_dt == 0.0:
        args = dataclasses.replace(args, control_dt=model.physics_dt)
    compare_robot = ""
    if args.compare_robot:
        compare_robot = str(load_robot_config(args.compare_robot, config_dir, check_robot_tasks)[1].resolve())
    eval_robot = evaluated_robot(args.eval_robot, config_dir, robot, model) if args.eval_robot else None
    randomization = resolve_randomization(args.randomization, config_dir)
    args = dataclasses.replace(args, sweep=resolve_sweep(args, config_dir))
    interface = resolve_command_interface(args)
    driver_names = driver_joint_names(
        robot.joint_name_map, robot.joint_prefix, model.joint_names, robot_path.name
    )
    simulated = args.simulate and "simulate" in defaults
    if simulated and args.command_joint_names and tuple(args.command_joint_names) != driver_names:
        raise ConfigError(
            f"command_joint_names: the simulated robot takes the array in its joint order "
            f"{list(driver_names)}; give another order only for a real controller (simulate:=false)"
        )
    nodes = []
    for entry_name, entry in (data.get("nodes") or {}).items():
        entry = entry or {}
        where = f"{path.name}: nodes.{entry_name}"
        _check_keys(entry, {"node", "when", "unless", "parameters", "remappings"}, where)
        if not _selected(entry, args, where):
            continue
        kind = str(entry.get("node", entry_name))
        package, executable, schemas = _node_kind(kind, where)
        parameters = _flatten(entry.get("parameters") or {})
        from_arguments = argument_parameters(
            kind,
            args,
            robot,
            randomization,
            interface,
            str(robot_path.resolve()),
            compare_robot,
            driver_names,
            eval_robot,
        )
        clash = sorted(set(parameters) & set(from_arguments))
        if clash:
            raise ConfigError(f"{where}.parameters.{clash[0]}: set by the arguments; give it under arguments")
        parameters = _validate({**parameters, **from_arguments}, schemas, where)
        remappings = [(str(a), str(b)) for a, b in (entry.get("remappings") or {}).items()]
        remappings += robot_remappings(kind, args, interface)
        if any(node.name == kind for node in nodes):
            raise ConfigError(f"{where}: a second {kind} node runs with these arguments")
        nodes.append(NodeDescription(package, executable, kind, parameters, remappings, args.namespace))
    if not nodes:
        raise ConfigError(f"{path.name}: no node runs with these arguments")
    nodes = shard_nodes(nodes, args)
    _record_cameras(nodes, args, robot, robot_path.name)
    return Bringup(job, args, robot, nodes)


def shard_nodes(nodes: list[NodeDescription], args: BringupArguments) -> list[NodeDescription]:
    """The nodes with the worlds split over simulator shards: ``num_shards`` copies of the simulator
    (and of its randomization node) in namespaces shard_<k>, each with its share of the worlds and
    the seed ``seed + k``, or none here for ``simulators`` that run elsewhere; the learner is told
    the shards' namespaces. One simulator (the default) leaves the nodes as they are."""
    if args.num_shards == 1 and not args.simulators:
        return nodes
    key = "simulators" if args.simulators else "num_shards"
    if args.num_shards > 1 and args.simulators:
        raise ConfigError("num_shards: give num_shards (started here) or simulators (elsewhere), not both")
    if args.transport != "ros" or not any(node.name == "policy" for node in nodes):
        raise ConfigError(f"{key}: simulator shards serve a learner over transport:=ros (training or eval)")
    namespaces = list(args.simulators) or [f"shard_{k}" for k in range(args.num_shards)]
    try:
        sizes = shard_sizes(args.num_envs, len(namespaces))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from exc
    sharded = []
    for node in nodes:
        if node.name == "policy":
            sharded.append(
                dataclasses.replace(node, parameters={**node.parameters, "simulators": namespaces})
            )
        elif node.name not in ("simulator", "randomization"):
            sharded.append(node)
        elif not args.simulators:
            sharded += [_shard(node, args, k, sizes) for k in range(args.num_shards)]
    return sharded


def _shard(node: NodeDescription, args: BringupArguments, k: int, sizes: list[int]) -> NodeDescription:
    """Shard k's copy of a simulator or randomization node."""
    namespace = "/".join(part for part in (args.namespace.strip("/"), f"shard_{k}") if part)
    parameters = {**node.parameters, "seed": args.seed + k}
    remappings = list(node.remappings)
    if node.name == "randomization":  # it reaches its simulator by absolute name
        parameters["simulator"] = f"{namespace}/simulator"
    else:
        first = sum(sizes[:k])
        local = [world - first for world in args.mirror_envs if first <= world < first + sizes[k]]
        parameters.update(num_envs=sizes[k], mirror_envs=local or [0])
        remappings.append(("/clock", "clock"))  # each shard's sim time is its own
    return dataclasses.replace(node, parameters=parameters, remappings=remappings, namespace=namespace)


# Nodes that write <output_dir>/rollouts themselves (a deploy-mode policy records the cameras too).
RECORDING_NODES = ("policy", "exciter")


def _record_cameras(
    nodes: list[NodeDescription], args: BringupArguments, robot: RobotConfig, robot_file: str
) -> None:
    """``record:=true`` with a simulator and no node that records: the simulator records its camera
    streams (``bringup sim``); a robot without cameras has nothing to record, and is refused."""
    simulator = next((node for node in nodes if node.name == "simulator"), None)
    if not args.record or simulator is None or any(node.name in RECORDING_NODES for node in nodes):
        return
    if not robot.cameras:
        raise ConfigError(
            f"record: {robot_file} lists no cameras; the simulator alone records its camera streams"
        )
    simulator.parameters.update(record_cameras=True, output_dir=args.output_dir)


def robot_remappings(kind: str, args: BringupArguments, interface: str) -> list[tuple[str, str]]:
    """The robot's topics, on both ends: the nodes that drive a robot, the evaluator that sends it
    goals, and the simulator that stands in for it (its world's topics; the batched ones are its
    own). In a namespace, a simulated robot's /clock is the namespace's own, so two simulated
    robots side by side each keep their time."""
    if kind not in ("policy", "exciter", "simulator", "evaluator"):
        return []
    remappings = [
        ("joint_states", args.state_topic),
        ("imu", args.imu_topic),
        ("cmd_vel", args.cmd_vel_topic),
        ("goal", args.goal_topic),
    ]
    if args.command_topic:
        remappings.append((COMMAND_TOPIC_NAMES[interface], args.command_topic))
    if args.namespace and args.simulate:
        remappings.append(("/clock", "clock"))
    return [(name, topic) for name, topic in remappings if name != topic]


def _task_defaults(data: Mapping[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The config's argument defaults, with its ``task_arguments.<task>`` over them (a task's own
    budget, episode length, worlds) for the task the overrides or the defaults name."""
    defaults = dict(data.get("arguments") or {})
    by_task = data.get("task_arguments") or {}
    task = str(overrides.get("task", defaults.get("task", BringupArguments.task)))
    for name, values in by_task.items():
        if name not in TASKS:
            raise ConfigError(f"{where}: task_arguments.{name}: unknown task (known: {', '.join(TASKS)})")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: task_arguments.{name}: must be a mapping of arguments")
    defaults.update(by_task.get(task) or {})
    return defaults


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml_file(path, path.name)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top")
    return data or {}


def _check_keys(entry: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")


def _selected(entry: Mapping[str, Any], args: BringupArguments, where: str) -> bool:
    specs = {spec.name: spec for spec in setting_specs(BringupArguments)}
    for kind in ("when", "unless"):
        for key, value in (entry.get(kind) or {}).items():
            if key not in specs:
                raise ConfigError(f"{where}.{kind}.{key}: unknown argument")
            matches = getattr(args, key) == check_value(specs[key], value, f"{where}.{kind}")
            if matches != (kind == "when"):
                return False
    return True


def _node_kind(name: str, where: str) -> tuple[str, str, dict[str, type]]:
    if name not in NODES:
        raise ConfigError(f"{where}: unknown node (known: {', '.join(NODES)})")
    return NODES[name]


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _validate(parameters: dict[str, Any], schemas: dict[str, type], where: str) -> dict[str, Any]:
    """Each parameter checked and converted by the schema its prefix selects (longest prefix first)."""
    groups: dict[str, dict[str, Any]] = {prefix: {} for prefix in schemas}
    for key, value in parameters.items():
        if key == "use_sim_time":
            continue
        prefix = max((p for p in schemas if key.startswith(p)), key=len)
        groups[prefix][key[len(prefix) :]] = value
    checked = dict(parameters)
    for prefix, values in groups.items():
        section = f"{where}.parameters{'.' + prefix.rstrip('.') if prefix else ''}"
        config = from_mapping(schemas[prefix], values, section)
        check = getattr(config, "check", None)
        if check is not None:
            check()
        checked.update({prefix + key: getattr(config, key) for key in values})
        # An empty list has no element type on the ROS side (rclpy would guess a byte array, a
        # launch parameter file could not type it); one that is the default is left out.
        defaults = {spec.name: spec.default for spec in setting_specs(schemas[prefix])}
        for key in values:
            if checked[prefix + key] == [] and defaults[key] == []:
                del checked[prefix + key]
    return checked
