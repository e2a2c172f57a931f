"""Deployment without ROS: JointState in, safe joint targets out, one control cycle at a time.

The policy node feeds every JointState, IMU reading (tasks that observe it) and goal or velocity
command into ``Deployment`` and asks ``tick`` for the command of each control period. The
observation is built by the task's own builder (the one training used) and actions become targets by
the task's own mapping, through the same ``SafetyFilter`` that training applied, so the policy meets
on the robot what it met in training. The filter stands between the policy and the robot:

* joints are mapped by name (any order, extra joints ignored; a missing joint means no command);
* a state with NaN/inf, mismatched lengths, no velocities or a position more than
  ``STATE_MARGIN`` outside its joint's range is refused and changes nothing (velocities are not
  estimated: finite differences of a real encoder are not what training saw);
* targets are clipped to the position limits, then to one control period at the velocity limit
  from the measured position: the step limit wins, so even with limits that exclude the current
  pose no command moves the robot further than that;
* a non-finite policy output gives no command and one hold;
* a state or IMU reading older than ``state_timeout_s`` (or ``enable = False``) stops commands,
  after one hold command: the measured position itself; an IMU reading with NaN/inf or without
  a unit orientation quaternion is refused.

Time is the caller's clock (ROS time: sim time under ``use_sim_time``). A state's age is taken from
its ``header.stamp`` when the robot stamps its states, else from its arrival.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import RobotModel
from sim_bridge_core.tasks import PolicyMemory, Task

Policy = Callable[[np.ndarray], np.ndarray]
# A measured position this far outside the joint's range (rad or m) is a sensor fault, not a pose.
STATE_MARGIN = 0.5
NON_FINITE_OUTPUT = "the policy output NaN or inf"


class StateError(ValueError):
    """A JointState or goal that was refused; the message is the reason for the log."""


@dataclass(frozen=True)
class Command:
    """Joint position targets in the robot's joint order; ``hold`` marks a hold-position command."""

    positions: np.ndarray
    hold: bool = False


class JointNameMap:
    """Maps a JointState's names onto the robot's joints, cached per name list."""

    def __init__(self, joint_names: Sequence[str]) -> None:
        self.joint_names = tuple(joint_names)
        self._cache: dict[tuple[str, ...], np.ndarray] = {}

    def indices(self, names: Sequence[str]) -> np.ndarray:
        """Index into ``names`` of each robot joint; StateError if one is missing or named twice."""
        key = tuple(names)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if len(set(key)) != len(key):
            raise StateError("joint_states names a joint twice")
        where = {name: i for i, name in enumerate(key)}
        missing = [name for name in self.joint_names if name not in where]
        if missing:
            raise StateError(f"joint_states lacks required joints {', '.join(missing)}")
        indices = np.array([where[name] for name in self.joint_names])
        if len(self._cache) < 16:
            self._cache[key] = indices
        return indices


class SafetyFilter:
    """Position limits, and a step limit per control period around the measured position that wins.

    ``max_step`` (J,) is what the joints may move in one period of ``period_s``: the velocity
    limit times the period, capped by ``max_position_step`` when that is positive.
    """

    def __init__(
        self,
        lower: np.ndarray,
        upper: np.ndarray,
        velocity_limits: np.ndarray,
        period_s: float,
        max_position_step: float = 0.0,
    ) -> None:
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)
        self.velocity_limits = np.asarray(velocity_limits, float)
        self.max_position_step = float(max_position_step)
        self.max_step = self.velocity_limits * period_s
        if self.max_position_step > 0:
            self.max_step = np.minimum(self.max_step, self.max_position_step)

    def __call__(self, targets: np.ndarray, measured: np.ndarray) -> np.ndarray:
        """(..., J) targets within the limits and within one step of ``measured``."""
        within = np.clip(targets, self.lower, self.upper)
        return np.clip(within, measured - self.max_step, measured + self.max_step)


