"""The randomization spec: what is randomized, how and when, validated into frozen dataclasses.

A spec is a mapping (usually the ``randomization:`` section of a YAML file) with a few
top-level settings (``enabled``, ``seed``, ``schedule``, ``interval_s``, ``curriculum``)
and one entry per randomized parameter, named after the catalogue in ``PARAMETERS``::

    randomization:
      seed: 0
      schedule: reset            # startup | reset | interval
      body_mass: {targets: "*", operation: scale, distribution: uniform, low: 0.9, high: 1.1}

Each parameter entry has ``targets`` (names, fnmatch patterns, ``*`` for all),
``operation`` (``scale`` | ``add`` | ``abs``), ``distribution`` (``uniform`` |
``log_uniform`` | ``gaussian``, the latter clipped to the range) and ``low`` / ``high``.
Checks that need no model happen here; ``sampling.bind`` checks targets and the values a
range can produce against a model. Every failure is a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim_bridge_core.config import ConfigError, from_mapping, read_yaml_file, setting

SECTION = "randomization"
OPERATIONS = ("scale", "add", "abs")
DISTRIBUTIONS = ("uniform", "log_uniform", "gaussian")
SCHEDULES = ("startup", "reset", "interval")
AXES = "xyz"

# When a parameter's values are drawn, and what they act on.
MODEL = "model"  # an MjModel field per world, drawn by the schedule
EPISODE = "episode"  # a per-world actuation/sensing constant, drawn by the schedule
STEP = "step"  # noise drawn afresh every control step
RESET = "reset"  # drawn every time a world is reset
PUSH = "push"  # drawn at each world's push time
VISUAL = "visual"  # a render-only MjModel field per world, drawn by the schedule (see Randomizer)

# What ``targets`` names.
BODY = "body"
GEOM = "geom"
JOINT = "joint"  # any joint of the model (its degrees of freedom)
ROBOT_JOINT = "robot joint"  # a position-controlled joint of the robot
LIGHT = "light"
MATERIAL = "material"
CAMERA = "camera"


_NOISE = ("add", "scale")
# The longest action delay: each step of it is a (worlds, joints) row of a ring buffer, and
# a delay of a second or more at the usual 50 Hz control rate is no robot's latency.
MAX_ACTION_DELAY_STEPS = 50
# What an IMU's noise and bias act on (sensor_msgs/Imu fields), with their units.
IMU_QUANTITIES = (("angular_velocity", "rad/s"), ("linear_acceleration", "m/s^2"))


@dataclass(frozen=True)
class ParameterKind:
    """One entry of the catalogue: what a parameter acts on and which specs make sense for it."""

    name: str
    target: str | None
    stage: str
    description: str
    operations: tuple[str, ...] = OPERATIONS
    default_operation: str = "scale"
    axes: bool = False
    minimum: float | None = None  # bound on the value in effect
    strict: bool = False  # the value must stay > minimum (else >= minimum)
    maximum: float | None = None  # upper bound of an abs range (sizes a buffer per step of it)
    integer: bool = False
    choice: bool = False  # values are choices (ids): a curriculum cannot move them part way
    quantity: str = ""  # what the bound protects, for messages


def _at_least_zero(quantity: str, strict: bool = False) -> dict[str, Any]:
    return {"minimum": 0.0, "strict": strict, "quantity": quantity}


_CATALOGUE = (
    ParameterKind("geom_friction", GEOM, MODEL, "sliding friction of geoms", **_at_least_zero("friction")),
    ParameterKind(
        "body_mass", BODY, MODEL, "body mass, kg (inertia follows)", **_at_least_zero("mass", True)
    ),
    ParameterKind(
        "body_com", BODY, MODEL, "centre of mass, body frame, m", default_operation="add", axes=True
    ),
    ParameterKind("dof_damping", JOINT, MODEL, "joint damping", **_at_least_zero("damping")),
    ParameterKind("dof_armature", JOINT, MODEL, "joint armature, kg*m^2", **_at_least_zero("armature")),
    ParameterKind("dof_frictionloss", JOINT, MODEL, "joint dry friction", **_at_least_zero("frictionloss")),
    ParameterKind("actuator_kp", ROBOT_JOINT, MODEL, "servo stiffness", **_at_least_zero("kp", True)),
    ParameterKind("actuator_kd", ROBOT_JOINT, MODEL, "servo damping", **_at_least_zero("kd")),
    ParameterKind(
        "actuator_strength",
        ROBOT_JOINT,
        MODEL,
        "motor strength: a factor on the servo's kp, kd and torque limit (nominal 1)",
        **_at_least_zero("strength", True),
    ),
    ParameterKind("gravity", None, MODEL, "gravity vector, m/s^2", default_operation="add", axes=True),
    ParameterKind(
        "action_delay_steps",
        None,
        EPISODE,
        "delay of targets, control steps",
        ("abs",),
        "abs",
        integer=True,
        maximum=MAX_ACTION_DELAY_STEPS,
        **_at_least_zero("delay"),
    ),
    ParameterKind("action_noise", ROBOT_JOINT, STEP, "noise on targets, rad", _NOISE, "add"),
    ParameterKind("joint_position_noise", ROBOT_JOINT, STEP, "noise on measured positions", _NOISE, "add"),
    ParameterKind("joint_velocity_noise", ROBOT_JOINT, STEP, "noise on measured velocities", _NOISE, "add"),
    ParameterKind(
        "joint_position_bias", ROBOT_JOINT, EPISODE, "offset of measured positions", ("add",), "add"
    ),
    *(
        ParameterKind(
            f"imu_{quantity}_noise",
            None,
            STEP,
            f"noise on the IMU's {quantity}, {unit}",
            _NOISE,
            "add",
            axes=True,
        )
        for quantity, unit in IMU_QUANTITIES
    ),
    *(
        ParameterKind(
            f"imu_{quantity}_bias",
            None,
            EPISODE,
            f"offset of the IMU's {quantity}, {unit}",
            ("add",),
            "add",
            axes=True,
        )
        for quantity, unit in IMU_QUANTITIES
    ),
    ParameterKind(
        "initial_joint_offset", ROBOT_JOINT, RESET, "offset of the reset pose, rad", ("add",), "add"
    ),
    ParameterKind("push_velocity", JOINT, PUSH, "velocity kick every push interval", ("add",), "add"),
    # Visual: what camera images show, never the physics. Colours are per r, g, b channel and
    # clipped to [0, 1]; `shared: true` draws one value per world for every channel and target.
    ParameterKind(
        "light_direction", LIGHT, VISUAL, "light direction, light frame", default_operation="add", axes=True
    ),
    ParameterKind("light_diffuse", LIGHT, VISUAL, "diffuse colour of lights, r g b (intensity: shared)"),
    ParameterKind("geom_rgba", GEOM, VISUAL, "colour of geoms, r g b"),
    ParameterKind("material_rgba", MATERIAL, VISUAL, "colour of materials, r g b"),
    ParameterKind(
        "material_texture",
        MATERIAL,
        VISUAL,
        "texture of materials: a 2D texture id of the model drawn in [low, high]",
        ("abs",),
        "abs",
        integer=True,
        choice=True,
        **_at_least_zero("texture id"),
    ),
    ParameterKind(
        "camera_position", CAMERA, VISUAL, "camera position, body frame, m", ("add",), "add", axes=True
    ),
    ParameterKind(
        "camera_rotation",
        CAMERA,
        VISUAL,
        "camera rotation about its body's axes, rad",
        ("add",),
        "add",
        axes=True,
    ),
    ParameterKind(
        "camera_fovy", CAMERA, VISUAL, "vertical field of view, degrees", **_at_least_zero("fovy", True)
    ),
)
PARAMETERS: dict[str, ParameterKind] = {kind.name: kind for kind in _CATALOGUE}


@dataclass(frozen=True)
class CurriculumSpec:
    """Ranges grow from ``start_fraction`` of their width (about the nominal value) to the full range."""

    start_fraction: float = setting(
        1.0, "fraction of every range in effect at step 0 (1 = no curriculum)", low=0.0, high=1.0
    )
    steps: int = setting(0, "control steps over which the fraction grows linearly to 1", low=0)

    def fraction(self, step: int) -> float:
        if self.steps <= 0 or step >= self.steps:
            return 1.0
        return self.start_fraction + (1.0 - self.start_fraction) * step / self.steps


@dataclass(frozen=True)
class _Settings:
    enabled: bool = setting(True, "apply the randomization (False keeps nominal physics)")
    seed: int = setting(0, "seed of the randomization's own random generator", low=0, high=(1 << 63) - 1)
    schedule: str = setting(
        "reset",
        "when model parameters and per-world constants are drawn: once at startup, at every reset of "
        "a world (that world only), or for all worlds every interval_s of sim time",
        choices=SCHEDULES,
    )
    interval_s: float = setting(10.0, "resampling period of the interval schedule, sim seconds", low=0.0)


@dataclass(frozen=True)
class _ParameterFields:
    targets: list[str] = setting(
        ["*"], "names or fnmatch patterns of bodies, geoms, joints, lights, materials or cameras ('*' = all)"
    )
    operation: str = setting(
        "", "scale | add | abs: how a draw combines with the nominal value ('' = default)"
    )
    distribution: str = setting("uniform", "distribution of the draws", choices=DISTRIBUTIONS)
    low: float = setting(0.0, "lower end of the range")
    high: float = setting(0.0, "upper end of the range")
    std: float = setting(0.0, "gaussian standard deviation (0 = a sixth of the range)", low=0.0)
    axes: str = setting(AXES, "components of a vector parameter (subset of xyz)")
    shared: bool = setting(False, "one draw per world for all targets instead of one per target")
    interval_s: list[float] = setting([], "push_velocity: push period, [seconds] or [min, max]", low=0.0)


@dataclass(frozen=True)
class ParameterSpec:
    """One randomized parameter, checked against its catalogue entry."""

    name: str
    targets: tuple[str, ...]
    operation: str
    distribution: str
    low: float
    high: float
    std: float = 0.0
    axes: str = AXES
    shared: bool = False
    interval_s: tuple[float, float] | None = None

    @property
    def kind(self) -> ParameterKind:
        return PARAMETERS[self.name]

    @property
    def key(self) -> str:
        return f"{SECTION}.{self.name}"

    @property
    def sigma(self) -> float:
        """The gaussian's standard deviation."""
        return self.std or (self.high - self.low) / 6.0


