"""config/robots/<name>.yaml: what is specific to one robot, and the robot it describes.

Every job reads a robot through here: the simulator stands in for it, training and evaluation
build its worlds, deploy binds a policy to it (its limits and its drivers' joint names), the
exciter and sysid drive and fit it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from sim_bridge_core.config import ConfigError, from_mapping, read_yaml_file, setting
from sim_bridge_core.models.parameters import parse_model_parameters
from sim_bridge_core.models.robot import ModelError, PdGains, RobotModel, load_robot
from sim_bridge_core.rendering.cameras import parse_cameras

# sensor_noise keys: joint_states' position (rad) and velocity (rad/s), the IMU's angular velocity
# (rad/s) and linear acceleration (m/s^2).
SENSOR_NOISE = ("joint_position", "joint_velocity", "imu_angular_velocity", "imu_linear_acceleration")


@dataclass(frozen=True)
class RobotConfig:
    """config/robots/<name>.yaml: what is specific to one robot."""

    model: str = setting(
        "arm7",
        "built-in model name, MJCF/URDF path (relative to the robot file, or to a folder of "
        "SIM_BRIDGE_MODEL_PATH), or package://<package>/<path>",
    )
    joint_names: list[str] = setting(
        [], "the controlled joints, in the policy's order ([] = every joint an actuator drives)"
    )
    home: str = setting(
        "", "the home pose's keyframe ('' = the model's 'home' keyframe, else its reference pose)"
    )
    imu_site: str = setting(
        "",
        "site of the IMU ('' = the site of the model's first gyro/accelerometer, else a floating "
        "base's body)",
    )
    sites: dict = setting(
        {}, "sites to add to the model, e.g. a tool centre point: {tcp: {body: hand, pos: [0, 0, 0.1]}}"
    )
    cameras: list[dict] = setting(
        [],
        "cameras to publish: [{name, body, pos, quat, fovy, width, height, depth, rate_hz}]; with a "
        "body it is added there, without one it names the model's own camera (which is published only "
        "when listed)",
    )
    tasks: dict = setting(
        {},
        "per-task settings, e.g. reach: {ee_site: TCP, goal_low: [x, y, z], goal_high: [x, y, z], "
        "reward_weights: {goal_bonus: 2.0}}",
    )
    kp: float = setting(100.0, "PD stiffness for torque-driven joints", low=0.0)
    kd: float = setting(10.0, "PD damping for torque-driven joints", low=0.0)
    position_limits: list[float] = setting(
        [], "safety position limits, lower/upper per joint ([] = the model's), in training and deploy"
    )
    velocity_limits: list[float] = setting(
        [],
        "safety velocity limits, rad/s, one per joint or one for all, within the model's ([] = the model's)",
        low=0.0,
    )
    max_position_step: float = setting(
        0.0, "an extra cap on the target step per control period, rad (0 = velocity limit only)", low=0.0
    )
    model_parameters: dict = setting(
        {},
        "model-parameter overrides (joints: {<joint>: {damping, armature, frictionloss, kp, kv}}, "
        "bodies: {<body>: {mass}}, command_delay_s), e.g. written by bringup sysid",
    )
    joint_name_map: dict = setting(
        {},
        "the robot's drivers' joint names, {driver name: model joint name}, for joint_states in and "
        "commands out ({} = the model's names, with joint_prefix)",
    )
    joint_prefix: str = setting("", "a prefix the drivers put before every model joint name (e.g. fr3_)")
    sensor_noise: dict = setting(
        {},
        "noise on what the robot's drivers report, the half-width of a uniform draw per reading: "
        f"{{{', '.join(SENSOR_NOISE)}}}; a simulated stand-in of this robot (deploy, eval_robot) adds it",
    )


def robot_config_path(robot: str, config_dir: Path) -> Path:
    """The robot file a ``robot`` argument names: a YAML path, or config/robots/<robot>.yaml."""
    path = Path(robot) if robot.endswith((".yaml", ".yml")) else config_dir / "robots" / f"{robot}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir / "robots").glob("*.yaml"))
        raise ConfigError(f"robot: no robot file {path} (robots: {', '.join(known)})")
    return path


def read_robot_config(path: Path) -> RobotConfig:
    """A robot file, its model path resolved against the file; ConfigError naming a bad key."""
    data = read_yaml_file(path, path.name)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top")
    config = from_mapping(RobotConfig, data or {}, path.name)
    beside = path.parent / config.model
    if not Path(config.model).is_absolute() and beside.is_file():
        config = dataclasses.replace(config, model=str(beside.resolve()))
    return config


def load_robot_config(
    robot: str, config_dir: Path, check: Callable[[RobotConfig, RobotModel], None] | None = None
) -> tuple[RobotConfig, Path, RobotModel]:
    """The robot file named by a ``robot`` argument (its model path resolved against the file), its
    path, and the robot it describes, loaded as the simulator loads it. ``check`` adds the caller's
    checks (bringup builds every configured task); any bad name fails as one line naming the file
    and the key."""
    path = robot_config_path(robot, config_dir)
    config = read_robot_config(path)
    where = path.name
    try:
        model = robot_from_config(config, where)
        if check is not None:
            check(config, model)
    except ModelError as exc:
        key = str(exc).split(":", 1)[0]
        names_a_key = key.startswith(("joint_names", "home", "imu_site", "sites"))
        raise ConfigError(f"{where}: {exc}" if names_a_key else f"{where}: model: {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return config, path, model


def robot_from_config(robot: RobotConfig, where: str) -> RobotModel:
    """The robot a robot file describes, loaded as the simulator loads it; ModelError or ConfigError
    (a bad model-parameter section, a bad joint name map) on a bad name."""
    parameters = parse_model_parameters(robot.model_parameters, f"{where}: model_parameters")
    model = load_robot(
        robot.model,
        gains=PdGains(robot.kp, robot.kd),
        parameters=parameters,
        joint_names=robot.joint_names,
        home=robot.home,
        imu_site=robot.imu_site,
        sites=robot.sites,
        cameras=parse_cameras(robot.cameras, f"{where}: cameras"),
    )
    driver_joint_names(robot.joint_name_map, robot.joint_prefix, model.joint_names, where)
    check_sensor_noise(robot.sensor_noise, where)
    return model


def check_sensor_noise(noise: Mapping, where: str) -> None:
    """Known readings, each a finite half-width >= 0; ConfigError naming the key."""
    for key, value in noise.items():
        if key not in SENSOR_NOISE:
            known = ", ".join(SENSOR_NOISE)
            raise ConfigError(f"{where}: sensor_noise.{key}: unknown reading (known: {known})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < float("inf"):
            raise ConfigError(f"{where}: sensor_noise.{key}: must be a number >= 0, got {value!r}")


def sensor_noise_randomization(robot: RobotConfig) -> str:
    """The randomization spec (YAML text) that adds ``robot.sensor_noise`` to every reading of a
    simulated stand-in ('' for none): the simulator's own noise terms, drawn each step."""
    terms = {}
    for key, half_width in robot.sensor_noise.items():
        if half_width > 0:
            target = {"axes": "xyz"} if key.startswith("imu_") else {"targets": "*"}
            uniform = {"distribution": "uniform", "low": -half_width, "high": half_width}
            terms[f"{key}_noise"] = {**target, "operation": "add", **uniform}
    if not terms:
        return ""
    return yaml.safe_dump({"randomization": {"enabled": True, "schedule": "reset", **terms}}, sort_keys=False)


