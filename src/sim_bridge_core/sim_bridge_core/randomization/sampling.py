"""A spec bound to a model: resolved targets, nominal values, vectorized draws, and field writes.

``bind`` turns each ``ParameterSpec`` into a ``BoundParameter`` with K columns (one per
target, or per target and axis / degree of freedom). Draws are (count, K) arrays from a
numpy Generator, or tensors from a torch Generator on the device of resident worlds
(``sim_bridge_core.arrays``); ``effect`` turns them into the values in effect:

* ``scale``: nominal * draw, ``add``: nominal + draw, ``abs``: draw;
* a curriculum fraction f < 1 moves the value towards the nominal: nominal + f * (value - nominal).

Parameters that are not model fields have the operation's identity as their nominal value
(0 for offsets and noise added, 1 for noise that scales), so the same rule gives their
perturbation.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import mujoco
import numpy as np

from sim_bridge_core.arrays import as_float, integers, like, namespace, normal, uniform
from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import RobotModel
from sim_bridge_core.randomization.spec import (
    AXES,
    BODY,
    CAMERA,
    GEOM,
    IMU_QUANTITIES,
    JOINT,
    LIGHT,
    MATERIAL,
    MODEL,
    ROBOT_JOINT,
    SECTION,
    VISUAL,
    ParameterKind,
    ParameterSpec,
    RandomizationSpec,
)

_OBJ = {
    BODY: mujoco.mjtObj.mjOBJ_BODY,
    GEOM: mujoco.mjtObj.mjOBJ_GEOM,
    JOINT: mujoco.mjtObj.mjOBJ_JOINT,
    LIGHT: mujoco.mjtObj.mjOBJ_LIGHT,
    MATERIAL: mujoco.mjtObj.mjOBJ_MATERIAL,
    CAMERA: mujoco.mjtObj.mjOBJ_CAMERA,
}
_RGB = "rgb"
_TEXTURE_RGB = int(mujoco.mjtTextureRole.mjTEXROLE_RGB)
_DOF_LABELS = {
    int(mujoco.mjtJoint.mjJNT_FREE): ("x", "y", "z", "rx", "ry", "rz"),
    int(mujoco.mjtJoint.mjJNT_BALL): ("rx", "ry", "rz"),
}


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _negate(values: np.ndarray) -> np.ndarray:
    return -values


def _colour(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0.0, 1.0)


def _texture_id(values: np.ndarray) -> np.ndarray:
    return np.rint(values).astype(np.int32)


@dataclass(frozen=True, eq=False)
class FieldWrite:
    """Values (n, K) written into model field ``field`` at trailing indexes ``index`` (each (M,))."""

    field: str
    index: tuple[np.ndarray, ...]
    transform: Callable[[np.ndarray], np.ndarray] = _identity

    def apply(self, array: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
        index = tuple(like(columns, rows, index=True) for columns in self.index)
        array[(rows[:, None], *index)] = self.transform(values)


@dataclass(frozen=True, eq=False)
class BoundParameter:
    """One parameter of a spec resolved against a model."""

    spec: ParameterSpec
    names: tuple[str, ...]
    nominal: np.ndarray
    writes: tuple[FieldWrite, ...] = ()
    columns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    dofs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> ParameterKind:
        return self.spec.kind

    @property
    def size(self) -> int:
        return len(self.names)

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """(count, K) raw draws; a shared parameter draws once per world for all its columns."""
        width = 1 if self.spec.shared else self.size
        values = draw(self.spec, rng, (count, width))
        return namespace(values).broadcast_to(values, (count, self.size)) if self.spec.shared else values

    def effect(self, draws: np.ndarray, fraction: float = 1.0) -> np.ndarray:
        """The values in effect (count, K) for raw draws, at curriculum ``fraction``."""
        operation, nominal, xp = self.spec.operation, like(self.nominal, draws), namespace(draws)
        if operation == "scale":
            values = nominal * draws
        elif operation == "add":
            values = nominal + draws
        else:
            values = xp.asarray(draws, copy=True)
        if fraction < 1.0 and not self.kind.choice:
            values = nominal + float(fraction) * (values - nominal)
        if self.kind.integer:
            values = xp.round(values)
        return values


def draw(spec: ParameterSpec, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Float64 draws of ``spec``'s distribution over [low, high] (whole numbers for integer kinds)."""
    low, high = spec.low, spec.high
    if spec.kind.integer and spec.distribution == "uniform":
        return as_float(integers(rng, int(low), int(high) + 1, shape))
    if spec.distribution == "uniform":
        values = uniform(rng, low, high, shape)
    elif spec.distribution == "log_uniform":
        exponents = uniform(rng, math.log(low), math.log(high), shape)
        xp = namespace(exponents)
        values = xp.clip(xp.exp(exponents), low, high)  # exp(log(x)) may miss x by an ulp
    else:
        values = normal(rng, 0.5 * (low + high), spec.sigma, shape)
        values = namespace(values).clip(values, low, high)
    return namespace(values).round(values) if spec.kind.integer else values