@dataclass(frozen=True)
class RandomizationSpec:
    """A whole randomization: top-level settings and the parameters, in catalogue order."""

    enabled: bool = True
    seed: int = 0
    schedule: str = "reset"
    interval_s: float = 10.0
    curriculum: CurriculumSpec = CurriculumSpec()
    parameters: tuple[ParameterSpec, ...] = ()

    def parameter(self, name: str) -> ParameterSpec | None:
        return next((p for p in self.parameters if p.name == name), None)


def load_spec(source: str | Path | Mapping[str, Any] | RandomizationSpec | None) -> RandomizationSpec:
    """A spec from a YAML file path, a mapping, or an already validated spec (None = nothing)."""
    if isinstance(source, RandomizationSpec):
        return source
    if source is None:
        return RandomizationSpec()
    if isinstance(source, Mapping):
        return spec_from_mapping(source)
    return spec_from_mapping(read_yaml_file(source, SECTION) or {})


def spec_from_mapping(data: Mapping[str, Any]) -> RandomizationSpec:
    """Validate a mapping (with or without the top-level ``randomization`` key) into a spec."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{SECTION}: must be a mapping, got {type(data).__name__}")
    if set(data) == {SECTION}:
        data = data[SECTION] or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{SECTION}: must be a mapping, got {type(data).__name__}")
    settings_keys = {"enabled", "seed", "schedule", "interval_s"}
    for name in data:
        if name not in settings_keys and name != "curriculum" and name not in PARAMETERS:
            known = ", ".join([*sorted(settings_keys), "curriculum"])
            raise ConfigError(
                f"{SECTION}.{name}: unknown parameter "
                f"(parameters: {', '.join(PARAMETERS)}; settings: {known})"
            )
    settings = from_mapping(_Settings, {k: v for k, v in data.items() if k in settings_keys}, SECTION)
    if settings.schedule == "interval" and settings.interval_s <= 0:
        raise ConfigError(f"{SECTION}.interval_s: must be > 0 with the interval schedule")
    curriculum_data = data.get("curriculum") or {}
    if not isinstance(curriculum_data, Mapping):
        raise ConfigError(f"{SECTION}.curriculum: must be a mapping, got {type(curriculum_data).__name__}")
    curriculum = from_mapping(CurriculumSpec, curriculum_data, f"{SECTION}.curriculum")
    if curriculum.start_fraction < 1.0 and curriculum.steps == 0:
        raise ConfigError(f"{SECTION}.curriculum.steps: must be > 0 when start_fraction is below 1")
    if curriculum.start_fraction < 1.0 and settings.schedule == "startup":
        raise ConfigError(
            f"{SECTION}.curriculum: the startup schedule draws model parameters once, so their ranges "
            "could never widen: use schedule reset or interval with a curriculum"
        )
    parameters = tuple(
        _parameter(name, data[name]) for name in PARAMETERS if name in data and data[name] is not None
    )
    return RandomizationSpec(
        enabled=settings.enabled,
        seed=settings.seed,
        schedule=settings.schedule,
        interval_s=settings.interval_s,
        curriculum=curriculum,
        parameters=parameters,
    )


def _parameter(name: str, values: Any) -> ParameterSpec:
    """One parameter's entry, checked in order: targets, operation, range, axes, limits, interval."""
    kind = PARAMETERS[name]
    key = f"{SECTION}.{name}"
    values, fields = _parameter_fields(key, values)
    if "targets" in values and kind.target is None:
        raise ConfigError(f"{key}.targets: {name} takes no targets")
    if not fields.targets:
        raise ConfigError(f"{key}.targets: must name at least one {kind.target}")
    operation = _operation(key, kind, fields)
    _check_range(key, fields)
    _check_axes(key, kind, fields, values)
    _check_limits(key, kind, operation, fields.low, fields.high)
    return ParameterSpec(
        name=name,
        targets=tuple(fields.targets),
        operation=operation,
        distribution=fields.distribution,
        low=fields.low,
        high=fields.high,
        std=fields.std,
        axes=fields.axes,
        shared=fields.shared,
        interval_s=_interval(key, kind, fields, values),
    )


