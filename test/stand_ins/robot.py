#!/usr/bin/env python3
"""A stand-in real robot: its own process, its own MuJoCo physics, its drivers and ros2_control controllers.

Tests and benchmarks run the deploy path against it as against a robot this project did not build: it
uses ``mujoco`` and ``rclpy`` directly (nothing of sim_bridge_core), steps its physics in real time on
the wall clock, and talks as a ros2_control robot with its drivers does (their rates, QoS and stamps).

Usage (with the workspace sourced, so rclpy and the message packages import)::

    python test/stand_ins/robot.py --model PATH [options] [--ros-args ...]

Model and pose:
  --model PATH               MJCF file (required)
  --keyframe NAME            initial pose (default: ``home`` if the model has it, else the model's qpos0)
  --namespace NS             namespace of every node, topic and service below (default: none)
  --joint-prefix P           prefix of every joint name on the wire, in and out (``fr3_`` -> ``fr3_joint1``)
  --controller-joints A,B    the controllers' joint order (default: every actuated joint, model order);
                             names with or without the prefix; a subset leaves the others at their pose
Physics (stepped on its own thread, one step per ``timestep`` of wall-clock time):
  --timestep S  --cone {pyramidal,elliptic}  --impratio X  --iterations N    solver overrides
  --mass-scale X  --friction-scale X (sliding)  --damping-scale X  --armature-add X  --frictionloss-add X
  --kp-scale X               position gain scale (position servos and the PD below): softer servos
  --command-delay-s S        commands take effect this long after they arrive (default 0): transport and
                             queues; a trajectory stamped for later starts at its stamp all the same
  --actuation-delay-s S      the servos get each target this long after the controller writes it (default
                             0): a bus and drive latency, which every command sees
  --kp X  --kd X             PD gains for joints driven by motor (torque) actuators (default 30, 1)
Rates (Hz): --state-rate-hz (500), --imu-rate-hz (250), --trajectory-rate-hz (500).
  A driver faster than the physics republishes the latest state with a fresh stamp.

On the wire (names relative to the namespace; every stamp is the wall clock, time.time()):
  node ``stand_in_robot``:
    ``joint_states``       sensor_msgs/JointState, every hinge and slide joint (position, velocity,
                           actuator effort), reliable, depth 10; frame_id: the base body
    ``imu``                sensor_msgs/Imu when the model has a free joint: orientation, angular velocity and
                           accelerometer reading (gravity included) of the model's first gyro's site (else its
                           accelerometer's, else the free body's origin), best effort (sensor-data QoS)
    ``ground_truth/odom``  nav_msgs/Odometry of the free joint's body at 50 Hz: pose in ``world``, twist in
                           the body frame (child_frame_id), as nav_msgs specifies
  node ``forward_position_controller``: parameter ``joints`` (wire names, controller order), subscribes
    ``forward_position_controller/commands`` (std_msgs/Float64MultiArray, one value per controller joint;
    any other length is ignored with a throttled warning)
  node ``joint_trajectory_controller``: parameter ``joints``, subscribes
    ``joint_trajectory_controller/joint_trajectory`` (trajectory_msgs/JointTrajectory by joint name; stamp 0
    starts it on arrival; from the measured state through the points, then holds the last one; as
    joint_trajectory_controller (its defaults) does: linear between positions, cubic with velocities,
    quintic with velocities and accelerations)
  The latest command wins: a forward command ends a trajectory under way.

Joints driven by position actuators take the target as ctrl; joints driven by motors follow it through
the PD. Until a command arrives every target is the initial pose, so the robot stands before it is armed.
Prints ``stand-in robot parameters: {json}`` (per controller joint its damping, armature, frictionloss and
servo kp / kv as perturbed, and both delays: the truth a system identification is judged against), then
``stand-in robot ready`` once publishing; SIGINT or SIGTERM stops it with exit status 0, after a
line of timing statistics. Bad arguments end it with a one-line error (exit status 2).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

RELIABLE = QoSProfile(depth=10)
ODOM_RATE_HZ = 50.0
MAX_LAG_S = 0.1  # physics further behind the wall clock than this skips ahead instead of catching up
STAMP_SENTINEL = (0x7A5B3C1D, 0x2B3C4D5E)  # a stamp no message holds: where the stamp lies in the bytes
IMU_SENSORS = (
    mujoco.mjtSensor.mjSENS_GYRO,
    mujoco.mjtSensor.mjSENS_ACCELEROMETER,
    mujoco.mjtSensor.mjSENS_FRAMEQUAT,
)
HINGE_SLIDE = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))  # joints on the wire


class ArgumentError(Exception):
    """An argument the stand-in cannot run with: ends it with a one-line usage error."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot.py", description="A stand-in real robot (MuJoCo physics, ros2_control-like interfaces)."
    )
    positive = _bounded(lambda v: v > 0, "a number > 0")
    non_negative = _bounded(lambda v: v >= 0, "a number >= 0")
    parser.add_argument("--model", required=True, type=Path, help="MJCF file")
    parser.add_argument("--keyframe", default=None, help="initial pose (default: home if the model has it)")
    parser.add_argument("--namespace", default="", help="namespace of the nodes")
    parser.add_argument("--joint-prefix", default="", help="prefix of every joint name on the wire")
    parser.add_argument("--controller-joints", default="", help="comma-separated controller joint order")
    parser.add_argument("--timestep", type=positive, help="physics timestep override (s)")
    parser.add_argument("--cone", choices=("pyramidal", "elliptic"), help="friction cone override")
    parser.add_argument("--impratio", type=positive, help="impratio override")
    parser.add_argument("--iterations", type=_bounded(lambda v: v >= 1, "an integer >= 1", int))
    parser.add_argument("--mass-scale", type=positive, default=1.0)
    parser.add_argument("--friction-scale", type=positive, default=1.0)
    parser.add_argument("--damping-scale", type=non_negative, default=1.0)
    parser.add_argument("--armature-add", type=non_negative, default=0.0)
    parser.add_argument("--frictionloss-add", type=non_negative, default=0.0)
    parser.add_argument("--kp-scale", type=positive, default=1.0)
    parser.add_argument("--command-delay-s", type=non_negative, default=0.0)
    parser.add_argument("--actuation-delay-s", type=non_negative, default=0.0)
    parser.add_argument("--kp", type=non_negative, default=30.0, help="PD stiffness for motor-driven joints")
    parser.add_argument("--kd", type=non_negative, default=1.0, help="PD damping for motor-driven joints")
    parser.add_argument("--state-rate-hz", type=positive, default=500.0)
    parser.add_argument("--imu-rate-hz", type=positive, default=250.0)
    parser.add_argument("--trajectory-rate-hz", type=positive, default=500.0)
    return parser