def bind(spec: RandomizationSpec, robot: RobotModel) -> tuple[BoundParameter, ...]:
    """Every parameter of ``spec`` resolved against ``robot``; a mismatch raises ConfigError."""
    names = {p.name for p in spec.parameters}
    if "actuator_strength" in names and names & {"actuator_kp", "actuator_kd"}:
        raise ConfigError(
            f"{SECTION}.actuator_strength: it sets the kp and kd that actuator_kp/actuator_kd set; "
            "give one or the other"
        )
    return tuple(_bind(p, robot) for p in spec.parameters)


def _bind(spec: ParameterSpec, robot: RobotModel) -> BoundParameter:
    """Its kind's binder makes the columns and field writes; the checks every kind shares follow."""
    axes = np.array([AXES.index(a) for a in spec.axes], dtype=np.int64)
    ids = _resolve_targets(spec, robot)
    bound = _BINDERS[spec.name](spec, robot, ids, axes)
    for column in bound.names:
        if "," in column:
            raise ConfigError(
                f"{spec.key}.targets: '{column}' has a comma, which the applied-values label cannot carry"
            )
    if spec.kind.stage in (MODEL, VISUAL):
        _check_bounds(spec, bound)
    return bound


# Each binder takes (spec, robot, resolved target ids, axis indexes) and returns the bound parameter.
_Binder = Callable[[ParameterSpec, RobotModel, np.ndarray, np.ndarray], BoundParameter]


