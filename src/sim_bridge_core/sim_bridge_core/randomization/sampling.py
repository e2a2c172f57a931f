"""A spec bound to a model: resolved targets, nominal values, vectorized draws, and field writes.

``bind`` turns each ``ParameterSpec`` into a ``BoundParameter`` with K columns (one per
target, or per target and axis / degree of freedom). Draws are (count, K) arrays from a
numpy Generator; ``effect`` turns them into the values in effect:

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

import mujoco
import numpy as np

from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import RobotModel
from sim_bridge_core.randomization.spec import (
    AXES,
    BODY,
    CAMERA,
    GEOM,
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
        array[(rows[:, None], *self.index)] = self.transform(values)


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
        return np.broadcast_to(values, (count, self.size)) if self.spec.shared else values

    def effect(self, draws: np.ndarray, fraction: float = 1.0) -> np.ndarray:
        """The values in effect (count, K) for raw draws, at curriculum ``fraction``."""
        operation = self.spec.operation
        if operation == "scale":
            values = self.nominal * draws
        elif operation == "add":
            values = self.nominal + draws
        else:
            values = np.array(draws, dtype=np.float64)
        if fraction < 1.0 and not self.kind.choice:
            values = self.nominal + fraction * (values - self.nominal)
        if self.kind.integer:
            values = np.rint(values)
        return values


def draw(spec: ParameterSpec, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Float64 draws of ``spec``'s distribution over [low, high] (whole numbers for integer kinds)."""
    low, high = spec.low, spec.high
    if spec.kind.integer and spec.distribution == "uniform":
        return rng.integers(int(low), int(high) + 1, shape).astype(np.float64)
    if spec.distribution == "uniform":
        values = rng.uniform(low, high, shape)
    elif spec.distribution == "log_uniform":
        values = np.exp(rng.uniform(math.log(low), math.log(high), shape))
        np.clip(values, low, high, out=values)  # exp(log(x)) may miss x by an ulp
    else:
        values = np.clip(rng.normal(0.5 * (low + high), spec.sigma, shape), low, high)
    return np.rint(values) if spec.kind.integer else values


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
    m = robot.model
    kind = spec.kind
    name = spec.name
    axes = np.array([AXES.index(a) for a in spec.axes], dtype=np.int64)
    ids = _resolve_targets(spec, robot)

    if name == "geom_friction":
        bound = _per_object(spec, m, GEOM, ids, m.geom_friction[ids, 0])
        bound = _with(bound, FieldWrite("geom_friction", (ids, np.zeros_like(ids))))
    elif name == "body_mass":
        mass = m.body_mass[ids]
        massless = [i for i, value in zip(ids, mass, strict=True) if value <= 0]
        if massless:
            raise ConfigError(
                f"{spec.key}.targets: body '{_name(m, BODY, massless[0])}' has no mass to randomize"
            )
        inertia = m.body_inertia[ids]
        bound = _per_object(spec, m, BODY, ids, mass)
        bound = _with(
            bound,
            FieldWrite("body_mass", (ids,)),
            # Scaling a body's mass scales its inertia by the same factor (same shape, density).
            FieldWrite(
                "body_inertia",
                (np.repeat(ids, 3), np.tile(np.arange(3), ids.size)),
                lambda values: np.repeat(values / mass, 3, axis=1) * inertia.ravel(),
            ),
        )
    elif name == "body_com":
        bodies, components = np.repeat(ids, axes.size), np.tile(axes, ids.size)
        names = tuple(
            f"{name}_{AXES[a]}/{_name(m, BODY, b)}" for b, a in zip(bodies, components, strict=True)
        )
        bound = BoundParameter(spec, names, m.body_ipos[bodies, components].copy())
        bound = _with(bound, FieldWrite("body_ipos", (bodies, components)))
    elif name in ("dof_damping", "dof_armature", "dof_frictionloss"):
        dofs, names = _dofs(m, name, ids)
        bound = BoundParameter(spec, names, getattr(m, name)[dofs].copy())
        bound = _with(bound, FieldWrite(name, (dofs,)))
    elif name in ("actuator_kp", "actuator_kd"):
        actuators = robot.actuator_ids[ids]
        if name == "actuator_kp":
            nominal = m.actuator_gainprm[actuators, 0]
            # A position servo's force is kp * (target - q) - kd * qdot: gain kp, bias -kp and -kd.
            writes = (
                FieldWrite("actuator_gainprm", (actuators, np.zeros_like(actuators))),
                FieldWrite("actuator_biasprm", (actuators, np.ones_like(actuators)), _negate),
            )
        else:
            nominal = -m.actuator_biasprm[actuators, 2]
            writes = (FieldWrite("actuator_biasprm", (actuators, np.full_like(actuators, 2)), _negate),)
        names = tuple(f"{name}/{robot.joint_names[j]}" for j in ids)
        bound = _with(BoundParameter(spec, names, nominal.copy(), columns=ids), *writes)
    elif name == "actuator_strength":
        actuators = robot.actuator_ids[ids]
        kp, kd = m.actuator_gainprm[actuators, 0].copy(), -m.actuator_biasprm[actuators, 2]
        low, high = m.actuator_forcerange[actuators].T.copy()
        zeros = np.zeros_like(actuators)
        writes = (
            FieldWrite("actuator_gainprm", (actuators, zeros), lambda factor: factor * kp),
            FieldWrite("actuator_biasprm", (actuators, zeros + 1), lambda factor: -factor * kp),
            FieldWrite("actuator_biasprm", (actuators, zeros + 2), lambda factor: -factor * kd),
            FieldWrite("actuator_forcerange", (actuators, zeros), lambda factor: factor * low),
            FieldWrite("actuator_forcerange", (actuators, zeros + 1), lambda factor: factor * high),
        )
        names = tuple(f"{name}/{robot.joint_names[j]}" for j in ids)
        bound = _with(BoundParameter(spec, names, np.ones(ids.size), columns=ids), *writes)
    elif name == "gravity":
        names = tuple(f"{name}_{AXES[a]}" for a in axes)
        bound = _with(
            BoundParameter(spec, names, m.opt.gravity[axes].copy()), FieldWrite("opt.gravity", (axes,))
        )
    elif kind.stage == VISUAL:
        bound = _bind_visual(spec, m, ids, axes)
    elif name == "action_delay_steps":
        bound = BoundParameter(spec, (name,), np.zeros(1))
    elif name.startswith("imu_"):
        if robot.imu is None:
            raise ConfigError(
                f"{spec.key}: {robot.name} has no IMU (a floating base, an IMU sensor or the robot "
                "config's imu_site gives it one)"
            )
        identity = 1.0 if spec.operation == "scale" else 0.0
        names = tuple(f"{name}_{AXES[a]}" for a in axes)
        bound = BoundParameter(spec, names, np.full(axes.size, identity), columns=axes)
    elif name == "push_velocity":
        dofs, names = _dofs(m, name, ids)
        bound = BoundParameter(spec, names, np.zeros(dofs.size), dofs=dofs)
    else:  # per robot joint: noise, bias, initial offsets
        identity = 1.0 if spec.operation == "scale" else 0.0
        names = tuple(f"{name}/{robot.joint_names[j]}" for j in ids)
        bound = BoundParameter(spec, names, np.full(ids.size, identity), columns=ids)

    for column in bound.names:
        if "," in column:
            raise ConfigError(
                f"{spec.key}.targets: '{column}' has a comma, which the applied-values label cannot carry"
            )
    if kind.stage in (MODEL, VISUAL):
        _check_bounds(spec, bound)
    return bound


