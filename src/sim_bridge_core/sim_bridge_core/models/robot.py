"""Load an MJCF or URDF and describe it as a position-controlled robot.

Every controllable joint ends up driven by a position servo, so the simulator, the
trajectory follower and the policies all speak joint position targets:

* a joint already driven by a MuJoCo position servo keeps it;
* a joint driven by a torque (motor) actuator gets a PD controller built into the
  actuator itself (affine bias, torque limited to the motor's range), so it runs at
  physics rate inside ``mj_step`` with no Python per substep;
* a URDF (which has no actuators) gets a PD actuator on every hinge/slide joint,
  limited by the URDF ``effort`` limit.

Joint velocity limits come from the URDF's ``<limit velocity>``, or from MJCF custom numerics
``velocity_limit/<joint>`` (MJCF has no such attribute); joints without one are unlimited (inf)
here, and the deploy safety filter then needs one from the robot config.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import mujoco
import numpy as np

from sim_bridge_core.models.parameters import ModelParameters, apply_model_parameters

_ASSETS = resources.files("sim_bridge_core.models") / "assets"
_CONTROLLABLE_JOINTS = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


class ModelError(ValueError):
    """A model that cannot be loaded or cannot be position-controlled."""


@dataclass(frozen=True)
class PdGains:
    """Gains of the PD controller given to torque-driven joints (N·m/rad, N·m·s/rad)."""

    kp: float = 100.0
    kd: float = 10.0


@dataclass(frozen=True)
class RobotModel:
    """A compiled model and the index maps from its controllable joints into MuJoCo arrays."""

    name: str
    path: str
    model: mujoco.MjModel
    joint_names: tuple[str, ...]
    qpos_adr: np.ndarray
    dof_adr: np.ndarray
    actuator_ids: np.ndarray
    ctrl_per_rad: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    velocity_limits: np.ndarray
    home: np.ndarray
    pd_joints: tuple[str, ...]
    parameters: ModelParameters = ModelParameters()  # overrides applied (and the command delay)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def physics_dt(self) -> float:
        return float(self.model.opt.timestep)

    def clamp(self, positions: np.ndarray) -> np.ndarray:
        """Joint positions clipped to the joint limits (unlimited joints pass through)."""
        return np.clip(positions, self.lower, self.upper)

    def site_id(self, name: str) -> int:
        site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, name)
        if site < 0:
            raise ModelError(f"model '{self.name}' has no site named '{name}'")
        return site


def builtin_models() -> list[str]:
    return sorted(p.name[: -len(".xml")] for p in _ASSETS.iterdir() if p.name.endswith(".xml"))


def resolve_model_path(model: str) -> Path:
    """A built-in model name or a path to an MJCF/URDF file, as an existing absolute path."""
    if model in builtin_models():
        return Path(str(_ASSETS / f"{model}.xml"))
    path = Path(os.path.expanduser(model))
    if not path.suffix:
        raise ModelError(
            f"unknown model '{model}': not a built-in ({', '.join(builtin_models())}) nor a file path"
        )
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix.lower() not in (".xml", ".mjcf", ".urdf"):
        raise ModelError(f"model file {path} is not MJCF (.xml/.mjcf) or URDF (.urdf)")
    return path.resolve()


def load_robot(
    model: str, gains: PdGains | None = None, parameters: ModelParameters | None = None
) -> RobotModel:
    """Load a built-in name or MJCF/URDF path and make every controllable joint take position targets.

    ``parameters`` override the model's physical parameters (identified ones, say); an unknown
    name raises ConfigError naming its ``model_parameters`` key.
    """
    parameters = parameters or ModelParameters()
    path, _, compiled, pd_joints = _position_controlled(model, gains or PdGains())
    apply_model_parameters(compiled, parameters, _joint_actuators(compiled))
    robot = _describe(path, compiled, pd_joints, _urdf_velocity_limits(path))
    return dataclasses.replace(robot, parameters=parameters)


def robot_spec(model: str, gains: PdGains | None = None) -> mujoco.MjSpec:
    """The MjSpec that ``load_robot`` compiles (PD servos in place, no overrides), for tools that
    need the robot as a spec (system identification)."""
    return _position_controlled(model, gains or PdGains())[1]


def _position_controlled(
    model: str, gains: PdGains
) -> tuple[Path, mujoco.MjSpec, mujoco.MjModel, tuple[str, ...]]:
    """Path, spec and compiled model of ``model`` with every controllable joint position-servoed."""
    path = resolve_model_path(model)
    try:
        spec = mujoco.MjSpec.from_file(str(path))
        compiled = spec.compile()
    except Exception as exc:  # mujoco raises ValueError/Exception subclasses with parser text
        raise ModelError(f"cannot load model {path}: {str(exc).strip().splitlines()[0]}") from exc

    if compiled.nu == 0:
        _add_pd_actuators(spec, compiled)
        compiled = spec.compile()
    pd_joints = _wrap_motors_in_pd(spec, compiled, gains)
    if pd_joints:
        compiled = spec.compile()
    return path, spec, compiled, pd_joints


def _add_pd_actuators(spec: mujoco.MjSpec, compiled: mujoco.MjModel) -> None:
    """A model without actuators (URDF) gets a torque actuator per joint, wrapped in PD below."""
    for joint in range(compiled.njnt):
        if compiled.jnt_type[joint] not in _CONTROLLABLE_JOINTS:
            continue
        name = mujoco.mj_id2name(compiled, mujoco.mjtObj.mjOBJ_JOINT, joint)
        actuator = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.set_to_motor()
        if compiled.jnt_actfrclimited[joint]:
            actuator.ctrlrange = compiled.jnt_actfrcrange[joint]
            actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE


def _is_motor(m: mujoco.MjModel, act: int) -> bool:
    return (
        m.actuator_gaintype[act] == mujoco.mjtGain.mjGAIN_FIXED
        and m.actuator_biastype[act] == mujoco.mjtBias.mjBIAS_NONE
        and m.actuator_dyntype[act] == mujoco.mjtDyn.mjDYN_NONE
    )


def _is_position_servo(m: mujoco.MjModel, act: int) -> bool:
    kp = m.actuator_gainprm[act, 0]
    return (
        m.actuator_gaintype[act] == mujoco.mjtGain.mjGAIN_FIXED
        and m.actuator_biastype[act] == mujoco.mjtBias.mjBIAS_AFFINE
        and kp > 0
        and np.isclose(m.actuator_biasprm[act, 1], -kp)
        and m.actuator_biasprm[act, 0] == 0
    )


def _joint_actuators(m: mujoco.MjModel) -> dict[int, int]:
    """Controllable joint id -> the one actuator driving it."""
    driven: dict[int, int] = {}
    for act in range(m.nu):
        if m.actuator_trntype[act] != mujoco.mjtTrn.mjTRN_JOINT:
            continue
        joint = int(m.actuator_trnid[act, 0])
        if m.jnt_type[joint] not in _CONTROLLABLE_JOINTS:
            continue
        if joint in driven:
            raise ModelError(
                f"joint '{_name(m, mujoco.mjtObj.mjOBJ_JOINT, joint)}' is driven by more than one actuator"
            )
        if not (_is_motor(m, act) or _is_position_servo(m, act)):
            raise ModelError(
                f"actuator '{_name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, act)}' is neither a position servo "
                "nor a torque motor; only those can take position targets"
            )
        driven[joint] = act
    if not driven:
        raise ModelError("model has no hinge or slide joint driven by an actuator")
    return dict(sorted(driven.items()))


def _wrap_motors_in_pd(spec: mujoco.MjSpec, m: mujoco.MjModel, gains: PdGains) -> tuple[str, ...]:
    """Turn each torque motor into a torque-limited PD servo on its joint; return the joints."""
    wrapped = []
    for joint, act in _joint_actuators(m).items():
        if not _is_motor(m, act):
            continue
        gear = abs(m.actuator_gear[act, 0])
        torque_limit = np.abs(m.actuator_ctrlrange[act]).max() * gear if m.actuator_ctrllimited[act] else None
        actuator = spec.actuators[act]
        actuator.set_to_position(kp=gains.kp, kv=gains.kd)
        actuator.gear = [1.0, 0, 0, 0, 0, 0]
        if m.jnt_limited[joint]:
            actuator.ctrlrange = m.jnt_range[joint]
            actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        else:
            actuator.ctrlrange = [0.0, 0.0]
            actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        if torque_limit is not None:
            actuator.forcerange = [-torque_limit, torque_limit]
            actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        wrapped.append(_name(m, mujoco.mjtObj.mjOBJ_JOINT, joint))
    return tuple(wrapped)


def _urdf_velocity_limits(path: Path) -> dict[str, float]:
    """Joint name -> ``<limit velocity>`` of a URDF (MuJoCo's URDF import drops them); {} for MJCF."""
    if path.suffix.lower() != ".urdf":
        return {}
    import xml.etree.ElementTree as ElementTree

    limits = {}
    for joint in ElementTree.parse(path).getroot().iter("joint"):
        limit = joint.find("limit")
        if limit is not None and limit.get("velocity") is not None and float(limit.get("velocity")) > 0:
            limits[joint.get("name", "")] = float(limit.get("velocity"))
    return limits


def _velocity_limit(m: mujoco.MjModel, joint: str, urdf: dict[str, float]) -> float:
    if joint in urdf:
        return urdf[joint]
    numeric = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_NUMERIC, f"velocity_limit/{joint}")
    if numeric >= 0 and m.numeric_size[numeric] >= 1:
        return float(m.numeric_data[m.numeric_adr[numeric]])
    return np.inf


