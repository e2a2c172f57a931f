"""Model-parameter overrides: what system identification writes and a robot config carries.

A robot config's ``model_parameters`` section (and the simulator's ``model_parameters`` setting)
replaces physical parameters of the model, so the simulator reproduces an identified robot::

    model_parameters:
      joints:
        joint1: {damping: 1.2, armature: 0.11, frictionloss: 0.05, kp: 4400.0, kv: 430.0}
      bodies:
        link3: {mass: 3.1}
      command_delay_s: 0.004
      options: {timestep: 0.004, cone: pyramidal, impratio: 1}

Per joint: ``damping`` (N·m·s/rad), ``armature`` (kg·m²), ``frictionloss`` (N·m), and the gains of
the position servo driving it, ``kp`` and ``kv`` (a torque motor's PD gains once wrapped). Per
body: ``mass`` (kg; the inertia scales with it). ``command_delay_s``: how long a command takes to
reach the servos (rounded to whole physics steps). ``options``: the solver's ``timestep`` (s),
``iterations``, ``ls_iterations``, ``cone`` (pyramidal or elliptic) and ``impratio``, for a model
whose defaults cost more than training needs (a legged robot's elliptic cones at 2 ms). Values
are checked here (finite, in range) and against the model when it is loaded (every name must
exist), each error naming its key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

from sim_bridge_core.config import ConfigError

JOINT_FIELDS = ("damping", "armature", "frictionloss", "kp", "kv")
BODY_FIELDS = ("mass",)
CONES = {"pyramidal": int(mujoco.mjtCone.mjCONE_PYRAMIDAL), "elliptic": int(mujoco.mjtCone.mjCONE_ELLIPTIC)}
# option: (lowest value, whether it is a whole number)
OPTION_FIELDS = {
    "timestep": (1e-5, False),
    "iterations": (1, True),
    "ls_iterations": (1, True),
    "impratio": (1.0, False),
}
SECTION = "model_parameters"


@dataclass(frozen=True)
class ModelParameters:
    joints: dict[str, dict[str, float]] = field(default_factory=dict)
    bodies: dict[str, dict[str, float]] = field(default_factory=dict)
    command_delay_s: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.joints and not self.bodies and self.command_delay_s == 0.0 and not self.options

    def to_mapping(self) -> dict[str, Any]:
        """Plain values, as a robot config holds them (empty parts left out)."""
        data: dict[str, Any] = {}
        if self.joints:
            data["joints"] = {name: dict(values) for name, values in self.joints.items()}
        if self.bodies:
            data["bodies"] = {name: dict(values) for name, values in self.bodies.items()}
        if self.command_delay_s:
            data["command_delay_s"] = self.command_delay_s
        if self.options:
            data["options"] = dict(self.options)
        return data


def parse_model_parameters(data: Any, section: str = SECTION) -> ModelParameters:
    """A validated ModelParameters from a mapping (None or {} = none); ConfigError naming the key."""
    if data is None:
        return ModelParameters()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - {"joints", "bodies", "command_delay_s", "options"})
    if unknown:
        raise ConfigError(
            f"{section}.{unknown[0]}: unknown key (known: joints, bodies, command_delay_s, options)"
        )
    delay = _number(data.get("command_delay_s", 0.0), f"{section}.command_delay_s", low=0.0, high=1.0)
    return ModelParameters(
        joints=_named(data.get("joints"), JOINT_FIELDS, f"{section}.joints"),
        bodies=_named(data.get("bodies"), BODY_FIELDS, f"{section}.bodies"),
        command_delay_s=delay,
        options=_options(data.get("options"), f"{section}.options"),
    )


def _options(data: Any, section: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: must be a mapping of solver options")
    known = (*OPTION_FIELDS, "cone")
    options: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{section}.{key}: unknown option (known: {', '.join(known)})")
        if key == "cone":
            if value not in CONES:
                raise ConfigError(f"{section}.cone: must be one of {', '.join(CONES)}, got {value!r}")
            options[key] = value
            continue
        low, whole = OPTION_FIELDS[key]
        number = _number(value, f"{section}.{key}", low=low, strict=key == "timestep")
        if whole and number != int(number):
            raise ConfigError(f"{section}.{key}: must be a whole number, got {value!r}")
        options[key] = int(number) if whole else number
    return options


def _named(data: Any, fields: tuple[str, ...], section: str) -> dict[str, dict[str, float]]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: must be a mapping of names to values")
    parsed = {}
    for name, values in data.items():
        where = f"{section}.{name}"
        if not isinstance(values, Mapping) or not values:
            raise ConfigError(f"{where}: must be a mapping of {', '.join(fields)}")
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown parameter (known: {', '.join(fields)})")
        positive = ("mass", "kp")
        parsed[str(name)] = {
            key: _number(value, f"{where}.{key}", low=0.0, strict=key in positive)
            for key, value in values.items()
        }
    return parsed


def _number(value: Any, key: str, low: float, high: float = math.inf, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < low or value > high or (strict and value == low):
        bound = f"> {low}" if strict else f">= {low}"
        raise ConfigError(
            f"{key}: must be finite and {bound}"
            + (f", <= {high}" if high < math.inf else "")
            + f", got {value}"
        )
    return value


def apply_model_parameters(
    model: mujoco.MjModel, parameters: ModelParameters, joint_actuators: Mapping[int, int]
) -> None:
    """Write the overrides into a compiled model (then its derived constants); ModelError-free:
    an unknown name raises ConfigError naming ``model_parameters.<joints|bodies>.<name>``.

    ``joint_actuators`` maps a joint id to the position servo driving it (for ``kp``/``kv``).
    """
    for name, values in parameters.joints.items():
        joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if joint < 0:
            raise ConfigError(f"{SECTION}.joints.{name}: the model has no such joint")
        dof = model.jnt_dofadr[joint]
        for key, column in (("damping", model.dof_damping), ("armature", model.dof_armature)):
            if key in values:
                column[dof] = values[key]
        if "frictionloss" in values:
            model.dof_frictionloss[dof] = values["frictionloss"]
        if "kp" in values or "kv" in values:
            actuator = joint_actuators.get(joint)
            if actuator is None:
                raise ConfigError(f"{SECTION}.joints.{name}: kp/kv given, but no position servo drives it")
            if "kp" in values:
                model.actuator_gainprm[actuator, 0] = values["kp"]
                model.actuator_biasprm[actuator, 1] = -values["kp"]
            if "kv" in values:
                model.actuator_biasprm[actuator, 2] = -values["kv"]
    for name, values in parameters.bodies.items():
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        if body < 0:
            raise ConfigError(f"{SECTION}.bodies.{name}: the model has no such body")
        if model.body_mass[body] <= 0:
            raise ConfigError(f"{SECTION}.bodies.{name}: the body has no mass to change")
        scale = values["mass"] / model.body_mass[body]
        model.body_mass[body] = values["mass"]
        model.body_inertia[body] = np.asarray(model.body_inertia[body]) * scale
    for key, value in parameters.options.items():
        setattr(model.opt, key, CONES[value] if key == "cone" else value)
    if parameters.joints or parameters.bodies:
        mujoco.mj_setConst(model, mujoco.MjData(model))
