"""Robot models: built-in MJCF assets and the loader that makes any MJCF/URDF position-controlled."""

from sim_bridge_core.models.robot import ModelError, PdGains, RobotModel, builtin_models, load_robot

__all__ = ["ModelError", "PdGains", "RobotModel", "builtin_models", "load_robot"]
