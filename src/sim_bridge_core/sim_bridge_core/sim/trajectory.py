"""Follow trajectory_msgs/JointTrajectory goals the way joint_trajectory_controller (Jazzy) does.

The simulator node stands in for a ros2_control robot running joint_trajectory_controller,
so clients that already drive real robots work unchanged.  The node decodes each message
into plain values and calls :func:`parse_goal`, which validates it with the controller's
rules and maps it onto the robot's joint order; a :class:`TrajectoryFollower` per world
then turns the accepted goal into a position target at every control step.

Interpolation follows the controller's spline, segment by segment: linear unless both ends
of a segment carry velocities, cubic when they do, quintic when both carry accelerations too
(so points may mix having and lacking velocities, as the controller allows).  The stretch
from the state at acceptance to the first point uses the same rule, but since the measured
state has no accelerations it is at most cubic (as in the controller when the hardware
exports position and velocity states only).  The follower is sampled at each controller
update one update period ahead, as the controller writes its next command.

Effort fields are refused with the reason, as the controller does without an effort command
interface: the simulated controller has position command interfaces only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# joint_trajectory_controller's tolerance for "zero velocity at the end": float's epsilon.
END_VELOCITY_TOLERANCE = float(np.finfo(np.float32).eps)


class TrajectoryError(ValueError):
    """A trajectory message that is rejected; the message is meant for a log line."""


@dataclass(frozen=True)
class TrajectoryGoal:
    """A validated trajectory in the robot's joint order.

    ``joints`` indexes the goal's K joints into the robot's J joints; ``positions``,
    ``velocities`` and ``accelerations`` are (N, K) with N points at ``times_s`` seconds
    after ``start_s`` (sim time; None for a zero stamp, resolved when the goal is accepted).
    """

    joints: np.ndarray
    start_s: float | None  # None: a zero stamp, the trajectory starts when it is accepted
    times_s: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None  # rows of points without velocities are NaN
    accelerations: np.ndarray | None  # likewise
    clamped: bool


def _point_array(values: Sequence[float], what: str, index: int, width: int) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size != width:
        raise TrajectoryError(f"point {index}: expected {width} {what}, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise TrajectoryError(f"point {index}: {what} contain NaN or inf")
    return array


def _optional_field(
    per_point: Sequence[Sequence[float]] | None, what: str, width: int, num_points: int
) -> np.ndarray | None:
    """(N, K) array with NaN rows for points that leave the field empty; None when all do."""
    if per_point is None:
        return None
    if len(per_point) != num_points:
        raise TrajectoryError(f"{what} given for {len(per_point)} points, expected {num_points}")
    if not any(len(values) for values in per_point):
        return None
    missing = np.full(width, np.nan)
    return np.stack([_point_array(v, what, i, width) if len(v) else missing for i, v in enumerate(per_point)])


def parse_goal(
    joint_names: Sequence[str],
    *,
    stamp_s: float,
    times_s: Sequence[float],
    positions: Sequence[Sequence[float]],
    velocities: Sequence[Sequence[float]] | None,
    accelerations: Sequence[Sequence[float]] | None,
    robot_joints: Sequence[str],
    lower: np.ndarray,
    upper: np.ndarray,
    allow_partial: bool,
    now_s: float,
    allow_nonzero_end_velocity: bool = False,
    efforts: Sequence[Sequence[float]] | None = None,
    optional_joints: Sequence[str] = (),
    passive_joints: Sequence[str] = (),
) -> TrajectoryGoal:
    """Validate a decoded JointTrajectory and map it onto ``robot_joints``.

    ``times_s``, ``positions``, ``velocities``, ``accelerations`` and ``efforts`` hold one
    entry per point (a point's velocities/accelerations may be empty; efforts must be).  A
    zero ``stamp_s`` starts the trajectory when it is accepted; any other must not end before
    ``now_s``.  Positions outside ``[lower, upper]`` are clamped and the goal says so.
    ``allow_nonzero_end_velocity`` mirrors the controller parameter
    ``allow_nonzero_velocity_at_trajectory_end``, false by default on Jazzy. Names in
    ``optional_joints`` (also in ``robot_joints``) may be commanded but never have to be, and a
    goal of those alone is whole (as to a gripper's own controller); naming one of
    ``passive_joints`` is refused with the reason.

    Each rule is a check of its own, run in this order: a goal that breaks several is refused
    for the first.
    """
    _check_not_empty(joint_names, positions)
    _check_no_efforts(efforts)
    _check_time_per_point(times_s, positions)
    joints = _joint_columns(joint_names, robot_joints, optional_joints, passive_joints)
    _check_all_joints(joint_names, robot_joints, allow_partial, optional_joints)
    width, num_points = len(joints), len(positions)
    pos = np.stack([_point_array(p, "positions", i, width) for i, p in enumerate(positions)])
    vel = _optional_field(velocities, "velocities", width, num_points)
    acc = _optional_field(accelerations, "accelerations", width, num_points)
    times = _times(times_s)
    start_s = _start(stamp_s, float(times[-1]), now_s)
    if not allow_nonzero_end_velocity:
        _check_end_at_rest(vel, joint_names)

    lo = np.asarray(lower, dtype=float)[joints]
    hi = np.asarray(upper, dtype=float)[joints]
    clipped = np.clip(pos, lo, hi)
    return TrajectoryGoal(
        joints=joints,
        start_s=start_s,
        times_s=times,
        positions=clipped,
        velocities=vel,
        accelerations=acc,
        clamped=bool(np.any(clipped != pos)),
    )


def _check_not_empty(joint_names: Sequence[str], positions: Sequence[Sequence[float]]) -> None:
    if len(joint_names) == 0:
        raise TrajectoryError("empty joint_names")
    if len(positions) == 0:
        raise TrajectoryError("trajectory has no points")


def _check_no_efforts(efforts: Sequence[Sequence[float]] | None) -> None:
    """Effort fields need an effort command interface, which the simulated controller lacks."""
    if efforts is None:
        return
    with_effort = [i for i, values in enumerate(efforts) if len(values)]
    if with_effort:
        raise TrajectoryError(
            f"point {with_effort[0]}: effort given, but the controller has no effort command interface"
        )


def _check_time_per_point(times_s: Sequence[float], positions: Sequence[Sequence[float]]) -> None:
    if len(times_s) != len(positions):
        raise TrajectoryError(f"{len(times_s)} time_from_start values for {len(positions)} points")


def _joint_columns(
    joint_names: Sequence[str],
    robot_joints: Sequence[str],
    optional_joints: Sequence[str],
    passive_joints: Sequence[str],
) -> np.ndarray:
    """The robot joint index of each named joint; each must be a robot joint named once, not a passive one."""
    robot_index = {name: i for i, name in enumerate(robot_joints)}
    seen: set[str] = set()
    for name in joint_names:
        if name in passive_joints:
            commandable = ", ".join(optional_joints) or "none"
            raise TrajectoryError(
                f"joint '{name}' is passive: no actuator drives it (commandable besides the controlled "
                f"joints: {commandable})"
            )
        if name not in robot_index:
            raise TrajectoryError(f"unknown joint '{name}'")
        if name in seen:
            raise TrajectoryError(f"duplicate joint '{name}'")
        seen.add(name)
    return np.array([robot_index[name] for name in joint_names], dtype=int)


def _check_all_joints(
    joint_names: Sequence[str],
    robot_joints: Sequence[str],
    allow_partial: bool,
    optional_joints: Sequence[str],
) -> None:
    named = set(joint_names)
    missing = [name for name in robot_joints if name not in named and name not in optional_joints]
    # Only optional axes named (a gripper alone): as to a controller of its own, nothing is missing.
    if missing and not allow_partial and not named <= set(optional_joints):
        raise TrajectoryError(
            f"goal lacks joints {', '.join(repr(n) for n in missing)} and allow_partial_joints_goal is false"
        )


def _times(times_s: Sequence[float]) -> np.ndarray:
    """The points' time_from_start, each finite, not negative and later than the one before."""
    times = np.asarray(times_s, dtype=float).reshape(-1)
    for i, t in enumerate(times):
        if not math.isfinite(t) or t < 0.0:
            raise TrajectoryError(f"point {i}: time_from_start {t} is negative or not finite")
        if i > 0 and t <= times[i - 1]:
            raise TrajectoryError(f"point {i}: time_from_start not strictly increasing")
    return times


def _start(stamp_s: float, duration_s: float, now_s: float) -> float | None:
    """When a trajectory of ``duration_s`` starts (None: a zero stamp, when accepted); it must not have
    ended by ``now_s``."""
    if not math.isfinite(stamp_s):
        raise TrajectoryError(f"header stamp {stamp_s} is not finite")
    if stamp_s == 0.0:
        return None
    start_s = float(stamp_s)
    if start_s + duration_s < now_s:
        end_s = start_s + duration_s
        raise TrajectoryError(f"trajectory ends in the past (at {end_s:.6f} s, now is {now_s:.6f} s)")
    return start_s


def _check_end_at_rest(velocities: np.ndarray | None, joint_names: Sequence[str]) -> None:
    # The controller compares with float epsilon, not exactly.
    moving = np.flatnonzero(np.abs(velocities[-1]) > END_VELOCITY_TOLERANCE) if velocities is not None else []
    if len(moving):
        raise TrajectoryError(
            f"last point has non-zero velocity for joint '{joint_names[int(moving[0])]}' "
            "and allow_nonzero_velocity_at_trajectory_end is false"
        )


def _given(values: np.ndarray | None) -> bool:
    """Whether a point carries this derivative (a point without it has a NaN row)."""
    return values is not None and not np.isnan(values[0])


def _interpolate(
    duration: float,
    elapsed: float,
    p0: np.ndarray,
    p1: np.ndarray,
    v0: np.ndarray | None,
    v1: np.ndarray | None,
    a0: np.ndarray | None,
    a1: np.ndarray | None,
) -> np.ndarray:
    """Position ``elapsed`` seconds into a segment of ``duration`` seconds (0 < elapsed < duration).

    The polynomial is written as the Taylor expansion at the start plus a correction in
    powers of s = elapsed / duration whose coefficients make the end conditions hold.
    """
    s = elapsed / duration
    if not _given(v0) or not _given(v1):
        return p0 + (p1 - p0) * s
    if not _given(a0) or not _given(a1):
        d = p1 - p0 - v0 * duration
        e = (v1 - v0) * duration
        return p0 + v0 * elapsed + (3.0 * d - e) * s**2 + (e - 2.0 * d) * s**3
    d = p1 - p0 - v0 * duration - 0.5 * a0 * duration**2
    e = (v1 - v0 - a0 * duration) * duration
    f = (a1 - a0) * duration**2
    return (
        p0
        + v0 * elapsed
        + 0.5 * a0 * elapsed**2
        + (10.0 * d - 4.0 * e + 0.5 * f) * s**3
        + (-15.0 * d + 7.0 * e - f) * s**4
        + (6.0 * d - 3.0 * e + 0.5 * f) * s**5
    )


class TrajectoryFollower:
    """The trajectory one world is following, sampled into joint position targets."""

    def __init__(self) -> None:
        self._goal: TrajectoryGoal | None = None
        self._accepted_s = 0.0
        self._base = np.zeros(0)
        self._start_pos = np.zeros(0)
        self._start_vel = np.zeros(0)

    @property
    def active(self) -> bool:
        """Whether a goal is set (it stays set, holding its last point, until replaced or cleared)."""
        return self._goal is not None

    @property
    def goal(self) -> TrajectoryGoal | None:
        return self._goal

    def start(
        self,
        goal: TrajectoryGoal,
        now_s: float,
        current_targets: np.ndarray,
        current_positions: np.ndarray,
        current_velocities: np.ndarray,
    ) -> None:
        """Follow ``goal`` from now on, replacing any previous goal.

        Joints outside a partial goal keep ``current_targets``.  Goal joints move from
        ``current_positions``/``current_velocities`` to the first point, as the controller
        does from the measured state; pass the targets as positions to start from the
        command instead (the controller's ``open_loop_control``).
        """
        if goal.start_s is None:
            goal = dataclasses.replace(goal, start_s=float(now_s))
        self._goal = goal
        self._accepted_s = float(now_s)
        self._base = np.array(current_targets, dtype=float)
        self._start_pos = np.asarray(current_positions, dtype=float)[goal.joints]
        self._start_vel = np.asarray(current_velocities, dtype=float)[goal.joints]

    def clear(self) -> None:
        """Drop the goal (e.g. when the world is reset)."""
        self._goal = None

    def sample(self, now_s: float) -> np.ndarray:
        """Position targets (J,) for all robot joints at sim time ``now_s``."""
        goal = self._goal
        if goal is None:
            raise RuntimeError("TrajectoryFollower.sample called without a goal")
        targets = self._base.copy()
        targets[goal.joints] = self._goal_positions(goal, float(now_s))
        return targets

    def setpoints(self, times_s: np.ndarray) -> np.ndarray:
        """(U, J) targets at the controller updates' sample times ``times_s`` (U,)."""
        return np.stack([self.sample(t) for t in times_s])

    def _goal_positions(self, goal: TrajectoryGoal, t: float) -> np.ndarray:
        knots = goal.start_s + goal.times_s
        vel, acc = goal.velocities, goal.accelerations
        if t < knots[0]:
            if t <= self._accepted_s:
                return self._start_pos
            first_vel = None if vel is None else vel[0]
            start_vel = None if vel is None else self._start_vel
            return _interpolate(
                knots[0] - self._accepted_s,
                t - self._accepted_s,
                self._start_pos,
                goal.positions[0],
                start_vel,
                first_vel,
                None,
                None,
            )
        i = int(np.searchsorted(knots, t, side="right")) - 1
        if i >= len(knots) - 1:
            return goal.positions[-1]
        return _interpolate(
            knots[i + 1] - knots[i],
            t - knots[i],
            goal.positions[i],
            goal.positions[i + 1],
            None if vel is None else vel[i],
            None if vel is None else vel[i + 1],
            None if acc is None else acc[i],
            None if acc is None else acc[i + 1],
        )