def _bind_geom_friction(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    m = robot.model
    bound = _per_object(spec, m, GEOM, ids, m.geom_friction[ids, 0])
    return _with(bound, FieldWrite("geom_friction", (ids, np.zeros_like(ids))))


def _bind_body_mass(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    m = robot.model
    mass = m.body_mass[ids]
    massless = [i for i, value in zip(ids, mass, strict=True) if value <= 0]
    if massless:
        raise ConfigError(
            f"{spec.key}.targets: body '{_name(m, BODY, massless[0])}' has no mass to randomize"
        )
    inertia = m.body_inertia[ids].ravel()

    def scaled_inertia(values: np.ndarray) -> np.ndarray:
        return namespace(values).repeat(values / like(mass, values), 3, axis=1) * like(inertia, values)

    return _with(
        _per_object(spec, m, BODY, ids, mass),
        FieldWrite("body_mass", (ids,)),
        # Scaling a body's mass scales its inertia by the same factor (same shape, density).
        FieldWrite("body_inertia", (np.repeat(ids, 3), np.tile(np.arange(3), ids.size)), scaled_inertia),
    )


def _bind_body_com(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    m = robot.model
    bodies, components = np.repeat(ids, axes.size), np.tile(axes, ids.size)
    names = tuple(
        f"{spec.name}_{AXES[a]}/{_name(m, BODY, b)}" for b, a in zip(bodies, components, strict=True)
    )
    bound = BoundParameter(spec, names, m.body_ipos[bodies, components].copy())
    return _with(bound, FieldWrite("body_ipos", (bodies, components)))


def _bind_dof_field(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    """A per-degree-of-freedom model field that the parameter is named after (dof_damping, ...)."""
    m, name = robot.model, spec.name
    dofs, names = _dofs(m, name, ids)
    bound = BoundParameter(spec, names, getattr(m, name)[dofs].copy())
    return _with(bound, FieldWrite(name, (dofs,)))


def _bind_actuator_kp(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    m = robot.model
    actuators = robot.actuator_ids[ids]
    # A position servo's force is kp * (target - q) - kd * qdot: gain kp, bias -kp and -kd.
    return _with(
        _per_robot_joint(spec, robot, ids, m.actuator_gainprm[actuators, 0].copy()),
        FieldWrite("actuator_gainprm", (actuators, np.zeros_like(actuators))),
        FieldWrite("actuator_biasprm", (actuators, np.ones_like(actuators)), _negate),
    )


def _bind_actuator_kd(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    m = robot.model
    actuators = robot.actuator_ids[ids]
    return _with(
        _per_robot_joint(spec, robot, ids, -m.actuator_biasprm[actuators, 2]),
        FieldWrite("actuator_biasprm", (actuators, np.full_like(actuators, 2)), _negate),
    )


def _bind_actuator_strength(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    """One factor (nominal 1) on each servo's kp, kd and force range together."""
    m = robot.model
    actuators = robot.actuator_ids[ids]
    kp, kd = m.actuator_gainprm[actuators, 0].copy(), -m.actuator_biasprm[actuators, 2]
    low, high = m.actuator_forcerange[actuators].T.copy()
    zeros = np.zeros_like(actuators)

    def times(nominal: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda factor: factor * like(nominal, factor)

    return _with(
        _per_robot_joint(spec, robot, ids, np.ones(ids.size)),
        FieldWrite("actuator_gainprm", (actuators, zeros), times(kp)),
        FieldWrite("actuator_biasprm", (actuators, zeros + 1), times(-kp)),
        FieldWrite("actuator_biasprm", (actuators, zeros + 2), times(-kd)),
        FieldWrite("actuator_forcerange", (actuators, zeros), times(low)),
        FieldWrite("actuator_forcerange", (actuators, zeros + 1), times(high)),
    )


def _bind_gravity(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    names = tuple(f"{spec.name}_{AXES[a]}" for a in axes)
    bound = BoundParameter(spec, names, robot.model.opt.gravity[axes].copy())
    return _with(bound, FieldWrite("opt.gravity", (axes,)))


def _bind_action_delay(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    return BoundParameter(spec, (spec.name,), np.zeros(1))


def _bind_joint_perturbation(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    """Noise, bias or reset offset per robot joint, applied outside the model."""
    return _per_robot_joint(spec, robot, ids, np.full(ids.size, _neutral(spec)))


def _bind_imu(spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray) -> BoundParameter:
    if robot.imu is None:
        raise ConfigError(
            f"{spec.key}: {robot.name} has no IMU (a floating base, an IMU sensor or the robot "
            "config's imu_site gives it one)"
        )
    names = tuple(f"{spec.name}_{AXES[a]}" for a in axes)
    return BoundParameter(spec, names, np.full(axes.size, _neutral(spec)), columns=axes)


def _bind_push_velocity(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    dofs, names = _dofs(robot.model, spec.name, ids)
    return BoundParameter(spec, names, np.zeros(dofs.size), dofs=dofs)


def _bind_colour(
    field: str, spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    """A colour ``field`` of the model, one column per r, g, b channel, clipped to [0, 1] when written."""
    m = robot.model
    objects, channels = np.repeat(ids, 3), np.tile(np.arange(3), ids.size)
    names = tuple(
        f"{spec.name}_{_RGB[c]}/{_name(m, spec.kind.target, i)}"
        for i, c in zip(objects, channels, strict=True)
    )
    nominal = getattr(m, field)[objects, channels].astype(np.float64)
    return _with(BoundParameter(spec, names, nominal), FieldWrite(field, (objects, channels), _colour))


def _bind_material_texture(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    m = robot.model
    if m.ntex == 0:
        ids = ids[:0]  # a model without textures has nothing to choose among
    for texture in range(int(spec.low), int(spec.high) + 1) if ids.size else ():
        if texture >= m.ntex or m.tex_type[texture] != mujoco.mjtTexture.mjTEXTURE_2D:
            raise ConfigError(
                f"{spec.key}.high: texture id {texture} is not a 2D texture of the model ({m.ntex} textures)"
            )
    names = tuple(f"{spec.name}/{_name(m, MATERIAL, i)}" for i in ids)
    roles = np.full_like(ids, _TEXTURE_RGB)
    nominal = m.mat_texid[ids, roles].astype(np.float64)
    return _with(BoundParameter(spec, names, nominal), FieldWrite("mat_texid", (ids, roles), _texture_id))


def _bind_camera_fovy(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    m = robot.model
    names = tuple(f"{spec.name}/{_name(m, CAMERA, i)}" for i in ids)
    bound = BoundParameter(spec, names, m.cam_fovy[ids].astype(np.float64))
    return _with(bound, FieldWrite("cam_fovy", (ids,)))


def _bind_vector(
    field: str, spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    """A vector ``field`` of the model (light direction, camera position), one column per axis."""
    objects, components, names = _vector_columns(spec, robot.model, ids, axes)
    nominal = getattr(robot.model, field)[objects, components].astype(np.float64)
    return _with(BoundParameter(spec, names, nominal), FieldWrite(field, (objects, components)))


def _bind_camera_rotation(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, axes: np.ndarray
) -> BoundParameter:
    """Angles (nominal 0) about the body's axes, turning each camera's nominal orientation."""
    _, _, names = _vector_columns(spec, robot.model, ids, axes)
    quats = robot.model.cam_quat[ids].copy()

    def rotate(values: np.ndarray) -> np.ndarray:
        rotvec = np.zeros((values.shape[0], ids.size, 3))
        rotvec[:, :, axes] = values.reshape(values.shape[0], ids.size, axes.size)
        turned = np.empty((values.shape[0], ids.size, 4))
        for world, camera in np.ndindex(values.shape[0], ids.size):
            turn = np.empty(4)
            angle = float(np.linalg.norm(rotvec[world, camera]))
            axis = rotvec[world, camera] / angle if angle > 0 else np.array([1.0, 0.0, 0.0])
            mujoco.mju_axisAngle2Quat(turn, axis, angle)
            mujoco.mju_mulQuat(turned[world, camera], turn, quats[camera])
        return turned.reshape(values.shape[0], ids.size * 4)

    objects, parts = np.repeat(ids, 4), np.tile(np.arange(4), ids.size)
    return _with(
        BoundParameter(spec, names, np.zeros(len(names))), FieldWrite("cam_quat", (objects, parts), rotate)
    )


_BINDERS: dict[str, _Binder] = {
    "geom_friction": _bind_geom_friction,
    "body_mass": _bind_body_mass,
    "body_com": _bind_body_com,
    "dof_damping": _bind_dof_field,
    "dof_armature": _bind_dof_field,
    "dof_frictionloss": _bind_dof_field,
    "actuator_kp": _bind_actuator_kp,
    "actuator_kd": _bind_actuator_kd,
    "actuator_strength": _bind_actuator_strength,
    "gravity": _bind_gravity,
    "action_delay_steps": _bind_action_delay,
    "action_noise": _bind_joint_perturbation,
    "joint_position_noise": _bind_joint_perturbation,
    "joint_velocity_noise": _bind_joint_perturbation,
    "joint_position_bias": _bind_joint_perturbation,
    **{f"imu_{quantity}_{what}": _bind_imu for what in ("noise", "bias") for quantity, _ in IMU_QUANTITIES},
    "initial_joint_offset": _bind_joint_perturbation,
    "push_velocity": _bind_push_velocity,
    "light_direction": partial(_bind_vector, "light_dir"),
    "light_diffuse": partial(_bind_colour, "light_diffuse"),
    "geom_rgba": partial(_bind_colour, "geom_rgba"),
    "material_rgba": partial(_bind_colour, "mat_rgba"),
    "material_texture": _bind_material_texture,
    "camera_position": partial(_bind_vector, "cam_pos"),
    "camera_rotation": _bind_camera_rotation,
    "camera_fovy": _bind_camera_fovy,
}


def _neutral(spec: ParameterSpec) -> float:
    """The nominal value of a parameter that is not a model field: its operation's identity."""
    return 1.0 if spec.operation == "scale" else 0.0


def _per_robot_joint(
    spec: ParameterSpec, robot: RobotModel, ids: np.ndarray, nominal: np.ndarray
) -> BoundParameter:
    names = tuple(f"{spec.name}/{robot.joint_names[j]}" for j in ids)
    return BoundParameter(spec, names, nominal, columns=ids)


def _vector_columns(
    spec: ParameterSpec, m: mujoco.MjModel, ids: np.ndarray, axes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Object and axis index of each column of a per-axis visual parameter, and the column names."""
    objects, components = np.repeat(ids, axes.size), np.tile(axes, ids.size)
    target_names = [_name(m, spec.kind.target, i) for i in objects]
    names = tuple(f"{spec.name}_{AXES[a]}/{n}" for n, a in zip(target_names, components, strict=True))
    return objects, components, names


def _with(bound: BoundParameter, *writes: FieldWrite) -> BoundParameter:
    return BoundParameter(bound.spec, bound.names, bound.nominal, writes, bound.columns, bound.dofs)


def _per_object(
    spec: ParameterSpec, m: mujoco.MjModel, target: str, ids: np.ndarray, nominal
) -> BoundParameter:
    names = tuple(f"{spec.name}/{_name(m, target, i)}" for i in ids)
    return BoundParameter(spec, names, np.array(nominal, dtype=np.float64))


def _dofs(m: mujoco.MjModel, name: str, joints: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """The degrees of freedom of ``joints`` and a column name for each."""
    dofs, names = [], []
    for joint in joints:
        labels = _DOF_LABELS.get(int(m.jnt_type[joint]), ("",))
        joint_name = _name(m, JOINT, joint)
        for k, label in enumerate(labels):
            dofs.append(int(m.jnt_dofadr[joint]) + k)
            names.append(f"{name}_{label}/{joint_name}" if label else f"{name}/{joint_name}")
    return np.array(dofs, dtype=np.int64), tuple(names)


def _check_bounds(spec: ParameterSpec, bound: BoundParameter) -> None:
    """A range that can take some world's value out of the quantity's bounds is refused."""
    kind = spec.kind
    if kind.minimum is None:
        return
    lowest = np.minimum(
        bound.effect(np.full((1, bound.size), spec.low)), bound.effect(np.full((1, bound.size), spec.high))
    )[0]
    bad = lowest <= kind.minimum if kind.strict else lowest < kind.minimum
    if bad.any():
        column = int(np.flatnonzero(bad)[0])
        relation = ">" if kind.strict else ">="
        raise ConfigError(
            f"{spec.key}.low: {spec.operation} {spec.low:g} would make {bound.names[column]} "
            f"{lowest[column]:g}; the {kind.quantity} must stay {relation} {kind.minimum:g}"
        )


def _candidates(
    spec: ParameterSpec, robot: RobotModel
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(everything a target name may name, what a pattern may match) as (name, id) pairs."""
    m = robot.model
    target = spec.kind.target
    if target == ROBOT_JOINT:
        every = [(joint, column) for column, joint in enumerate(robot.joint_names)]
        return every, every
    count = {BODY: m.nbody, GEOM: m.ngeom, JOINT: m.njnt, LIGHT: m.nlight, MATERIAL: m.nmat, CAMERA: m.ncam}[
        target
    ]
    every = [(_name(m, target, i), i) for i in range(count)]
    matchable = every
    if target == BODY:
        # Patterns skip the world body, and bodies without mass for body_mass.
        matchable = [(n, i) for n, i in every if i > 0 and (spec.name != "body_mass" or m.body_mass[i] > 0)]
    return every, matchable


def _resolve_targets(spec: ParameterSpec, robot: RobotModel) -> np.ndarray:
    if spec.kind.target is None:
        return np.zeros(0, dtype=np.int64)
    every, matchable = _candidates(spec, robot)
    by_name = dict(every)
    ids: list[int] = []
    for target in spec.targets:
        if any(c in target for c in "*?["):
            matches = [i for n, i in matchable if fnmatch.fnmatchcase(n, target)]
            # A visual pattern may match nothing: the default preset's "*" on a model without lights.
            if not matches and spec.kind.stage != VISUAL:
                raise ConfigError(
                    f"{spec.key}.targets: '{target}' matches no {spec.kind.target} of {robot.name}"
                )
        elif target in by_name:
            matches = [by_name[target]]
        else:
            what = "position-controlled joint" if spec.kind.target == ROBOT_JOINT else spec.kind.target
            known = ", ".join(n for n, _ in matchable) or "none"
            raise ConfigError(
                f"{spec.key}.targets: {robot.name} has no {what} named '{target}' (known: {known})"
            )
        ids.extend(i for i in matches if i not in ids)
    return np.array(ids, dtype=np.int64)


def _name(m: mujoco.MjModel, target: str, index: int) -> str:
    """An object's name; an unnamed free joint goes by its body's (a floating base's root body)."""
    name = mujoco.mj_id2name(m, _OBJ[target], int(index))
    if not name and target == JOINT and m.jnt_type[index] == mujoco.mjtJoint.mjJNT_FREE:
        name = mujoco.mj_id2name(m, _OBJ[BODY], int(m.jnt_bodyid[index]))
    return name or f"{target}{int(index)}"
