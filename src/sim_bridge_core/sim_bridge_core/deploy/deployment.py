"""Deployment without ROS: JointState in, safe joint targets out, one control cycle at a time.

The policy node feeds every JointState, IMU reading (tasks that observe it) and goal or velocity
command into ``Deployment`` and asks ``tick`` for the command of each control period. The
observation is built by the task's own builder (the one training used) and actions become targets by
the task's own mapping, through the same ``SafetyFilter`` that training applied, so the policy meets
on the robot what it met in training. The filter stands between the policy and the robot:

* joints are mapped by name (any order, extra joints ignored; a missing joint means no command),
  through the driver's names when they differ from the model's (``driver_names``);
* a state with NaN/inf, mismatched lengths, no velocities or a position more than
  ``STATE_MARGIN`` outside its joint's range is refused and changes nothing (velocities are not
  estimated: finite differences of a real encoder are not what training saw); so is a state or
  IMU reading stamped further ahead of this node's clock than ``max_clock_skew_s`` (clocks that
  are not synchronised would otherwise stop every command until the future arrives);
* targets are clipped to the position limits, then to one control period at the velocity limit
  from the measured position: the step limit wins, so even with limits that exclude the current
  pose no command moves the robot further than that;
* a policy output of the wrong shape or with NaN/inf gives no command and one hold;
* a state or IMU reading older than ``state_timeout_s`` (or ``enable = False``) stops commands,
  after one hold command: the measured position itself; an IMU reading with NaN/inf or without
  a unit orientation quaternion is refused;
* a velocity command older than ``cmd_vel_timeout_s`` (or none yet) is a command to stand, so a
  dead teleop stops a walking robot;
* on enable (and at start when enabled) the robot first ramps from where it is to the home pose
  within its velocity limit, over at least ``home_ramp_s``, then the policy takes over, starting
  where its episodes started in training.

Drivers publish joint states and IMU readings at their own rates (often far above the policy's):
the last readings of each are kept, and each control period the policy answers the newest pair
whose stamps lie within half a period of each other, as training observed both at one instant.

Time is the caller's clock (ROS time: sim time under ``use_sim_time``). A state's age is taken from
its ``header.stamp`` when the robot stamps its states, else from its arrival.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import RobotModel
from sim_bridge_core.tasks import ControlHistory, Task

Policy = Callable[[np.ndarray], np.ndarray]
# A measured position this far outside the joint's range (rad or m) is a sensor fault, not a pose.
STATE_MARGIN = 0.5
NON_FINITE_OUTPUT = "the policy output NaN or inf"
# Readings kept to pair joint states with IMU readings by stamp: a second of a 1 kHz driver would
# be more than enough; these cover the lag of a loaded node at 50 Hz control.
STATE_HISTORY = 64
IMU_HISTORY = 16
# A pose this close to home (rad or m, every joint) needs no ramp to it on enable.
RAMP_TOLERANCE = 0.02
# The ramp hands over to the policy once every joint is this close to home (rad or m), or has
# come no closer by SETTLED (rad or m) for SETTLE_S within SETTLE_BOUND of home: at rest where its
# servos hold it (a robot at rest further away is not moving at all: no power, nobody listening).
HOME_TOLERANCE = 0.05
SETTLED = 0.005
SETTLE_S = 0.5
SETTLE_BOUND = 0.15
# Commands that resume after a hold this long start afresh (ramp to home, a new episode): the
# robot may have fallen or been moved meanwhile.
RESTART_AFTER_S = 1.0
# States arrive but no command went out for this many periods: say why.
IDLE_PERIODS = 10


class StateError(ValueError):
    """A JointState or goal that was refused; the message is the reason for the log."""


@dataclass(frozen=True)
class Command:
    """Joint position targets in the robot's joint order; ``hold`` marks a hold-position command."""

    positions: np.ndarray
    hold: bool = False


