"""A robot's recorded run, read from a rosbag2 bag: its joint states and the commands it was sent.

Any bag with a ``sensor_msgs/JointState`` topic naming the robot's joints and one command topic
works: ``bringup excite`` and ``bringup deploy record:=true`` write them, and so does
``ros2 bag record /joint_states /<controller>/joint_trajectory`` on any robot. Commands are
``trajectory_msgs/JointTrajectory`` (a joint_trajectory_controller) or
``std_msgs/Float64MultiArray`` (a forward position controller, one position per joint in the
robot config's ``joint_names`` order). Times are in seconds since the bag's first message, on
the recorder's clock: commands at their log times (when they were sent or received), joint
states at their header stamps when the robot stamps them on that clock (else their log times).
The latency from sending a command to the controller taking it counts as command delay, which
the fit identifies.

Joint states that cannot be used are skipped and counted, not fatal: a message without the
robot's joints (another driver, a gripper's say, publishing its own joints on the same topic) and
one with a missing, short or non-finite position or velocity of the robot's joints (a few bad
samples must not poison, nor refuse, a fit). A bag none of whose states is usable is refused, as
is one that cannot be read at all: one line, whatever the reader raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from sim_bridge_core.models import RobotModel
from sim_bridge_core.recording.bag import APPLIED_TOPIC, COMMAND_TYPES, JOINT_STATE_TYPE
from sim_bridge_core.sim.trajectory import TrajectoryError, TrajectoryGoal, parse_goal
from sim_bridge_core.simulator.wire import (
    WireError,
    decode_joint_state,
    decode_joint_trajectory,
    decode_multi_array,
)

_NS = 1_000_000_000
INTERFACES = {msgtype: interface for interface, msgtype in COMMAND_TYPES.items()}


class SysidInputError(ValueError):
    """Input system identification cannot use; the message is one line naming the problem."""


@dataclass(frozen=True)
class RecordedRun:
    """One bag: T joint states and C commands, in the robot's joint order, times in seconds."""

    path: Path
    state_topic: str
    command_topic: str
    interface: str  # trajectory | position
    times: np.ndarray  # (T,)
    positions: np.ndarray  # (T, J)
    velocities: np.ndarray  # (T, J)
    command_times: np.ndarray  # (C,)
    commands: tuple[TrajectoryGoal | np.ndarray, ...]  # a goal, or (J,) positions
    rejected: int  # commands the controller would have refused (skipped)
    foreign: int  # joint states without the robot's joints (another publisher; skipped)
    invalid: int  # joint states with missing or non-finite values for the robot's joints (skipped)

    @property
    def duration_s(self) -> float:
        return float(self.times[-1] - self.times[0]) if len(self.times) else 0.0


def _pick(candidates: list[str], wanted: str, what: str, path: Path, hint: str) -> str:
    """``wanted`` if the bag has it, else the bag's only topic of the kind."""
    if wanted in candidates:
        return wanted
    if len(candidates) > 1:
        named = f"no {wanted} and " if wanted else ""
        raise SysidInputError(
            f"bag {path}: {named}several {what} topics ({', '.join(candidates)}): pick one with {hint}"
        )
    return candidates[0]


def _state_times(logged: np.ndarray, stamps: np.ndarray, start_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """When each state was measured, in order, and which rows those are (duplicates dropped).

    A robot stamps its joint states when it reads them, which the bag's log times (when they were
    received, after the transport and any executor delay) only approximate; the stamps are used
    when the states are stamped (a zero stamp at most once: sim time 0) on the recorder's clock
    (within a second of their log times), the log times otherwise.
    """
    measured = (stamps - start_ns) / _NS
    if np.count_nonzero(stamps == 0) <= 1 and np.median(np.abs(logged - measured)) < 1.0:  # sim time 0 is one
        logged = measured
    times, order = np.unique(logged, return_index=True)
    return times, order


def read_run(
    path: str | Path,
    robot: RobotModel,
    state_topic: str = "",
    command_topic: str = "",
    driver_names: Sequence[str] = (),
) -> RecordedRun:
    """The states and commands of the bag at ``path``; SysidInputError with one line if unusable.

    ``driver_names`` are the robot's joints as its drivers named them in the bag (a robot config's
    ``joint_name_map`` or ``joint_prefix``; default: the model's names)."""
    path = Path(path).expanduser()
    if not (path / "metadata.yaml").is_file():
        what = "does not exist" if not path.exists() else "is not a rosbag2 bag (no metadata.yaml)"
        raise SysidInputError(f"bag {path} {what}")
    try:
        with Reader(path) as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            states = [t for t, kind in topics.items() if kind == JOINT_STATE_TYPE]
            commands = [t for t, kind in topics.items() if kind in INTERFACES and t != APPLIED_TOPIC]
            if not states:
                raise SysidInputError(f"bag {path} holds no joint states (no {JOINT_STATE_TYPE} topic)")
            if not commands:
                kinds = " or ".join(INTERFACES)
                raise SysidInputError(f"bag {path} holds no commands (no {kinds} topic)")
            state_topic = _pick(states, state_topic, "joint state", path, "state_topic:=")
            command_topic = _pick(commands, command_topic, "command", path, "command_topic:=")
            connections = [c for c in reader.connections if c.topic in (state_topic, command_topic)]
            messages = [(c.topic, t, bytes(data)) for c, t, data in reader.messages(connections=connections)]
    except SysidInputError:
        raise
    except Exception as exc:  # a damaged file makes the reader raise anything (OverflowError, ...)
        reason = (str(exc).splitlines() or [""])[0]
        raise SysidInputError(f"bag {path} cannot be read: {type(exc).__name__}: {reason}") from exc
    interface = INTERFACES[topics[command_topic]]
    return _decode(
        path, robot, tuple(driver_names) or robot.joint_names, state_topic, command_topic, interface, messages
    )


@dataclass
class _States:
    """The usable joint states of a bag in reading order, and the unusable ones counted."""

    joints: tuple[str, ...]
    times: list[float] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    velocities: list[np.ndarray] = field(default_factory=list)
    foreign: int = 0
    invalid: int = 0
    foreign_names: tuple[str, ...] = ()  # the first foreign message's joints, for the message
    columns: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)  # names -> robot columns

    def add(self, now: float, data: bytes) -> None:
        """Keep the state in ``data`` received at ``now``, or count why it cannot be used."""
        state = decode_joint_state(data)
        index = self.columns.get(state.names)
        if index is None:
            if not set(self.joints) <= set(state.names):
                self.foreign += 1
                self.foreign_names = self.foreign_names or state.names
                return
            index = self.columns[state.names] = np.array([state.names.index(j) for j in self.joints])
        names = len(state.names)
        if state.position.size != names or state.velocity.size != names:
            self.invalid += 1
            return
        position, velocity = state.position[index], state.velocity[index]
        if not (np.isfinite(position).all() and np.isfinite(velocity).all()):
            self.invalid += 1
            return
        self.times.append(now)
        self.stamps.append(state.stamp_ns)
        self.positions.append(position)
        self.velocities.append(velocity)

    def none_usable(self, path: Path, topic: str) -> SysidInputError:
        """Why none of the states on ``topic`` can be used."""
        if self.invalid:
            return SysidInputError(
                f"bag {path}: none of the {self.invalid} states on {topic} with the robot's joints has "
                "a finite position and velocity for each of them"
            )
        if self.foreign:
            missing = [j for j in self.joints if j not in self.foreign_names]
            return SysidInputError(
                f"bag {path}: {topic} lacks the robot's joints {', '.join(missing)} "
                f"(it has {', '.join(self.foreign_names) or 'none'})"
            )
        return SysidInputError(f"bag {path} holds no joint states on {topic}")