def _bounded(accept: Callable[[float], bool], what: str, kind: type = float) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return convert


def _load_model(path: Path) -> tuple[mujoco.MjModel, str | None]:
    """The compiled model, with IMU sensors added where it has a free joint and lacks them.

    Returns the model and the IMU site's name (None without a free joint). The stand-in reads every IMU
    value from sensors on that site (gyro, accelerometer, frame quaternion), as a real IMU measures them.
    """
    try:
        spec = mujoco.MjSpec.from_file(str(path))
        plain = spec.compile()
    except ValueError as error:  # MuJoCo's parse and compile errors
        raise ArgumentError(f"--model {path}: {error}") from None
    free = [j for j in range(plain.njnt) if plain.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
    if not free:
        return plain, None
    on_sites = [(s.type, s.objname) for s in spec.sensors if s.objtype == mujoco.mjtObj.mjOBJ_SITE]
    site = next((name for kind in IMU_SENSORS[:2] for k, name in on_sites if k == kind), None)
    if site is None and mujoco.mj_name2id(plain, mujoco.mjtObj.mjOBJ_SITE, "imu") >= 0:
        site = "imu"  # the site a model marks for its IMU, without sensors (as MuJoCo Menagerie's robots)
    if site is None:
        site = "stand_in_imu"
        body = mujoco.mj_id2name(plain, mujoco.mjtObj.mjOBJ_BODY, plain.jnt_bodyid[free[0]])
        spec.body(body).add_site(name=site)
    for kind in IMU_SENSORS:
        if (kind, site) not in on_sites:
            spec.add_sensor(type=kind, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=site)
    return spec.compile(), site


def _imu_slices(model: mujoco.MjModel, site: str) -> list[slice]:
    """Where the gyro, accelerometer and frame quaternion of ``site`` lie in ``sensordata``."""
    site_id = model.site(site).id
    slices = []
    for kind in IMU_SENSORS:
        sensor = next(
            s
            for s in range(model.nsensor)
            if model.sensor_type[s] == kind
            and model.sensor_objtype[s] == mujoco.mjtObj.mjOBJ_SITE
            and model.sensor_objid[s] == site_id
        )
        slices.append(
            slice(int(model.sensor_adr[sensor]), int(model.sensor_adr[sensor] + model.sensor_dim[sensor]))
        )
    return slices


class WireMessage:
    """A message serialized once; each publish patches its stamp and numbers in the bytes and sends them raw.

    ``fields`` name blocks of consecutive doubles in the message (a setter and a length); after
    construction ``self.values[name]`` is a numpy view of that block in the serialized bytes. Offsets
    are found by serializing sentinel values with rclpy's own serializer, so the layout is the one
    rclpy would send.
    """

    def __init__(self, msg: Any, fields: dict[str, tuple[int, Callable[[Any, np.ndarray], None]]]) -> None:
        sentinels = {}
        for index, (name, (length, setter)) in enumerate(fields.items()):
            sentinels[name] = (1 + index * 1000 + np.arange(length, dtype=np.float64)) * 1.0e-300
            setter(msg, sentinels[name])
        msg.header.stamp = Time(sec=STAMP_SENTINEL[0], nanosec=STAMP_SENTINEL[1])
        self._bytes = bytearray(serialize_message(msg))
        self._stamp = np.frombuffer(
            self._bytes, np.uint32, 2, self._find(np.array(STAMP_SENTINEL, np.uint32))
        )
        self.values = {
            name: np.frombuffer(self._bytes, np.float64, len(block), self._find(block))
            for name, block in sentinels.items()
        }
        for view in self.values.values():
            view[:] = 0.0

    def _find(self, block: np.ndarray) -> int:
        pattern = block.tobytes()
        offset = self._bytes.find(pattern)
        if offset < 0 or self._bytes.find(pattern, offset + 1) >= 0:
            raise RuntimeError("a message field was not found once in its serialized bytes")
        return offset

    def publish(self, publisher: Any, stamp: float) -> None:
        seconds = math.floor(stamp)
        self._stamp[0] = seconds
        self._stamp[1] = int((stamp - seconds) * 1e9)
        publisher.publish(bytes(self._bytes))


def _set_vector(field: str) -> Callable[[Any, np.ndarray], None]:
    def setter(msg: Any, values: np.ndarray) -> None:
        target = msg
        for part in field.split("."):
            target = getattr(target, part)
        for axis, value in zip("xyzw"[: len(values)], values, strict=True):
            setattr(target, axis, float(value))

    return setter


def _set_array(field: str) -> Callable[[Any, np.ndarray], None]:
    return lambda msg, values: setattr(msg, field, values.tolist())


def _set_pose(msg: Odometry, values: np.ndarray) -> None:
    _set_vector("pose.pose.position")(msg, values[:3])
    _set_vector("pose.pose.orientation")(msg, values[3:])


def _set_twist(msg: Odometry, values: np.ndarray) -> None:
    _set_vector("twist.twist.linear")(msg, values[:3])
    _set_vector("twist.twist.angular")(msg, values[3:])


class Trajectory:
    """A joint trajectory under way: positions of some target slots against wall-clock time.

    Between points, as joint_trajectory_controller samples a trajectory: a quintic when the points carry
    velocities and accelerations, a cubic with velocities alone, else a straight line.
    """

    def __init__(
        self,
        slots: np.ndarray,
        start: float,
        times: np.ndarray,
        positions: np.ndarray,
        velocities: np.ndarray | None = None,
        accelerations: np.ndarray | None = None,
    ) -> None:
        self.slots, self.start, self.times, self.positions = slots, start, times, positions
        self.velocities, self.accelerations = velocities, accelerations

    def sample(self, now: float) -> tuple[np.ndarray, bool]:
        """Positions at ``now`` and whether the trajectory has ended (it then holds its last point)."""
        elapsed = now - self.start
        if elapsed >= self.times[-1]:
            return self.positions[-1], True
        if elapsed <= self.times[0]:
            return self.positions[0], False
        k = int(np.searchsorted(self.times, elapsed, side="right"))
        span = self.times[k] - self.times[k - 1]
        x = (elapsed - self.times[k - 1]) / span
        p0, p1 = self.positions[k - 1], self.positions[k]
        if self.velocities is None:
            return p0 + x * (p1 - p0), False
        v0, v1 = self.velocities[k - 1] * span, self.velocities[k] * span  # per unit of x
        if self.accelerations is None:
            h01 = x**2 * (3 - 2 * x)  # Hermite basis: p1's weight; p0's is 1 - h01
            return p0 + h01 * (p1 - p0) + x * (1 - x) ** 2 * v0 + x**2 * (x - 1) * v1, False
        a0, a1 = self.accelerations[k - 1] * span**2, self.accelerations[k] * span**2
        # The quintic with these end positions, velocities and accelerations (x from 0 to 1).
        c3 = 10 * (p1 - p0) - 6 * v0 - 4 * v1 - 1.5 * a0 + 0.5 * a1
        c4 = -15 * (p1 - p0) + 8 * v0 + 7 * v1 + 1.5 * a0 - a1
        c5 = 6 * (p1 - p0) - 3 * v0 - 3 * v1 - 0.5 * a0 + 0.5 * a1
        return p0 + x * (v0 + x * (0.5 * a0 + x * (c3 + x * (c4 + x * c5)))), False


def _per_point(points: Sequence[Any], field: str, count: int) -> np.ndarray | None:
    """(P, count) of every point's ``field``, or None unless each point has ``count`` finite values."""
    rows = [getattr(point, field) for point in points]
    if any(len(row) != count for row in rows):
        return None
    values = np.array(rows, dtype=np.float64)
    return values if np.all(np.isfinite(values)) else None


class StandInRobot:
    """The robot: physics on its own thread, drivers and controllers as ROS nodes on the caller's executor."""

    def __init__(self, args: argparse.Namespace) -> None:
        if not args.model.is_file():
            raise ArgumentError(f"--model {args.model}: no such file")
        self.model, imu_site = _load_model(args.model)
        model = self.model
        self._override_solver(args)
        self._perturb(args)
        self.data = mujoco.MjData(model)
        self._reset(args)

        self.joints = [j for j in range(model.njnt) if int(model.jnt_type[j]) in HINGE_SLIDE]
        prefix = args.joint_prefix
        self.wire_names = [prefix + model.joint(j).name for j in self.joints]
        self._joint_qpos = model.jnt_qposadr[self.joints]
        self._joint_dof = model.jnt_dofadr[self.joints]

        self._setup_actuation(args)
        controller = self._controller_slots(args)
        self._controller_slots_array = np.array(controller, dtype=np.intp)
        self.controller_names = [prefix + model.joint(self._driven[s]).name for s in controller]
        self._slot_of = {name: slot for name, slot in zip(self.controller_names, controller, strict=True)}

        free = [j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        self._base_body = int(model.jnt_bodyid[free[0]]) if free else 0
        base_name = model.body(self._base_body).name or "world"
        self._free_qpos = int(model.jnt_qposadr[free[0]]) if free else -1
        self._free_dof = int(model.jnt_dofadr[free[0]]) if free else -1

        self._commands: collections.deque = collections.deque()
        self._trajectory: Trajectory | None = None
        self._delay = args.command_delay_s
        self._periods = {
            "state": 1.0 / args.state_rate_hz,
            "imu": 1.0 / args.imu_rate_hz,
            "odom": 1.0 / ODOM_RATE_HZ,
            "trajectory": 1.0 / args.trajectory_rate_hz,
        }
        self._stop = threading.Event()
        self.failure: BaseException | None = None
        self.counts = dict.fromkeys(("steps", "skips", *self._periods), 0)
        self._seconds = float("nan")

        joint_msg = JointState(name=self.wire_names)
        joint_msg.header.frame_id = prefix + base_name
        count = len(self.joints)
        self._joint_wire = WireMessage(
            joint_msg, {f: (count, _set_array(f)) for f in ("position", "velocity", "effort")}
        )
        self._imu_wire = self._odom_wire = None
        if imu_site is not None:
            self._gyro, self._accel, self._quat = _imu_slices(model, imu_site)
            imu_msg = Imu()
            imu_msg.header.frame_id = prefix + imu_site
            self._imu_wire = WireMessage(
                imu_msg,
                {
                    "orientation": (4, _set_vector("orientation")),
                    "angular_velocity": (3, _set_vector("angular_velocity")),
                    "linear_acceleration": (3, _set_vector("linear_acceleration")),
                },
            )
            odom_msg = Odometry(child_frame_id=prefix + base_name)
            odom_msg.header.frame_id = "world"
            self._odom_wire = WireMessage(odom_msg, {"pose": (7, _set_pose), "twist": (6, _set_twist)})
        self._thread = threading.Thread(target=self._run, name="physics", daemon=True)

    def connect(self, context: Any, namespace: str) -> list[Node]:
        """The driver and controller nodes, as ros2_control names them; returns them for an executor."""
        self.node = Node("stand_in_robot", namespace=namespace, context=context)
        self._joint_pub = self.node.create_publisher(JointState, "joint_states", RELIABLE)
        if self._imu_wire is not None:
            self._imu_pub = self.node.create_publisher(Imu, "imu", qos_profile_sensor_data)
            self._odom_pub = self.node.create_publisher(Odometry, "ground_truth/odom", RELIABLE)
        read_only = ParameterDescriptor(read_only=True, description="the controller's joint order")
        self.forward_node = Node("forward_position_controller", namespace=namespace, context=context)
        self.forward_node.declare_parameter("joints", self.controller_names, read_only)
        self.forward_node.create_subscription(
            Float64MultiArray, "forward_position_controller/commands", self._on_forward, RELIABLE
        )
        self.trajectory_node = Node("joint_trajectory_controller", namespace=namespace, context=context)
        self.trajectory_node.declare_parameter("joints", self.controller_names, read_only)
        self.trajectory_node.create_subscription(
            JointTrajectory, "joint_trajectory_controller/joint_trajectory", self._on_trajectory, RELIABLE
        )
        return [self.node, self.forward_node, self.trajectory_node]

    def _override_solver(self, args: argparse.Namespace) -> None:
        opt = self.model.opt
        if args.timestep is not None:
            opt.timestep = args.timestep
        if args.cone is not None:
            cones = {"pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL, "elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC}
            opt.cone = cones[args.cone]
        if args.impratio is not None:
            opt.impratio = args.impratio
        if args.iterations is not None:
            opt.iterations = args.iterations

    def _perturb(self, args: argparse.Namespace) -> None:
        """The robot differs from its model as a real one does: heavier, more friction, looser servos."""
        model = self.model
        model.body_mass[1:] *= args.mass_scale
        model.body_inertia[1:] *= args.mass_scale
        model.geom_friction[:, 0] *= args.friction_scale
        model.dof_damping[:] *= args.damping_scale
        jointed = np.ones(model.nv, dtype=bool)
        for j in range(model.njnt):
            if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
                jointed[model.jnt_dofadr[j] : model.jnt_dofadr[j] + 6] = False
        model.dof_armature[jointed] += args.armature_add
        model.dof_frictionloss[jointed] += args.frictionloss_add

    def _reset(self, args: argparse.Namespace) -> None:
        names = [self.model.key(k).name for k in range(self.model.nkey)]
        keyframe = args.keyframe if args.keyframe is not None else ("home" if "home" in names else None)
        if keyframe is not None and keyframe not in names:
            raise ArgumentError(f"--keyframe {keyframe}: the model has {names or 'no keyframes'}")
        if keyframe is None:
            mujoco.mj_resetData(self.model, self.data)
        else:
            mujoco.mj_resetDataKeyframe(self.model, self.data, names.index(keyframe))
        mujoco.mj_forward(self.model, self.data)

    def _setup_actuation(self, args: argparse.Namespace) -> None:
        """Which joints the actuators drive and how: position servos take targets, motors get a PD."""
        model = self.model
        servo, motor = {}, {}
        for a in range(model.nu):
            if model.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_JOINT:
                continue
            joint = int(model.actuator_trnid[a, 0])
            if int(model.jnt_type[joint]) not in HINGE_SLIDE:
                continue
            fixed = model.actuator_gaintype[a] == mujoco.mjtGain.mjGAIN_FIXED
            bias = model.actuator_biastype[a]
            kp = model.actuator_gainprm[a, 0]
            servo_bias = model.actuator_biasprm[a, 0] == 0 and model.actuator_biasprm[a, 1] == -kp
            if fixed and bias == mujoco.mjtBias.mjBIAS_AFFINE and servo_bias and kp > 0:
                servo.setdefault(joint, a)
            elif fixed and bias == mujoco.mjtBias.mjBIAS_NONE:
                motor.setdefault(joint, a)
        driven = sorted(set(servo) | set(motor))
        if not driven:
            raise ArgumentError(f"--model {args.model}: no joint is driven by a position or motor actuator")
        self._driven = driven
        servo_slots = [s for s, j in enumerate(driven) if j in servo]
        motor_slots = [s for s, j in enumerate(driven) if j not in servo]
        self._servo_slots = np.array(servo_slots, dtype=np.intp)
        self._servo_acts = np.array([servo[driven[s]] for s in servo_slots], dtype=np.intp)
        model.actuator_gainprm[self._servo_acts, 0] *= args.kp_scale
        model.actuator_biasprm[self._servo_acts, 1] *= args.kp_scale
        self._motor_slots = np.array(motor_slots, dtype=np.intp)
        self._motor_acts = np.array([motor[driven[s]] for s in motor_slots], dtype=np.intp)
        motor_joints = [driven[s] for s in motor_slots]
        self._motor_qpos = model.jnt_qposadr[motor_joints]
        self._motor_dof = model.jnt_dofadr[motor_joints]
        motor_acts = self._motor_acts
        self._motor_gain = model.actuator_gainprm[motor_acts, 0] * model.actuator_gear[motor_acts, 0]
        self._kp, self._kd = args.kp * args.kp_scale, args.kd
        self.target = self.data.qpos[model.jnt_qposadr[driven]].copy()
        # What the drives have been sent, newest last: they act on the oldest (the actuation delay).
        steps = round(args.actuation_delay_s / model.opt.timestep)
        self._sent = collections.deque([self.target.copy()] * (steps + 1), maxlen=steps + 1)

    def _controller_slots(self, args: argparse.Namespace) -> list[int]:
        if not args.controller_joints:
            return list(range(len(self._driven)))
        slots = {self.model.joint(j).name: s for s, j in enumerate(self._driven)}
        chosen = []
        for name in args.controller_joints.split(","):
            bare = name.strip().removeprefix(args.joint_prefix)
            if bare not in slots:
                raise ArgumentError(
                    f"--controller-joints: {name!r} is not one of the actuated joints {sorted(slots)}"
                )
            if slots[bare] in chosen:
                raise ArgumentError(f"--controller-joints: {name!r} is listed twice")
            chosen.append(slots[bare])
        return chosen

    def _on_forward(self, msg: Float64MultiArray) -> None:
        values = np.array(msg.data, dtype=np.float64)
        expected = len(self._controller_slots_array)
        if values.shape != (expected,) or not np.all(np.isfinite(values)):
            self.forward_node.get_logger().warning(
                f"ignored a command of {values.size} values: expected {expected} finite values in the order "
                f"of the parameter joints",
                throttle_duration_sec=2.0,
            )
            return
        self._commands.append((time.monotonic() + self._delay, self._controller_slots_array, values, None))

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        logger = self.trajectory_node.get_logger()
        unknown = [name for name in msg.joint_names if name not in self._slot_of]
        if unknown or len(set(msg.joint_names)) != len(msg.joint_names):
            logger.warning(
                f"ignored a trajectory for joints {list(msg.joint_names)}: each must be one of the parameter "
                f"joints, once",
                throttle_duration_sec=2.0,
            )
            return
        slots = np.array([self._slot_of[name] for name in msg.joint_names], dtype=np.intp)
        if not msg.points:
            self._commands.append((time.monotonic() + self._delay, slots, None, None))
            return
        if any(len(p.positions) != len(slots) for p in msg.points):
            logger.warning(
                "ignored a trajectory: a point has not one position per joint name", throttle_duration_sec=2.0
            )
            return
        times = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points])
        positions = np.array([p.positions for p in msg.points], dtype=np.float64)
        if not (np.all(np.isfinite(positions)) and times[0] >= 0 and np.all(np.diff(times) > 0)):
            logger.warning(
                "ignored a trajectory: positions must be finite and time_from_start increasing from >= 0",
                throttle_duration_sec=2.0,
            )
            return
        velocities = _per_point(msg.points, "velocities", len(slots))
        accelerations = None if velocities is None else _per_point(msg.points, "accelerations", len(slots))
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        timing = (stamp, times, velocities, accelerations)
        self._commands.append((time.monotonic() + self._delay, slots, positions, timing))

    def _apply_commands(self, now: float) -> None:
        """Commands whose delay has passed: a forward command sets targets, a trajectory starts."""
        while self._commands and self._commands[0][0] <= now:
            _, slots, values, timing = self._commands.popleft()
            if values is None:  # an empty trajectory: stop where the targets are
                self._trajectory = None
            elif timing is None:
                self.target[slots] = values
                self._trajectory = None
            else:
                stamp, times, velocities, accelerations = timing
                start = stamp if stamp > 0 else time.time()
                if times[0] > 0:  # from the measured state, as joint_trajectory_controller starts
                    times = np.concatenate(([0.0], times))
                    joints = np.asarray(self._driven)[slots]
                    values = np.vstack((self.data.qpos[self.model.jnt_qposadr[joints]], values))
                    if velocities is not None:
                        measured = self.data.qvel[self.model.jnt_dofadr[joints]]
                        velocities = np.vstack((measured, velocities))
                    if accelerations is not None:
                        accelerations = np.vstack((np.zeros(len(slots)), accelerations))
                self._trajectory = Trajectory(slots, start, times, values, velocities, accelerations)

    def _follow_trajectory(self) -> None:
        trajectory = self._trajectory
        if trajectory is None:
            return
        positions, ended = trajectory.sample(time.time())
        self.target[trajectory.slots] = positions
        if ended:
            self._trajectory = None

    def _actuate(self) -> None:
        data = self.data
        self._sent.append(self.target.copy())
        target = self._sent[0]
        data.ctrl[self._servo_acts] = target[self._servo_slots]
        if self._motor_acts.size:
            error = target[self._motor_slots] - data.qpos[self._motor_qpos]
            torque = self._kp * error - self._kd * data.qvel[self._motor_dof]
            data.ctrl[self._motor_acts] = torque / self._motor_gain

    def _publish_joint_states(self) -> None:
        data, values = self.data, self._joint_wire.values
        values["position"][:] = data.qpos[self._joint_qpos]
        values["velocity"][:] = data.qvel[self._joint_dof]
        values["effort"][:] = data.qfrc_actuator[self._joint_dof]
        self._joint_wire.publish(self._joint_pub, time.time())

    def _publish_imu(self) -> None:
        sensors, values = self.data.sensordata, self._imu_wire.values
        quat = sensors[self._quat]
        values["orientation"][:3] = quat[1:]
        values["orientation"][3] = quat[0]
        values["angular_velocity"][:] = sensors[self._gyro]
        values["linear_acceleration"][:] = sensors[self._accel]
        self._imu_wire.publish(self._imu_pub, time.time())

    def _publish_odom(self) -> None:
        pose = self.data.qpos[self._free_qpos : self._free_qpos + 7]
        values = self._odom_wire.values
        values["pose"][:3] = pose[:3]
        values["pose"][3:6] = pose[4:7]
        values["pose"][6] = pose[3]
        # A free joint's qvel: the body's linear velocity in the world frame, then its angular
        # velocity in its own frame; odometry's twist is both in the body frame.
        velocity = self.data.qvel[self._free_dof : self._free_dof + 6]
        rotation = self.data.xmat[self._base_body].reshape(3, 3)
        values["twist"][:3] = rotation.T @ velocity[:3]
        values["twist"][3:] = velocity[3:]
        self._odom_wire.publish(self._odom_pub, time.time())

    def start(self) -> None:
        self._publish_joint_states()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as error:  # the process must end, not stand with dead physics
            self.failure = error
            signal.raise_signal(signal.SIGTERM)

    def _loop(self) -> None:
        """Real time: one physics step per timestep of the monotonic clock; drivers on their own rates."""
        dt = self.model.opt.timestep
        tasks = [("state", self._publish_joint_states), ("trajectory", self._follow_trajectory)]
        if self._imu_wire is not None:
            tasks += [("imu", self._publish_imu), ("odom", self._publish_odom)]
        names = [name for name, _ in tasks]
        periods = [self._periods[name] for name in names]
        actions = [action for _, action in tasks]
        begin = time.monotonic()
        next_step = begin
        due = [begin] * len(tasks)
        model, data, stop, counts = self.model, self.data, self._stop, self.counts
        while not stop.is_set():
            now = time.monotonic()
            wake = min(next_step, *due)
            if wake > now:
                time.sleep(wake - now)
                now = time.monotonic()
            if now >= next_step:
                self._apply_commands(now)
                self._actuate()
                mujoco.mj_step(model, data)
                counts["steps"] += 1
                next_step += dt
                if now - next_step > MAX_LAG_S:
                    next_step = now
                    counts["skips"] += 1
            for i, action in enumerate(actions):
                if now >= due[i]:
                    action()
                    counts[names[i]] += 1
                    due[i] += periods[i]
                    if due[i] <= now:  # late: keep the phase, drop the missed ticks
                        due[i] += math.ceil((now - due[i]) / periods[i]) * periods[i]
        self._seconds = time.monotonic() - begin

    def parameters(self) -> dict[str, Any]:
        """The joints' true parameters and the delays, as the perturbations made them."""
        model, joints = self.model, {}
        servo_of = dict(zip(self._servo_slots.tolist(), self._servo_acts.tolist(), strict=True))
        for name, slot in self._slot_of.items():
            dof = int(model.jnt_dofadr[self._driven[slot]])
            act = servo_of.get(slot)
            kp, kv = (
                (float(model.actuator_gainprm[act, 0]), float(-model.actuator_biasprm[act, 2]))
                if act is not None
                else (self._kp, self._kd)
            )
            joints[name] = {
                "damping": float(model.dof_damping[dof]),
                "armature": float(model.dof_armature[dof]),
                "frictionloss": float(model.dof_frictionloss[dof]),
                "kp": kp,
                "kv": kv,
            }
        actuation = (self._sent.maxlen - 1) * model.opt.timestep
        return {"joints": joints, "command_delay_s": self._delay, "actuation_delay_s": actuation}

    def summary(self) -> str:
        """What the robot achieved: the physics against the wall clock, and each driver's rate."""
        seconds, counts = self._seconds, self.counts
        rates = ", ".join(f"{name} {counts[name] / seconds:.1f} Hz" for name in ("state", "imu", "odom"))
        return (
            f"{counts['steps']} steps in {seconds:.2f} s (real-time factor "
            f"{counts['steps'] * self.model.opt.timestep / seconds:.3f}, {counts['skips']} skips ahead); "
            f"{rates}"
        )


def main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(remove_ros_args(list(argv))[1:])
    try:
        robot = StandInRobot(args)
    except ArgumentError as error:
        parser.error(str(error).strip().splitlines()[0])
    stopping = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopping.set())
    context = rclpy.Context()
    rclpy.init(args=list(argv), context=context, signal_handler_options=SignalHandlerOptions.NO)
    executor = SingleThreadedExecutor(context=context)
    nodes = robot.connect(context, args.namespace)
    for node in nodes:
        executor.add_node(node)
    robot.start()
    print(f"stand-in robot parameters: {json.dumps(robot.parameters())}", flush=True)
    print("stand-in robot ready", flush=True)
    try:
        while not stopping.is_set():
            executor.spin_once(timeout_sec=0.1)
    finally:
        robot.stop()
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        context.try_shutdown()
    print(f"stand-in robot stopped: {robot.summary()}", flush=True)
    if robot.failure is not None:
        print(f"stand-in robot failed: {robot.failure!r}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