class JointNameMap:
    """Maps a JointState's names onto the robot's joints, cached per name list.

    ``joint_names`` are the names on the wire, in the robot's joint order (a driver's names where
    they differ from the model's)."""

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
    (rad/s or m/s, one per joint or one for all) narrow the model's too (a limit never loosens
    what the model gives); a joint left without one is unbounded here (``require_bounded``
    refuses that before deployment).
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
        given = np.broadcast_to(np.asarray(velocity_limits, float), (joints,))
        if not np.all(given > 0):  # inf: no limit from this source (a contract whose model had none)
            raise ConfigError(f"{section}.velocity_limits: must be positive, got {given.tolist()}")
        velocity = np.minimum(velocity, given)
    return SafetyFilter(lower, upper, velocity, period_s, max_position_step)


def tightest(robot: RobotModel, filters: Sequence[SafetyFilter], period_s: float) -> SafetyFilter:
    """One filter as tight as all of ``filters`` together (each already within the model's limits);
    ConfigError when their position ranges leave a joint nowhere to be."""
    lower = np.max([f.lower for f in filters], axis=0)
    upper = np.min([f.upper for f in filters], axis=0)
    empty = np.flatnonzero(lower > upper)
    if empty.size:
        j = empty[0]
        raise ConfigError(
            f"position_limits: the robot's, the node's and the policy's limits leave joint "
            f"'{robot.joint_names[j]}' no position (lower {lower[j]:.4g} > upper {upper[j]:.4g})"
        )
    velocity = np.min([f.velocity_limits for f in filters], axis=0)
    steps = [f.max_position_step for f in filters if f.max_position_step > 0]
    return SafetyFilter(lower, upper, velocity, period_s, min(steps, default=0.0))


def require_bounded(safety: SafetyFilter, robot: RobotModel, section: str = "policy") -> None:
    """ConfigError unless every joint's command step is bounded (nothing else stops a wild command)."""
    unbounded = np.flatnonzero(~np.isfinite(safety.max_step))
    if unbounded.size:
        raise ConfigError(
            f"{section}.velocity_limits: no velocity limit for joint '{robot.joint_names[unbounded[0]]}' "
            "(the model gives none); set velocity_limits (rad/s) in the robot config"
        )


@dataclass(frozen=True)
class DeploySettings:
    """How a deployment keeps time: its period, when inputs expire, and how it arms.

    ``max_clock_skew_s`` is how far ahead of this node's clock a stamp may be (clocks of two
    machines, or a /clock message that trails the state it stamped); ``home_ramp_s`` 0 skips the
    ramp to home on enable."""

    period_s: float
    state_timeout_s: float
    cmd_vel_timeout_s: float = 0.5
    max_clock_skew_s: float = 0.25
    home_ramp_s: float = 0.0


@dataclass(frozen=True)
class _Reading:
    time: float
    values: np.ndarray
    velocities: np.ndarray | None = None


@dataclass(frozen=True)
class HomeRamp:
    """A straight line from the pose at enable to home, slow enough for every joint's limit."""

    start: np.ndarray
    home: np.ndarray
    begin_s: float
    duration_s: float

    def targets(self, time_s: float) -> np.ndarray:
        fraction = np.clip((time_s - self.begin_s) / self.duration_s, 0.0, 1.0)
        return self.start + fraction * (self.home - self.start)

    def done(self, time_s: float) -> bool:
        return time_s >= self.begin_s + self.duration_s


