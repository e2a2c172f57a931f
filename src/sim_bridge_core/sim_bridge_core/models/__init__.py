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

__all__ = [
    "ModelError",
    "ModelParameters",
    "PdGains",
    "RobotModel",
    "builtin_models",
    "load_robot",
    "parse_model_parameters",
    "robot_spec",
]