def safety_filter(
    robot: RobotModel,
    period_s: float,
    position_limits: Sequence[float] = (),
    velocity_limits: Sequence[float] = (),
    max_position_step: float = 0.0,
    section: str = "policy",
) -> SafetyFilter:
    """The filter for ``robot`` commanded every ``period_s``; ConfigError naming the bad key.

    ``position_limits`` (lower, upper per joint, flattened) narrow the model's; ``velocity_limits``
    (rad/s or m/s, one per joint or one for all) replace the model's; a joint left without one
    is unbounded here (``require_bounded`` refuses that before deployment).
    """
    joints = robot.num_joints
    lower, upper = robot.lower, robot.upper
    if len(position_limits):
        limits = np.asarray(position_limits, float)
        if limits.size != 2 * joints:
            raise ConfigError(
                f"{section}.position_limits: needs lower, upper for each of the {joints} joints, "
                f"got {limits.size} values"
            )
        limits = limits.reshape(joints, 2)
        swapped = np.flatnonzero(limits[:, 0] > limits[:, 1])
        if swapped.size:
            name = robot.joint_names[swapped[0]]
            raise ConfigError(
                f"{section}.position_limits: lower {limits[swapped[0], 0]} > upper {limits[swapped[0], 1]} "
                f"for joint '{name}'"
            )
        lower, upper = np.maximum(lower, limits[:, 0]), np.minimum(upper, limits[:, 1])
        empty = np.flatnonzero(lower > upper)
        if empty.size:
            raise ConfigError(
                f"{section}.position_limits: joint '{robot.joint_names[empty[0]]}' has no position left "
                f"inside the model's range [{robot.lower[empty[0]]}, {robot.upper[empty[0]]}]"
            )
    velocity = robot.velocity_limits
    if len(velocity_limits):
        if len(velocity_limits) not in (1, joints):
            raise ConfigError(
                f"{section}.velocity_limits: needs one value or one per joint ({joints}), "
                f"got {len(velocity_limits)}"
            )
        velocity = np.broadcast_to(np.asarray(velocity_limits, float), (joints,))
        if not (np.all(velocity > 0) and np.all(np.isfinite(velocity))):
            raise ConfigError(f"{section}.velocity_limits: must be positive and finite, got {list(velocity)}")
    return SafetyFilter(lower, upper, velocity, period_s, max_position_step)


def require_bounded(safety: SafetyFilter, robot: RobotModel, section: str = "policy") -> None:
    """ConfigError unless every joint's command step is bounded (nothing else stops a wild command)."""
    unbounded = np.flatnonzero(~np.isfinite(safety.max_step))
    if unbounded.size:
        raise ConfigError(
            f"{section}.velocity_limits: no velocity limit for joint '{robot.joint_names[unbounded[0]]}' "
            "(the model gives none); set velocity_limits (rad/s) in the robot config"
        )