def driver_joint_names(
    mapping: Mapping[str, str], prefix: str, joints: Sequence[str], where: str = "robot"
) -> tuple[str, ...]:
    """The drivers' name of each of ``joints`` (model names): through ``mapping`` (a robot config's
    ``joint_name_map``, driver name -> model name), else ``prefix`` + the model's name; ConfigError
    for a map that names no such joint, names one twice, or comes with a prefix as well."""
    if mapping and prefix:
        raise ConfigError(f"{where}: joint_name_map and joint_prefix: give one of them")
    if not mapping:
        return tuple(f"{prefix}{name}" for name in joints)
    to_driver: dict[str, str] = {}
    for driver, model in mapping.items():
        if not isinstance(driver, str) or not isinstance(model, str):
            raise ConfigError(f"{where}: joint_name_map: driver and model names must be strings")
        if model in to_driver:
            raise ConfigError(f"{where}: joint_name_map: model joint '{model}' is mapped twice")
        to_driver[model] = driver
    unknown = sorted(set(to_driver) - set(joints))
    if unknown:
        raise ConfigError(
            f"{where}: joint_name_map: '{unknown[0]}' is not a controlled joint ({', '.join(joints)})"
        )
    names = tuple(to_driver.get(name, name) for name in joints)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # two joints read and commanded through one name on the wire
        raise ConfigError(f"{where}: joint_name_map: two joints would be named '{twice[0]}' on the wire")
    return names