class Deployment:
    """Turns the latest JointState (and IMU), and the goal or velocity command, into one safe
    command per control period."""

    def __init__(
        self,
        robot: RobotModel,
        task: Task,
        policy: Policy,
        safety: SafetyFilter,
        settings: DeploySettings,
        driver_names: Sequence[str] = (),
        enabled: bool = True,
    ) -> None:
        self.robot, self.task, self.policy, self.safety = robot, task, policy, safety
        self.settings = settings
        self.period_s = settings.period_s
        self.names = JointNameMap(driver_names or robot.joint_names)
        self.enabled = enabled
        self.positions: np.ndarray | None = None
        self.velocities = np.zeros(robot.num_joints)
        self.state_time = -np.inf
        self._states: collections.deque[_Reading] = collections.deque(maxlen=STATE_HISTORY)
        self._imus: collections.deque[_Reading] = collections.deque(maxlen=IMU_HISTORY)
        # Velocity commands expire (a dead teleop must stop the robot); goals stay until replaced.
        self.expires = task.input_message == "cmd_vel"
        self.inputs: np.ndarray | None = None if task.input_names else np.zeros(0)
        self.inputs_time = -np.inf
        # sensor_msgs/Imu as the observation takes it (orientation x, y, z, w, angular velocity,
        # linear acceleration), for tasks that observe the IMU.
        self.imu: np.ndarray | None = None if task.uses_imu else np.zeros(10)
        self.imu_time = np.inf if not task.uses_imu else -np.inf
        # What the policy asked for last period (before the safety filter), as in training, and
        # when it began commanding (its clock: the time of that state), as an episode begins.
        self.previous_targets = robot.home.copy()
        self.clock_start: float | None = None
        self.ramp: HomeRamp | None = None
        self._closest = (np.inf, -np.inf)  # on the ramp: the nearest to home so far, and when
        self._ramp_pending = enabled and settings.home_ramp_s > 0
        self._holding = False
        self._next_due = -np.inf
        self._last_command_time = -np.inf

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
        time = self._reading_time("joint_states", arrival_s, stamp_s)
        if time < self.state_time - self.period_s:
            self.on_clock_jump()  # the robot's clock went back: a new timeline, a new schedule
        self.positions, self.velocities = q, qd
        self.state_time = time
        self._states.append(_Reading(time, q, qd))
        if not np.isfinite(self._last_command_time):
            self._last_command_time = time  # idle is counted from the first state

    def _reading_time(self, topic: str, arrival_s: float, stamp_s: float) -> float:
        """The instant a reading is from; StateError for one stamped ahead of this node's clock."""
        if stamp_s <= 0:
            return arrival_s
        ahead = stamp_s - arrival_s
        if ahead > self.settings.max_clock_skew_s:
            raise StateError(
                f"{topic} stamped {ahead:.3f} s ahead of this node's clock (more than max_clock_skew_s "
                f"{self.settings.max_clock_skew_s} s): are the robot's and this computer's clocks "
                "synchronised, and use_sim_time right?"
            )
        return stamp_s

    def on_clock_jump(self) -> None:
        """Time went backwards (this node's clock or the robot's): what was measured on the old
        timeline is dropped (the robot holds until fresh readings come), the schedule restarts, and
        so does the episode (a ramp under way or the policy's clock would live on the old one)."""
        self._restart_episode()
        self._states.clear()
        self._imus.clear()
        self.state_time = -np.inf
        if self.task.uses_imu:
            self.imu_time = -np.inf
        self.inputs_time = -np.inf  # a velocity command from the old timeline has expired
        self._next_due = self._last_command_time = -np.inf

    def on_goal(self, goal: Sequence[float], arrival_s: float) -> np.ndarray:
        """Set the task input from a goal point or velocity command (``Task.input_message``) that
        arrived at ``arrival_s``; returns the input in effect (clamped by the task)."""
        goal = np.asarray(goal, float)
        if not np.isfinite(goal).all():
            raise StateError(f"{self.task.input_message} contains NaN or inf")
        self.inputs = self.task.inputs_from_goal(goal)
        self.inputs_time = arrival_s
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
        time = self._reading_time("imu", arrival_s, stamp_s)
        self.imu = reading
        self.imu_time = time
        self._imus.append(_Reading(time, reading))

    def _restart_episode(self) -> None:
        """Start afresh, as an episode does in training: first the ramp to home (when
        ``home_ramp_s``), then the policy with previous targets at home and its clock at 0."""
        self.previous_targets = self.robot.home.copy()
        self.clock_start = None
        self.ramp, self._ramp_pending = None, self.enabled and self.settings.home_ramp_s > 0

    def set_enabled(self, enabled: bool) -> Command | None:
        """Enable or disable; disabling returns the one hold command to send, at the measured pose
        even after an earlier hold (a stale robot's): the robot may have moved since, and its
        controller must not pull it back there. Enabling after a hold starts afresh
        (``_restart_episode``)."""
        if enabled and not self.enabled:
            self.enabled = True
            self._restart_episode()
            self._last_command_time = -np.inf
        stopping = self.enabled and not enabled
        self.enabled = enabled
        if enabled:
            self._holding = False
            return None
        self.ramp, self._ramp_pending = None, False
        if stopping:
            self._holding = False
        return self._hold()

    def _pair(self) -> tuple[_Reading, np.ndarray] | None:
        """The newest state and the IMU reading within half a period of it (as training observed
        both at one instant); the state alone for tasks without an IMU."""
        if not self._states:
            return None
        if not self.task.uses_imu:
            return self._states[-1], self.imu
        tolerance = 0.5 * self.period_s
        for imu in reversed(self._imus):
            best: _Reading | None = None
            for state in reversed(self._states):
                if state.time < imu.time - tolerance:
                    break
                if abs(state.time - imu.time) <= tolerance and (
                    best is None or abs(state.time - imu.time) < abs(best.time - imu.time)
                ):
                    best = state
            if best is not None:
                return best, imu.values
        return None

    @property
    def due(self) -> bool:
        """Whether a command is due: once per control period, on a fixed schedule (a state up to a
        tenth of a period early counts, for stamp jitter), answering the newest state that has a
        reading of every sensor the policy observes from its instant."""
        if not self._states or self._states[-1].time < self._next_due - 0.1 * self.period_s:
            return False  # cheap: no state is due, so no pair can be (drivers at 1 kHz call this)
        pair = self._pair()
        return pair is not None and pair[0].time >= self._next_due - 0.1 * self.period_s

    def idle_reason(self) -> str:
        """Why states keep arriving and no command has been due for ``IDLE_PERIODS`` periods ('' if
        commands flow, or nothing arrives): a deployment must never stall in silence."""
        if not self.enabled or self.positions is None:
            return ""
        if self.state_time - self._last_command_time < IDLE_PERIODS * self.period_s:
            return ""
        lag = self.state_time - self.imu_time
        if self.imu is not None and np.isfinite(lag) and lag > 0.5 * self.period_s:
            return (
                f"no command for {IDLE_PERIODS}+ periods: the latest imu is {lag * 1e3:.0f} ms older than "
                "joint_states and no reading lies within half a period of a state (are both stamped "
                "on one clock?)"
            )
        if self.imu is None:
            return f"no command for {IDLE_PERIODS}+ periods: no imu received yet"
        return f"no command for {IDLE_PERIODS}+ periods although joint_states arrive"

    def stale(self, now_s: float) -> bool:
        """Whether the last state (or IMU reading, for tasks that observe it) is older than
        ``state_timeout_s`` (or none came), or from further ahead than ``max_clock_skew_s``: this
        node's clock stepped back (a system clock that no jump callback reports), and it must not
        stay fresh until the clock catches up."""
        age = now_s - min(self.state_time, self.imu_time)
        return age > self.settings.state_timeout_s or age < -self.settings.max_clock_skew_s

    @property
    def ramp_pending(self) -> bool:
        """Whether the next command starts the ramp to home (enabled, and not yet begun)."""
        return self._ramp_pending

    def tick(self, now_s: float) -> tuple[Command | None, str]:
        """The command for this control period, or None and the reason there is none (a command
        may come with a notice, e.g. that an expired velocity command made it stand)."""
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
            return self._hold(), f"{topic} older than {self.settings.state_timeout_s} s{hint}"
        pair = self._pair()
        if pair is None:
            return None, "no imu reading within half a period of a joint state"
        state, imu = pair
        if self._holding and state.time - self._last_command_time > RESTART_AFTER_S:
            self._restart_episode()  # back after a long hold: the robot may have fallen meanwhile
        if self._ramp_pending:
            self._ramp_pending = False
            self.ramp = self._home_ramp(state)
            self._closest = (np.inf, state.time)
        if self.ramp is not None:
            return self._ramp_command(state)
        inputs, notice = self._inputs_now(now_s)
        if inputs is None:
            return None, notice
        if self.clock_start is None:
            self.clock_start = state.time
        observation = self.task.observation(
            state.values[None],
            state.velocities[None],
            inputs[None],
            imu=imu[None],
            history=ControlHistory(self.previous_targets[None], np.array([state.time - self.clock_start])),
        )
        actions = np.asarray(self.policy(observation), dtype=np.float64)
        # A bad output is this period's answer too: the network runs once a period, not on every
        # state a fast driver sends until it behaves.
        if actions.shape != (1, self.robot.num_joints):
            self._advance_schedule(state.time, commanded=False)
            return self._hold(), (
                f"the policy output shape {actions.shape}, not (1, {self.robot.num_joints}): holding"
            )
        if not np.isfinite(actions).all():
            self._advance_schedule(state.time, commanded=False)
            return self._hold(), NON_FINITE_OUTPUT
        self._advance_schedule(state.time)
        targets = self.task.action_to_targets(actions)[0]
        self.previous_targets = targets
        # The step limit is around the newest measurement (a paired state may be a little older).
        return Command(self.safety(targets, self.positions)), notice

    def _inputs_now(self, now_s: float) -> tuple[np.ndarray | None, str]:
        """The task inputs in effect, and a notice: a velocity command older than
        ``cmd_vel_timeout_s`` (or none yet) is a command to stand."""
        if self.expires and now_s - self.inputs_time > self.settings.cmd_vel_timeout_s:
            stand = self.task.inputs_from_goal(np.zeros(3))
            timeout = self.settings.cmd_vel_timeout_s
            why = "none received yet" if self.inputs is None else f"the last is older than {timeout} s"
            return stand, f"cmd_vel: {why}; standing"
        if self.inputs is None:
            return None, f"no {self.task.input_message} received yet"
        return self.inputs, ""

    def _home_ramp(self, state: _Reading) -> HomeRamp | None:
        """The ramp from the measured pose to home, or None when the robot is there already."""
        distance = np.abs(self.robot.home - state.values)
        if distance.max() < RAMP_TOLERANCE:
            return None
        slowest = float(np.max(distance / self.safety.velocity_limits))
        duration = max(self.settings.home_ramp_s, slowest)
        return HomeRamp(state.values.copy(), self.robot.home.copy(), state.time, duration)

    def _ramp_command(self, state: _Reading) -> tuple[Command, str]:
        """This period's point on the ramp (one period ahead, as a policy's target is), and a notice
        while the robot lags behind it. The policy takes over once the ramp has run and the robot is
        home (within ``HOME_TOLERANCE``) or has come to rest (no ``SETTLED`` nearer home for
        ``SETTLE_S``: a servo's steady error under load, as training's episodes also began): servos
        still trailing their targets must not hand the policy a pose it never started from."""
        ahead = state.time + self.period_s
        self._advance_schedule(state.time)
        targets = self.ramp.targets(ahead)
        away = float(np.max(np.abs(self.positions - self.robot.home)))
        if away < self._closest[0] - SETTLED:
            self._closest = (away, state.time)
        settled = away < SETTLE_BOUND and state.time - self._closest[1] > SETTLE_S  # at rest, near home
        notice = ""
        if self.ramp.done(ahead):
            if away < HOME_TOLERANCE or settled:
                self.ramp = None
            elif ahead > self.ramp.begin_s + 2 * self.ramp.duration_s:  # closing in, or not moving
                notice = f"ramp to home: the robot is still {away:.3f} rad away; holding home"
        return Command(self.safety(targets, self.positions)), notice

    def _advance_schedule(self, time_s: float, commanded: bool = True) -> None:
        """The schedule moves on by a period (one left behind, no states for a while, restarts
        here); ``commanded``: a command went out, so a hold may follow again."""
        if commanded:
            self._holding = False
            self._last_command_time = time_s
        self._next_due += self.period_s
        if self._next_due <= time_s:
            self._next_due = time_s + self.period_s

    def _hold(self) -> Command | None:
        """Hold where the robot is, once; nothing more until commands resume."""
        if self._holding or self.positions is None:
            return None
        self._holding = True
        return Command(self.positions.copy(), hold=True)

    def fail(self) -> Command | None:
        """Something in the deploy path failed: disable, returning the hold to send; only an
        ``enable`` resumes. A failure while disabled sends nothing (no command to a disarmed robot)."""
        return self.set_enabled(False) if self.enabled else None