def _parameter_fields(key: str, values: Any) -> tuple[dict[str, Any], _ParameterFields]:
    """The entry as a dict (a lone target or interval made a list) and its typed fields."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{key}: must be a mapping (targets, operation, distribution, low, high)")
    values = dict(values)
    for required in ("low", "high"):
        if required not in values:
            raise ConfigError(f"{key}.{required}: required")
    if isinstance(values.get("targets"), str):
        values["targets"] = [values["targets"]]
    if isinstance(values.get("interval_s"), (int, float)) and not isinstance(values["interval_s"], bool):
        values["interval_s"] = [values["interval_s"]]
    return values, from_mapping(_ParameterFields, values, key)


def _operation(key: str, kind: ParameterKind, fields: _ParameterFields) -> str:
    operation = fields.operation or kind.default_operation
    if operation not in OPERATIONS:
        raise ConfigError(f"{key}.operation: must be one of {', '.join(OPERATIONS)}, got '{operation}'")
    if operation not in kind.operations:
        raise ConfigError(
            f"{key}.operation: must be one of {', '.join(kind.operations)} for {kind.name}, got '{operation}'"
        )
    return operation


def _check_range(key: str, fields: _ParameterFields) -> None:
    """A finite [low, high] that the distribution can draw from."""
    low, high = fields.low, fields.high
    for end, value in (("low", low), ("high", high)):
        if not math.isfinite(value):
            raise ConfigError(f"{key}.{end}: must be finite, got {value}")
    if low > high:
        raise ConfigError(f"{key}.low: {low} is above high {high}")
    if fields.distribution == "log_uniform" and low <= 0:
        raise ConfigError(f"{key}.low: log_uniform needs low > 0, got {low}")
    if fields.std and fields.distribution != "gaussian":
        raise ConfigError(f"{key}.std: only the gaussian distribution takes a std")


def _check_axes(key: str, kind: ParameterKind, fields: _ParameterFields, values: dict[str, Any]) -> None:
    if "axes" in values and not kind.axes:
        raise ConfigError(f"{key}.axes: {kind.name} is not a vector parameter")
    axes = fields.axes
    if not axes or any(a not in AXES for a in axes) or len(set(axes)) != len(axes):
        raise ConfigError(f"{key}.axes: must be distinct letters of xyz, got '{axes}'")


def _check_limits(key: str, kind: ParameterKind, operation: str, low: float, high: float) -> None:
    """A range that keeps the kind's quantity whole and within its bounds, where that shows from the
    range alone (the model's nominal values are checked when the spec is bound)."""
    if kind.integer:
        for end, value in (("low", low), ("high", high)):
            if not float(value).is_integer():
                raise ConfigError(f"{key}.{end}: {kind.name} counts whole steps, got {value}")
    if operation == "abs" and kind.minimum is not None:
        bad = low <= kind.minimum if kind.strict else low < kind.minimum
        if bad:
            relation = ">" if kind.strict else ">="
            raise ConfigError(f"{key}.low: {kind.quantity} must stay {relation} {kind.minimum:g}, got {low}")
    if kind.maximum is not None and high > kind.maximum:
        raise ConfigError(f"{key}.high: {kind.quantity} must stay <= {kind.maximum:g}, got {high:g}")
    if operation == "scale" and kind.minimum == 0.0:
        # Nominal values of these quantities are >= 0, so a factor below 0 (or of 0 for the
        # strictly positive ones) makes some world's value negative (or zero).
        if kind.strict and low <= 0:
            raise ConfigError(f"{key}.low: a scale of {low} would make the {kind.quantity} non-positive")
        if not kind.strict and low < 0:
            raise ConfigError(f"{key}.low: a scale of {low} would make the {kind.quantity} negative")


def _interval(
    key: str, kind: ParameterKind, fields: _ParameterFields, values: dict[str, Any]
) -> tuple[float, float] | None:
    """The (min, max) push period of a push parameter; None for the others, which must not give one."""
    if kind.stage != PUSH:
        if "interval_s" in values:
            raise ConfigError(f"{key}.interval_s: only push_velocity has an interval")
        return None
    if not fields.interval_s or len(fields.interval_s) > 2:
        raise ConfigError(f"{key}.interval_s: required for {kind.name}: [seconds] or [min, max]")
    first, last = fields.interval_s[0], fields.interval_s[-1]
    if first <= 0:
        raise ConfigError(f"{key}.interval_s: must be > 0, got {first}")
    if first > last:
        raise ConfigError(f"{key}.interval_s: min {first} is above max {last}")
    return (first, last)
