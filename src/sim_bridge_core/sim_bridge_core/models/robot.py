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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from sim_bridge_core.arrays import like, namespace
from sim_bridge_core.models.parameters import ModelParameters, apply_model_parameters
from sim_bridge_core.rendering.cameras import CameraSpec, add_cameras

_ASSETS = resources.files("sim_bridge_core.models") / "assets"
MODEL_PATH_VARIABLE = "SIM_BRIDGE_MODEL_PATH"
PACKAGE_URI = "package://"
_CONTROLLABLE_JOINTS = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


class ModelError(ValueError):
    """A model that cannot be loaded or cannot be position-controlled."""


@dataclass(frozen=True)
class PdGains:
    """Gains of the PD controller given to torque-driven joints (N·m/rad, N·m·s/rad)."""

    kp: float = 100.0
    kd: float = 10.0


@dataclass(frozen=True)
class JointSet:
    """Named hinge/slide joints and where their values live in MuJoCo's arrays."""

    names: tuple[str, ...]
    qpos_adr: np.ndarray
    dof_adr: np.ndarray


@dataclass(frozen=True)
class FloatingBase:
    """The root body of a free joint: its pose is qpos[qpos_adr:+7], its velocity qvel[dof_adr:+6]."""

    body: int
    name: str
    qpos_adr: int
    dof_adr: int


@dataclass(frozen=True)
class SensorSite:
    """A site whose sensors the simulator publishes, and their columns in ``sensordata``.

    An IMU's columns are orientation (w, x, y, z), angular velocity (3), linear acceleration (3);
    a force/torque site's are force (3), torque (3).
    """

    name: str
    sensordata: np.ndarray


@dataclass(frozen=True)
class ExtraAxes:
    """What can be commanded by name beyond the controlled joints: each other actuated joint (by the
    joint's name, in its units) and each actuator without a joint of its own, such as a
    tendon-driven gripper (by the actuator's name, in its control units)."""

    names: tuple[str, ...]
    actuator_ids: np.ndarray
    ctrl_per_unit: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    home: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class RobotModel:
    """A compiled model and the index maps from its joints into MuJoCo arrays.

    ``joint_names`` (and the arrays beside it) are the controlled joints: the policy's actions
    and the batched topics. ``state_joints`` are every hinge/slide joint, actuated or passive:
    what ``joint_states`` reports. ``home_qpos`` is the whole home pose (a floating base
    included), from the home keyframe.
    """

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
    state_joints: JointSet
    home_qpos: np.ndarray
    home_ctrl: np.ndarray  # every actuator's control at home (the keyframe's, else zero)
    base: FloatingBase | None = None
    imu: SensorSite | None = None
    further_imus: tuple[SensorSite, ...] = ()  # every other site with a gyro or accelerometer
    wrenches: tuple[SensorSite, ...] = ()
    extra: ExtraAxes | None = None  # set by load_robot
    home_keyframe: str = ""  # the keyframe named as home ('': the model's "home", if any)
    added_sites: dict = dataclasses.field(default_factory=dict)  # the ``sites`` load_robot added
    cameras: tuple[CameraSpec, ...] = ()  # the cameras to publish (load_robot's ``cameras``)
    passive_joints: tuple[str, ...] = ()  # state joints no actuator drives directly
    parameters: ModelParameters = ModelParameters()  # overrides applied (and the command delay)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def physics_dt(self) -> float:
        return float(self.model.opt.timestep)

    def clamp(self, positions: np.ndarray) -> np.ndarray:
        """Joint positions clipped to the joint limits (unlimited joints pass through); numpy or device
        tensors."""
        return namespace(positions).clip(positions, like(self.lower, positions), like(self.upper, positions))

    def site_id(self, name: str) -> int:
        site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, name)
        if site < 0:
            raise ModelError(f"model '{self.name}' has no site named '{name}'")
        return site


def builtin_models() -> list[str]:
    return sorted(p.name[: -len(".xml")] for p in _ASSETS.iterdir() if p.name.endswith(".xml"))