def _describe(
    path: Path, m: mujoco.MjModel, pd_joints: tuple[str, ...], urdf_velocity_limits: dict[str, float]
) -> RobotModel:
    driven = _joint_actuators(m)
    joints = np.fromiter(driven.keys(), dtype=np.int64)
    actuators = np.fromiter(driven.values(), dtype=np.int64)
    limited = m.jnt_limited[joints].astype(bool)
    lower = np.where(limited, m.jnt_range[joints, 0], -np.inf)
    upper = np.where(limited, m.jnt_range[joints, 1], np.inf)
    qpos_adr = m.jnt_qposadr[joints].astype(np.int64)
    home_key = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_KEY, "home")
    qpos0 = m.key_qpos[home_key] if home_key >= 0 else m.qpos0
    home = np.clip(qpos0[qpos_adr], lower, upper)
    home.setflags(write=False)
    joint_names = tuple(_name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints)
    velocity_limits = np.array([_velocity_limit(m, name, urdf_velocity_limits) for name in joint_names])
    velocity_limits.setflags(write=False)
    return RobotModel(
        name=m.names[: m.names.index(b"\0")].decode() or path.stem,
        path=str(path),
        model=m,
        joint_names=joint_names,
        qpos_adr=qpos_adr,
        dof_adr=m.jnt_dofadr[joints].astype(np.int64),
        actuator_ids=actuators,
        ctrl_per_rad=m.actuator_gear[actuators, 0].copy(),
        lower=lower,
        upper=upper,
        velocity_limits=velocity_limits,
        home=home,
        pd_joints=pd_joints,
    )


def _name(m: mujoco.MjModel, kind: mujoco.mjtObj, index: int) -> str:
    return mujoco.mj_id2name(m, kind, index) or f"{kind.name.removeprefix('mjOBJ_').lower()}{index}"
