"""Robot models: built-in MJCF assets, the loader that makes any MJCF/URDF position-controlled, and
model-parameter overrides."""

from sim_bridge_core.models.parameters import ModelParameters, parse_model_parameters
from sim_bridge_core.models.robot import (
    ModelError,
    PdGains,
    RobotModel,
    builtin_models,
    load_robot,
    robot_spec,
)
from sim_bridge_core.models.robot_config import (
    RobotConfig,
    driver_joint_names,
    load_robot_config,
    read_robot_config,
    robot_config_path,
    robot_from_config,
    sensor_noise_randomization,
)

__all__ = [
    "ModelError",
    "ModelParameters",
    "PdGains",
    "RobotConfig",
    "RobotModel",
    "builtin_models",
    "driver_joint_names",
    "load_robot",
    "load_robot_config",
    "parse_model_parameters",
    "read_robot_config",
    "robot_config_path",
    "robot_from_config",
    "robot_spec",
    "sensor_noise_randomization",
]