def resolve_model_path(model: str) -> Path:
    """A built-in model name, a ``package://`` URI, or an MJCF/URDF path, as an existing absolute path.

    A relative path is looked up from the working directory, then in every folder of the
    ``SIM_BRIDGE_MODEL_PATH`` search path (colon-separated), as ``ROS_PACKAGE_PATH`` once was.
    """
    if model in builtin_models():
        return Path(str(_ASSETS / f"{model}.xml"))
    if model.startswith(PACKAGE_URI):
        path = resolve_package_uri(model)
    else:
        path = Path(os.path.expanduser(model))
        if not path.is_absolute() and not path.is_file():
            path = next((folder / path for folder in _search_path() if (folder / path).is_file()), path)
    if not path.suffix and not path.is_file():
        raise ModelError(
            f"unknown model '{model}': not a built-in ({', '.join(builtin_models())}) nor a file path"
        )
    if not path.is_file():
        folders = ":".join(str(folder) for folder in _search_path()) or "unset"
        raise ModelError(f"model file not found: {model} (nor under SIM_BRIDGE_MODEL_PATH: {folders})")
    if path.suffix.lower() not in (".xml", ".mjcf", ".urdf"):
        raise ModelError(f"model file {path} is not MJCF (.xml/.mjcf) or URDF (.urdf)")
    return path.resolve()


def _search_path() -> list[Path]:
    return [
        Path(folder).expanduser() for folder in os.environ.get(MODEL_PATH_VARIABLE, "").split(":") if folder
    ]


def resolve_package_uri(uri: str) -> Path:
    """``package://<package>/<path>`` as a path in the package's share folder (the ament index)."""
    package, _, relative = uri[len(PACKAGE_URI) :].partition("/")
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError as exc:  # pragma: no cover - ament_index ships with ROS and the lock
        raise ModelError(f"{uri}: package:// needs ament_index_python") from exc
    try:
        return Path(get_package_share_directory(package)) / relative
    except PackageNotFoundError as exc:
        raise ModelError(f"{uri}: no package '{package}' in the ament index (is its setup sourced?)") from exc


def _urdf_with_resolved_meshes(path: Path) -> str:
    """The URDF's text with ``package://`` and relative mesh files made absolute (MuJoCo's URDF
    import knows neither the ament index nor, with its default strippath, folders)."""
    import xml.etree.ElementTree as ElementTree

    tree = ElementTree.parse(path)
    root = tree.getroot()
    for mesh in root.iter("mesh"):
        filename = mesh.get("filename", "")
        if filename.startswith(PACKAGE_URI):
            mesh.set("filename", str(resolve_package_uri(filename)))
        elif filename and not Path(filename).is_absolute():
            mesh.set("filename", str((path.parent / filename).resolve()))
    extension = root.find("mujoco")
    if extension is None:
        extension = ElementTree.SubElement(root, "mujoco")
    compiler = extension.find("compiler")
    if compiler is None:
        compiler = ElementTree.SubElement(extension, "compiler")
    compiler.set("strippath", "false")
    return ElementTree.tostring(root, encoding="unicode")


def load_robot(
    model: str,
    *,
    gains: PdGains | None = None,
    parameters: ModelParameters | None = None,
    joint_names: tuple[str, ...] | list[str] = (),
    home: str = "",
    imu_site: str = "",
    sites: Mapping[str, Mapping[str, Any]] | None = None,
    cameras: Sequence[CameraSpec] = (),
) -> RobotModel:
    """Load a built-in name or MJCF/URDF path and make every controllable joint take position targets.

    ``joint_names`` picks the controlled joints, in that order (default: every joint an actuator
    drives); ``home`` names the home keyframe (default: the model's ``home`` keyframe if it has
    one, else its reference pose); ``imu_site`` the site the IMU reads at (default: the site of the
    model's first gyro or accelerometer, else a floating base's root body; the loader adds the
    orientation, gyro and accelerometer sensors it reads). ``sites`` adds sites the model lacks
    (``{name: {body: <body>, pos: [x, y, z]}}``, e.g. a tool centre point for a URDF arm, in the
    body's frame). ``cameras`` adds the cameras with a body and lists the model's own to publish
    (ConfigError naming ``cameras[i].<key>``). ``parameters`` override the model's
    physical parameters (identified ones, say); an unknown name raises ConfigError naming its
    ``model_parameters`` key.
    """
    parameters = parameters or ModelParameters()
    path, _, compiled, pd_joints = _position_controlled(
        model, gains or PdGains(), imu_site, sites or {}, cameras
    )
    apply_model_parameters(compiled, parameters, _joint_actuators(compiled))
    robot = _describe(path, compiled, pd_joints, _urdf_velocity_limits(path), tuple(joint_names), home)
    return dataclasses.replace(
        robot, parameters=parameters, added_sites=dict(sites or {}), cameras=tuple(cameras)
    )