def _bind_visual(spec: ParameterSpec, m: mujoco.MjModel, ids: np.ndarray, axes: np.ndarray) -> BoundParameter:
    """A render-only parameter: colours per r, g, b channel, vectors per axis, one column otherwise."""
    name, target = spec.name, spec.kind.target
    if name in ("light_diffuse", "geom_rgba", "material_rgba"):
        field = {"light_diffuse": "light_diffuse", "geom_rgba": "geom_rgba", "material_rgba": "mat_rgba"}[
            name
        ]
        objects, channels = np.repeat(ids, 3), np.tile(np.arange(3), ids.size)
        names = tuple(
            f"{name}_{_RGB[c]}/{_name(m, target, i)}" for i, c in zip(objects, channels, strict=True)
        )
        nominal = getattr(m, field)[objects, channels].astype(np.float64)
        return _with(BoundParameter(spec, names, nominal), FieldWrite(field, (objects, channels), _colour))
    if name == "material_texture":
        if m.ntex == 0:
            ids = ids[:0]  # a model without textures has nothing to choose among
        for texture in range(int(spec.low), int(spec.high) + 1) if ids.size else ():
            if texture >= m.ntex or m.tex_type[texture] != mujoco.mjtTexture.mjTEXTURE_2D:
                raise ConfigError(
                    f"{spec.key}.high: texture id {texture} is not a 2D texture of the model "
                    f"({m.ntex} textures)"
                )
        names = tuple(f"{name}/{_name(m, MATERIAL, i)}" for i in ids)
        roles = np.full_like(ids, _TEXTURE_RGB)
        nominal = m.mat_texid[ids, roles].astype(np.float64)
        return _with(BoundParameter(spec, names, nominal), FieldWrite("mat_texid", (ids, roles), _texture_id))
    if name == "camera_fovy":
        names = tuple(f"{name}/{_name(m, CAMERA, i)}" for i in ids)
        return _with(
            BoundParameter(spec, names, m.cam_fovy[ids].astype(np.float64)), FieldWrite("cam_fovy", (ids,))
        )
    objects, components = np.repeat(ids, axes.size), np.tile(axes, ids.size)
    target_names = [_name(m, target, i) for i in objects]
    names = tuple(f"{name}_{AXES[a]}/{n}" for n, a in zip(target_names, components, strict=True))
    if name == "light_direction":
        nominal = m.light_dir[objects, components].astype(np.float64)
        return _with(BoundParameter(spec, names, nominal), FieldWrite("light_dir", (objects, components)))
    if name == "camera_position":
        nominal = m.cam_pos[objects, components].astype(np.float64)
        return _with(BoundParameter(spec, names, nominal), FieldWrite("cam_pos", (objects, components)))
    # camera_rotation: angles (nominal 0) about the body's axes, turning the nominal orientation.
    quats = m.cam_quat[ids].copy()

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