def _decode(
    path: Path,
    robot: RobotModel,
    joints: tuple[str, ...],
    state_topic: str,
    command_topic: str,
    interface: str,
    messages: list[tuple[str, int, bytes]],
) -> RecordedRun:
    messages.sort(key=lambda m: m[1])
    if not messages:
        raise SysidInputError(f"bag {path} holds no messages on {state_topic} and {command_topic}")
    start_ns = messages[0][1]
    states = _States(joints)
    command_times: list[float] = []
    commands: list[TrajectoryGoal | np.ndarray] = []
    rejected = 0
    try:
        for topic, time_ns, data in messages:
            now = (time_ns - start_ns) / _NS
            if topic == state_topic:
                states.add(now, data)
                continue
            if not states.times:
                continue  # a command before any state answers nothing we know
            if interface == "position":
                command = _position_command(data, robot, len(joints))
            else:
                command = _trajectory_command(data, robot, joints, start_ns, now)
            if command is None:
                rejected += 1
                continue
            command_times.append(now)
            commands.append(command)
    except WireError as exc:
        raise SysidInputError(f"bag {path}: a malformed message: {exc}") from exc
    if not states.times:
        raise states.none_usable(path, state_topic)
    times, order = _state_times(np.array(states.times), np.array(states.stamps, dtype=np.int64), start_ns)
    if not commands:
        raise SysidInputError(f"bag {path} holds no usable commands on {command_topic} after its first state")
    return RecordedRun(
        path=path,
        state_topic=state_topic,
        command_topic=command_topic,
        interface=interface,
        times=times,
        positions=np.array(states.positions)[order],
        velocities=np.array(states.velocities)[order],
        command_times=np.array(command_times),
        commands=tuple(commands),
        rejected=rejected,
        foreign=states.foreign,
        invalid=states.invalid,
    )


def _position_command(data: bytes, robot: RobotModel, width: int) -> np.ndarray | None:
    """A forward position controller's command, clamped as the robot clamps it; None if it would refuse it."""
    _, values = decode_multi_array(data, np.float64)
    if values.size != width or not np.isfinite(values).all():
        return None
    return robot.clamp(values.reshape(-1).astype(np.float64))


def _trajectory_command(
    data: bytes, robot: RobotModel, joints: tuple[str, ...], start_ns: int, now: float
) -> TrajectoryGoal | None:
    """The goal received at ``now`` (on the bag's time axis); None if the controller would refuse it."""
    message = decode_joint_trajectory(data)
    stamp_s = 0.0  # start when accepted
    if message.stamp_ns:  # on the bag's time axis (0 would read as "now")
        stamp_s = (message.stamp_ns - start_ns) / _NS or 1e-9
    try:
        return parse_goal(
            message.joint_names,
            stamp_s=stamp_s,
            times_s=[p.time_from_start_ns / _NS for p in message.points],
            positions=[p.positions for p in message.points],
            velocities=[p.velocities for p in message.points],
            accelerations=[p.accelerations for p in message.points],
            robot_joints=joints,
            lower=robot.lower,
            upper=robot.upper,
            allow_partial=True,
            now_s=now,
            efforts=[p.effort for p in message.points],
        )
    except TrajectoryError:
        return None