def robot_spec(model: str, gains: PdGains | None = None) -> mujoco.MjSpec:
    """The MjSpec that ``load_robot`` compiles (PD servos in place, no overrides), for tools that
    need the robot as a spec (system identification)."""
    return _position_controlled(model, gains or PdGains())[1]


def _position_controlled(
    model: str,
    gains: PdGains,
    imu_site: str = "",
    sites: Mapping[str, Mapping[str, Any]] | None = None,
    cameras: Sequence[CameraSpec] = (),
) -> tuple[Path, mujoco.MjSpec, mujoco.MjModel, tuple[str, ...]]:
    """Path, spec and compiled model of ``model`` with every controllable joint position-servoed,
    the IMU's sensors, the ``sites`` and the ``cameras`` added."""
    path = resolve_model_path(model)
    try:
        if path.suffix.lower() == ".urdf":
            spec = mujoco.MjSpec.from_string(_urdf_with_resolved_meshes(path))
        else:
            spec = mujoco.MjSpec.from_file(str(path))
        compiled = spec.compile()
    except Exception as exc:  # mujoco raises ValueError/Exception subclasses with parser text
        raise ModelError(f"cannot load model {path}: {str(exc).strip().splitlines()[0]}") from exc

    if compiled.nu == 0:
        _add_pd_actuators(spec, compiled)
        compiled = spec.compile()
    pd_joints = _wrap_motors_in_pd(spec, compiled, gains)
    added = _add_sites(spec, compiled, sites or {}) | add_cameras(spec, compiled, cameras)
    if _add_imu(spec, compiled, imu_site) or pd_joints or added:
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
    path: Path,
    m: mujoco.MjModel,
    pd_joints: tuple[str, ...],
    urdf_velocity_limits: dict[str, float],
    joint_names: tuple[str, ...],
    home_keyframe: str,
) -> RobotModel:
    driven = _joint_actuators(m)
    by_name = {_name(m, mujoco.mjtObj.mjOBJ_JOINT, joint): joint for joint in driven}
    if joint_names:
        unknown = [name for name in joint_names if name not in by_name]
        if unknown:
            raise ModelError(
                f"joint_names: '{unknown[0]}' is not a joint an actuator drives "
                f"(those are: {', '.join(by_name)})"
            )
        repeated = next((name for k, name in enumerate(joint_names) if name in joint_names[:k]), None)
        if repeated is not None:
            raise ModelError(f"joint_names: '{repeated}' is listed twice (each joint is one action)")
        joints = np.array([by_name[name] for name in joint_names], dtype=np.int64)
    else:
        joints = np.fromiter(driven.keys(), dtype=np.int64)
    actuators = np.array([driven[int(joint)] for joint in joints], dtype=np.int64)
    limited = m.jnt_limited[joints].astype(bool)
    lower = np.where(limited, m.jnt_range[joints, 0], -np.inf)
    upper = np.where(limited, m.jnt_range[joints, 1], np.inf)
    qpos_adr = m.jnt_qposadr[joints].astype(np.int64)
    home_qpos = _home_qpos(m, home_keyframe)
    home = np.clip(home_qpos[qpos_adr], lower, upper)
    home.setflags(write=False)
    names = tuple(_name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints)
    velocity_limits = np.array([_velocity_limit(m, name, urdf_velocity_limits) for name in names])
    velocity_limits.setflags(write=False)
    state = np.flatnonzero(np.isin(m.jnt_type, _CONTROLLABLE_JOINTS))
    imu, further_imus, wrenches = _sensor_sites(m)
    return RobotModel(
        home_keyframe=home_keyframe,
        extra=_extra_axes(m, driven, set(joints.tolist()), home_qpos, _home_ctrl(m, home_keyframe)),
        passive_joints=tuple(_name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in state if j not in driven),
        name=m.names[: m.names.index(b"\0")].decode() or path.stem,
        path=str(path),
        model=m,
        joint_names=names,
        qpos_adr=qpos_adr,
        dof_adr=m.jnt_dofadr[joints].astype(np.int64),
        actuator_ids=actuators,
        ctrl_per_rad=m.actuator_gear[actuators, 0].copy(),
        lower=lower,
        upper=upper,
        velocity_limits=velocity_limits,
        home=home,
        pd_joints=pd_joints,
        state_joints=JointSet(
            tuple(_name(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in state),
            m.jnt_qposadr[state].astype(np.int64),
            m.jnt_dofadr[state].astype(np.int64),
        ),
        home_qpos=home_qpos,
        home_ctrl=_home_ctrl(m, home_keyframe),
        base=_floating_base(m),
        imu=imu,
        further_imus=further_imus,
        wrenches=wrenches,
    )


IMU_SENSORS = (
    (mujoco.mjtSensor.mjSENS_FRAMEQUAT, "orientation"),
    (mujoco.mjtSensor.mjSENS_GYRO, "angular_velocity"),
    (mujoco.mjtSensor.mjSENS_ACCELEROMETER, "linear_acceleration"),
)
IMU_PREFIX = "sim_bridge_imu"  # the IMU's sensors: <prefix>/<kind>; a further IMU's: <prefix>/<site>/<kind>
_IMU_KINDS = (int(mujoco.mjtSensor.mjSENS_GYRO), int(mujoco.mjtSensor.mjSENS_ACCELEROMETER))
_WRENCH_KINDS = (int(mujoco.mjtSensor.mjSENS_FORCE), int(mujoco.mjtSensor.mjSENS_TORQUE))


def _add_sites(spec: mujoco.MjSpec, m: mujoco.MjModel, sites: Mapping[str, Mapping[str, Any]]) -> bool:
    """Add ``sites`` to the spec (see ``load_robot``); ModelError naming ``sites.<name>`` if one is bad."""
    for name, site in sites.items():
        where = f"sites.{name}"
        if not isinstance(site, Mapping) or set(site) - {"body", "pos"} or "body" not in site:
            raise ModelError(f"{where}: give body (and pos: [x, y, z]), got {site!r}")
        if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, name) >= 0:
            raise ModelError(f"{where}: the model has a site of that name already")
        if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, str(site["body"])) < 0:
            raise ModelError(f"{where}.body: the model has no body '{site['body']}'")
        pos = np.asarray(site.get("pos", [0.0, 0.0, 0.0]), dtype=float)
        if pos.shape != (3,) or not np.isfinite(pos).all():
            raise ModelError(f"{where}.pos: must be [x, y, z], got {site.get('pos')!r}")
        spec.body(str(site["body"])).add_site(name=name, pos=pos)
    return bool(sites)