class Deployment:
    """Turns the latest JointState (and IMU), and the goal or velocity command, into one safe
    command per control period."""

    def __init__(
        self,
        robot: RobotModel,
        task: Task,
        policy: Policy,
        safety: SafetyFilter,
        period_s: float,
        state_timeout_s: float,
    ) -> None:
        self.robot, self.task, self.policy, self.safety = robot, task, policy, safety
        self.period_s = period_s
        self.names = JointNameMap(robot.joint_names)
        self.state_timeout_s = state_timeout_s
        self.enabled = True
        self.positions: np.ndarray | None = None
        self.velocities = np.zeros(robot.num_joints)
        self.state_time = -np.inf
        self.inputs: np.ndarray | None = None if task.input_names else np.zeros(0)
        # sensor_msgs/Imu as the observation takes it (orientation x, y, z, w, angular velocity,
        # linear acceleration), for tasks that observe the IMU.
        self.imu: np.ndarray | None = None if task.uses_imu else np.zeros(10)
        self.imu_time = np.inf if not task.uses_imu else -np.inf
        # What the policy asked for last period (before the safety filter), as in training, and
        # when it began commanding (its clock: the time of that state), as an episode begins.
        self.previous_targets = robot.home.copy()
        self.clock_start: float | None = None
        self._holding = False
        self._next_due = -np.inf

    def on_joint_state(
        self,
        arrival_s: float,
        stamp_s: float,
        names: Sequence[str],
        positions: Sequence[float],
        velocities: Sequence[float],
    ) -> None:
        """Take a measurement (robot order is found by name); StateError leaves the last one in place.

        ``stamp_s`` is the state's header stamp (0: unstamped, its arrival time counts).
        """
        positions = np.asarray(positions, float)
        velocities = np.asarray(velocities, float)
        if len(velocities) == 0 and len(names):
            raise StateError("joint_states has no velocities; the policy observes joint velocities")
        if len(positions) != len(names) or len(velocities) != len(names):
            raise StateError(
                f"joint_states has {len(names)} names, {len(positions)} positions, "
                f"{len(velocities)} velocities"
            )
        index = self.names.indices(names)
        q, qd = positions[index], velocities[index]
        if not (np.isfinite(q).all() and np.isfinite(qd).all()):
            raise StateError("joint_states contains NaN or inf for a required joint")
        outside = np.flatnonzero(
            (q < self.robot.lower - STATE_MARGIN) | (q > self.robot.upper + STATE_MARGIN)
        )
        if outside.size:
            j = outside[0]
            raise StateError(
                f"joint_states puts '{self.robot.joint_names[j]}' at {q[j]:.4g}, more than {STATE_MARGIN} "
                f"outside its range [{self.robot.lower[j]:.4g}, {self.robot.upper[j]:.4g}]"
            )
        self.positions, self.velocities = q, qd
        self.state_time = stamp_s if stamp_s > 0 else arrival_s

    @property
    def due(self) -> bool:
        """Whether the latest state should be answered: once per control period, on a fixed schedule
        (a state up to a tenth of a period early counts, for stamp jitter), and for a task that
        observes the IMU once a reading as recent as the state has come too (within half a period:
        the policy sees the IMU of the state's instant, as in training, whichever arrives last)."""
        imu_ready = self.imu_time >= self.state_time - 0.5 * self.period_s
        return imu_ready and self.state_time >= self._next_due - 0.1 * self.period_s

    def on_goal(self, goal: Sequence[float]) -> np.ndarray:
        """Set the task input from a goal point or velocity command (``Task.input_message``);
        returns the input in effect (clamped by the task)."""
        goal = np.asarray(goal, float)
        if not np.isfinite(goal).all():
            raise StateError(f"{self.task.input_message} contains NaN or inf")
        self.inputs = self.task.inputs_from_goal(goal)
        return self.inputs

    def on_imu(
        self,
        arrival_s: float,
        stamp_s: float,
        orientation: Sequence[float],
        angular_velocity: Sequence[float],
        linear_acceleration: Sequence[float],
    ) -> None:
        """Take an IMU reading (orientation x, y, z, w); StateError leaves the last one in place."""
        reading = np.concatenate([orientation, angular_velocity, linear_acceleration]).astype(float)
        if reading.shape != (10,) or not np.isfinite(reading).all():
            raise StateError("imu contains NaN or inf")
        if not 0.5 < np.linalg.norm(reading[:4]) < 1.5:
            raise StateError("imu orientation is not a unit quaternion (no orientation estimate?)")
        self.imu = reading
        self.imu_time = stamp_s if stamp_s > 0 else arrival_s

    def set_enabled(self, enabled: bool) -> Command | None:
        """Enable or disable; disabling returns the one hold command to send. Enabling after a
        hold starts afresh, as an episode does in training: previous targets at home, clock at 0."""
        if enabled and not self.enabled:
            self.previous_targets = self.robot.home.copy()
            self.clock_start = None
        self.enabled = enabled
        if enabled:
            self._holding = False
            return None
        return self._hold()

    def waiting_for_imu(self) -> str:
        """Why the latest state waits for longer than the IMU's usual arrival just after it ('' if it
        does not): readings that keep trailing the states would otherwise stall it in silence."""
        lag = self.state_time - self.imu_time
        if not (np.isfinite(lag) and lag > 1.5 * self.period_s):
            return ""
        return (
            f"the latest imu is {lag * 1e3:.0f} ms older than joint_states; waiting for a reading of "
            "the state's instant (are both stamped on one clock?)"
        )

    def stale(self, now_s: float) -> bool:
        """Whether the last state (or IMU reading, for tasks that observe it) is older than
        ``state_timeout_s`` (or none came)."""
        return now_s - min(self.state_time, self.imu_time) > self.state_timeout_s

    def tick(self, now_s: float) -> tuple[Command | None, str]:
        """The command for this control period, or None and the reason there is none."""
        if not self.enabled:
            return None, "disabled"
        if self.positions is None:
            return None, "no joint_states received yet"
        if self.imu is None:
            return None, "no imu received yet"
        if self.stale(now_s):
            topic = "joint_states" if self.state_time <= self.imu_time else "imu"
            age = now_s - min(self.state_time, self.imu_time)
            hint = (
                " (stamped on another clock? use_sim_time must match the robot's)" if abs(age) > 3600 else ""
            )
            return self._hold(), f"{topic} older than {self.state_timeout_s} s{hint}"
        if self.inputs is None:
            return None, f"no {self.task.input_message} received yet"
        if self.clock_start is None:
            self.clock_start = self.state_time
        observation = self.task.observation(
            self.positions[None],
            self.velocities[None],
            self.inputs[None],
            imu=self.imu[None],
            memory=PolicyMemory(self.previous_targets[None], np.array([self.state_time - self.clock_start])),
        )
        actions = np.asarray(self.policy(observation), dtype=np.float64)
        if not np.isfinite(actions).all():
            return self._hold(), NON_FINITE_OUTPUT
        self._holding = False
        # The schedule moves on by a period; one left behind (no states for a while) restarts here.
        self._next_due += self.period_s
        if self._next_due <= self.state_time:
            self._next_due = self.state_time + self.period_s
        targets = self.task.action_to_targets(actions)[0]
        self.previous_targets = targets
        return Command(self.safety(targets, self.positions)), ""

    def _hold(self) -> Command | None:
        """Hold where the robot is, once; nothing more until commands resume."""
        if self._holding or self.positions is None:
            return None
        self._holding = True
        return Command(self.positions.copy(), hold=True)