def _add_imu(spec: mujoco.MjSpec, m: mujoco.MjModel, imu_site: str) -> bool:
    """Add the sensors each IMU reads at its site (see ``load_robot``); False when there is no IMU."""
    site_obj = mujoco.mjtObj.mjOBJ_SITE
    sensed = [int(m.sensor_objid[k]) for k in range(m.nsensor) if m.sensor_type[k] in _IMU_KINDS]
    imu_sites = list(dict.fromkeys(_name(m, site_obj, site) for site in sensed))  # in order, once each
    if imu_site:
        if mujoco.mj_name2id(m, site_obj, imu_site) < 0:
            raise ModelError(f"imu_site: the model has no site '{imu_site}'")
        if imu_site not in imu_sites:
            raise ModelError(f"imu_site: site '{imu_site}' has no gyro or accelerometer sensor")
        main = imu_site
    elif imu_sites:
        main = imu_sites[0]
    else:
        base = _floating_base(m)
        if base is None:
            return False
        main = IMU_PREFIX
        spec.body(base.name).add_site(name=main)
    for site, prefix in [(main, IMU_PREFIX)] + [(s, f"{IMU_PREFIX}/{s}") for s in imu_sites if s != main]:
        for kind, sensor in IMU_SENSORS:
            spec.add_sensor(name=f"{prefix}/{sensor}", type=kind, objtype=site_obj, objname=site)
    return True


def _imu_at(m: mujoco.MjModel, prefix: str) -> SensorSite | None:
    """The IMU whose sensors ``_add_imu`` named ``<prefix>/<kind>``, if there is one."""
    adr = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, f"{prefix}/{name}") for _, name in IMU_SENSORS]
    if min(adr) < 0:
        return None
    columns = np.concatenate([m.sensor_adr[k] + np.arange(m.sensor_dim[k]) for k in adr])
    return SensorSite(_name(m, mujoco.mjtObj.mjOBJ_SITE, int(m.sensor_objid[adr[0]])), columns)


def _sensor_sites(
    m: mujoco.MjModel,
) -> tuple[SensorSite | None, tuple[SensorSite, ...], tuple[SensorSite, ...]]:
    """The IMU, the further IMUs (the sensors ``_add_imu`` added) and every site with both a force
    and a torque sensor."""
    imu = _imu_at(m, IMU_PREFIX)
    further = []
    for k in range(m.nsensor):
        prefix, _, kind = _name(m, mujoco.mjtObj.mjOBJ_SENSOR, k).rpartition("/")
        if prefix.startswith(f"{IMU_PREFIX}/") and kind == IMU_SENSORS[0][1]:
            further.append(_imu_at(m, prefix))
    by_site: dict[int, dict[int, int]] = {}
    for k in range(m.nsensor):
        if m.sensor_type[k] in _WRENCH_KINDS:
            by_site.setdefault(int(m.sensor_objid[k]), {}).setdefault(int(m.sensor_type[k]), k)
    wrenches = tuple(
        SensorSite(
            _name(m, mujoco.mjtObj.mjOBJ_SITE, site),
            np.concatenate([m.sensor_adr[sensors[kind]] + np.arange(3) for kind in _WRENCH_KINDS]),
        )
        for site, sensors in by_site.items()
        if len(sensors) == 2
    )
    return imu, tuple(site for site in further if site is not None), wrenches


def _home_qpos(m: mujoco.MjModel, keyframe: str) -> np.ndarray:
    """The whole home pose: keyframe ``keyframe`` ('': ``home`` if there is one, else qpos0)."""
    key = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_KEY, keyframe or "home")
    if key < 0 and keyframe:
        names = [_name(m, mujoco.mjtObj.mjOBJ_KEY, k) for k in range(m.nkey)]
        raise ModelError(f"home: no keyframe '{keyframe}' (keyframes: {', '.join(names) or 'none'})")
    qpos = np.array(m.key_qpos[key] if key >= 0 else m.qpos0, dtype=np.float64)
    qpos.setflags(write=False)
    return qpos


def _extra_axes(
    m: mujoco.MjModel,
    driven: dict[int, int],
    controlled: set[int],
    home_qpos: np.ndarray,
    home_ctrl: np.ndarray,
) -> ExtraAxes:
    names, ids, scale, lower, upper, home = [], [], [], [], [], []
    by_joint = {act: joint for joint, act in driven.items()}
    for act in range(m.nu):
        joint = by_joint.get(act)
        if joint in controlled:
            continue
        if joint is not None:  # a joint's servo: commanded in joint units, by the joint's name
            names.append(_name(m, mujoco.mjtObj.mjOBJ_JOINT, joint))
            scale.append(m.actuator_gear[act, 0])
            limited = bool(m.jnt_limited[joint])
            lower.append(m.jnt_range[joint, 0] if limited else -np.inf)
            upper.append(m.jnt_range[joint, 1] if limited else np.inf)
            home.append(home_qpos[m.jnt_qposadr[joint]])
        else:  # any other actuator: commanded in its control units, by its own name
            names.append(_name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, act))
            scale.append(1.0)
            limited = bool(m.actuator_ctrllimited[act])
            lower.append(m.actuator_ctrlrange[act, 0] if limited else -np.inf)
            upper.append(m.actuator_ctrlrange[act, 1] if limited else np.inf)
            home.append(home_ctrl[act])
        ids.append(act)
    return ExtraAxes(
        tuple(names),
        np.array(ids, dtype=np.int64),
        *(np.array(v, dtype=np.float64) for v in (scale, lower, upper, home)),
    )


def _home_ctrl(m: mujoco.MjModel, keyframe: str) -> np.ndarray:
    key = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_KEY, keyframe or "home")
    ctrl = np.array(m.key_ctrl[key] if key >= 0 else np.zeros(m.nu), dtype=np.float64)
    ctrl.setflags(write=False)
    return ctrl


def _floating_base(m: mujoco.MjModel) -> FloatingBase | None:
    """The body of the model's first free joint, if it has one (a legged robot's trunk)."""
    free = np.flatnonzero(m.jnt_type == mujoco.mjtJoint.mjJNT_FREE)
    if not free.size:
        return None
    joint = int(free[0])
    body = int(m.jnt_bodyid[joint])
    return FloatingBase(
        body, _name(m, mujoco.mjtObj.mjOBJ_BODY, body), int(m.jnt_qposadr[joint]), int(m.jnt_dofadr[joint])
    )


def _name(m: mujoco.MjModel, kind: mujoco.mjtObj, index: int) -> str:
    return mujoco.mj_id2name(m, kind, index) or f"{kind.name.removeprefix('mjOBJ_').lower()}{index}"
