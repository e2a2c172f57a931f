"""A safe excitation of every commandable joint, for system identification (``bringup excite``).

Each joint follows a multi-sine about the pose the robot is in when the excitation starts: a few
sines at frequencies no other joint uses (so every joint's response can be told apart, while all
joints move together and couple through the mass matrix as they do in use), with Schroeder
phases (a low peak for the power) and amplitudes falling as 1/f (every sine asks for the same
speed). A smooth window (quintic smoothstep) fades the motion in and out, and rests at the start
pose come before and after, so the robot starts and ends at rest there with zero velocity and
acceleration.

Each joint's amplitude is the largest that keeps it inside its position limits (less a margin),
below a fraction of its velocity limit, below the acceleration limit and below
``max_amplitude_rad``: the signal is linear in the amplitude, so its peaks (computed on a fine
grid from the analytic derivatives) scale exactly. A joint with no room to move is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.deployment import SafetyFilter
from sim_bridge_core.models import RobotModel
from sim_bridge_core.simulator.wire import MultiArrayEncoder, encode_joint_trajectory
from sim_bridge_core.sysid.config import SECTION, ExcitationConfig


def smoothstep(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quintic smoothstep on [0, 1] (0 before, 1 after) and its first two derivatives."""
    x = np.clip(x, 0.0, 1.0)
    value = x**3 * (10.0 - 15.0 * x + 6.0 * x**2)
    first = 30.0 * x**2 * (1.0 - x) ** 2
    second = 60.0 * x * (1.0 - x) * (1.0 - 2.0 * x)
    return value, first, second


@dataclass(frozen=True)
class ExcitationPlan:
    """Joint positions, velocities and accelerations over time; t = 0 is the start of the excitation."""

    joint_names: tuple[str, ...]
    start: np.ndarray  # (J,) the pose it starts and ends at
    amplitudes: np.ndarray  # (J,) scale of each joint's unit signal
    frequencies_hz: np.ndarray  # (J, K)
    weights: np.ndarray  # (J, K) relative amplitude of each sine
    phases: np.ndarray  # (J, K)
    duration_s: float
    rest_s: float
    ramp_s: float

    def _window(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fade-in times the fade-out, and its derivatives, (T,) each."""
        end = self.duration_s - self.rest_s
        rise = smoothstep((t - self.rest_s) / self.ramp_s)
        fall = smoothstep((end - t) / self.ramp_s)
        scale_in, scale_out = 1.0 / self.ramp_s, -1.0 / self.ramp_s
        value = rise[0] * fall[0]
        first = rise[1] * scale_in * fall[0] + rise[0] * fall[1] * scale_out
        second = (
            rise[2] * scale_in**2 * fall[0]
            + 2.0 * rise[1] * scale_in * fall[1] * scale_out
            + rise[0] * fall[2] * scale_out**2
        )
        return value, first, second

    def unit_signals(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position, velocity, acceleration (T, J) of each joint's signal at amplitude 1."""
        t = np.asarray(times_s, dtype=float).reshape(-1)
        omega = 2.0 * np.pi * self.frequencies_hz  # (J, K)
        angle = t[:, None, None] * omega[None] + self.phases[None]  # (T, J, K)
        sines = np.sin(angle) * self.weights[None]
        cosines = np.cos(angle) * self.weights[None]
        s = sines.sum(axis=2)
        ds = (cosines * omega[None]).sum(axis=2)
        dds = -(sines * omega[None] ** 2).sum(axis=2)
        w, dw, ddw = (part[:, None] for part in self._window(t))
        return w * s, dw * s + w * ds, ddw * s + 2.0 * dw * ds + w * dds

    def sample(self, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions, velocities, accelerations (T, J) at ``times_s`` (held at the start pose outside)."""
        p, v, a = self.unit_signals(times_s)
        return self.start + p * self.amplitudes, v * self.amplitudes, a * self.amplitudes

    def extent(self, step_s: float = 1e-3) -> dict[str, np.ndarray]:
        """Per joint: lowest and highest position, peak speed and peak acceleration (a fine grid)."""
        p, v, a = self.sample(np.arange(0.0, self.duration_s + step_s, step_s))
        return {
            "min_position": p.min(axis=0),
            "max_position": p.max(axis=0),
            "peak_velocity": np.abs(v).max(axis=0),
            "peak_acceleration": np.abs(a).max(axis=0),
        }


def _frequencies(config: ExcitationConfig, joints: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(J, K) frequencies, weights and phases: a log-spaced comb dealt to the joints in turn."""
    k = config.sines
    comb = np.geomspace(config.min_frequency_hz, config.max_frequency_hz, k * joints)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(joints)  # which joint gets the lowest frequency of each round
    frequencies = np.empty((joints, k))
    for j in range(joints):
        frequencies[order[j]] = comb[j::joints]
    weights = 1.0 / frequencies
    weights /= weights.sum(axis=1, keepdims=True)
    schroeder = -np.pi * np.arange(k) * (np.arange(k) - 1) / k
    phases = schroeder[None, :] + rng.uniform(0.0, 2.0 * np.pi, (joints, 1))
    return frequencies, weights, phases


def plan_excitation(
    config: ExcitationConfig,
    joint_names: tuple[str, ...],
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    velocity_limits: np.ndarray,
) -> ExcitationPlan:
    """The excitation about ``start`` within the limits; ConfigError naming a joint that cannot move."""
    config.check()
    start = np.asarray(start, dtype=float)
    frequencies, weights, phases = _frequencies(config, len(joint_names))
    unit = ExcitationPlan(
        joint_names=tuple(joint_names),
        start=start,
        amplitudes=np.ones(len(joint_names)),
        frequencies_hz=frequencies,
        weights=weights,
        phases=phases,
        duration_s=config.duration_s,
        rest_s=config.rest_s,
        ramp_s=config.ramp_s,
    )
    peaks = unit.extent()
    room = np.minimum(start - lower, upper - start) - config.position_margin_rad
    excursion = np.maximum(-peaks["min_position"] + start, peaks["max_position"] - start)
    speed = config.velocity_fraction * np.asarray(velocity_limits, dtype=float)
    amplitude = np.minimum.reduce(
        [
            np.full(len(start), config.max_amplitude_rad) / excursion,
            room / excursion,
            speed / peaks["peak_velocity"],
            np.full(len(start), config.max_acceleration) / peaks["peak_acceleration"],
        ]
    )
    for j, name in enumerate(joint_names):
        if not room[j] > 0:
            raise ConfigError(
                f"{SECTION}: joint '{name}' at {start[j]:.4f} is within position_margin_rad "
                f"({config.position_margin_rad}) of its limits [{lower[j]:.4f}, {upper[j]:.4f}]: move "
                "the robot away from its limits first"
            )
        if not amplitude[j] > 0:
            raise ConfigError(f"{SECTION}: joint '{name}' has no room to move (max_amplitude_rad 0?)")
    # The peaks were found on a grid: keep a hair below the limits between its points.
    return dataclasses.replace(unit, amplitudes=0.995 * amplitude)


# The excitation trajectory starts this long after it is sent (its header stamp), s.
TRAJECTORY_LEAD_S = 0.5


class Exciter:
    """What the exciter node does, without ROS: plan at the first joint state, then send commands.

    ``trajectory``: the whole excitation as one JointTrajectory, sent at once (points every
    ``1 / point_rate_hz`` with positions, velocities and accelerations, so the controller
    interpolates it quintically): the controller then runs it to its end at rest, without a
    command stream to keep up and without restarting from the measured state. It is stamped to
    start ``TRAJECTORY_LEAD_S`` after it is sent, on the robot's clock: however long a large
    message takes to arrive, the controller starts it at a time the bag records (until then it
    holds the start pose, which is where the excitation begins), so the identified command delay
    is the controller's and servos', not a one-off transport time; the stamp is taken when it is
    sent, so a stall between planning and sending cannot start it mid-way. ``position``: one
    Float64MultiArray per period, the plan one period ahead (a forward controller steps to it),
    each within the filter's step (``max_step``) of the one before, the first of the start pose:
    after a stall (no state, so no command, for a while) the commands catch up with the plan at
    that speed instead of jumping to it, and the excitation is finished only once they are back
    at the start pose. ``hold`` is the command that stops the robot where it is.
    """

    def __init__(
        self,
        config: ExcitationConfig,
        robot: RobotModel,
        interface: str,
        safety: SafetyFilter,
        driver_names: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.robot = robot
        self.driver_names = driver_names or robot.joint_names  # the names on the wire
        self.interface = interface
        self.period_s = 1.0 / config.point_rate_hz
        # ``safety``'s limits with its step per this exciter's period, whatever period it was made for.
        self.safety = SafetyFilter(
            safety.lower, safety.upper, safety.velocity_limits, self.period_s, safety.max_position_step
        )
        self.plan: ExcitationPlan | None = None
        self.started_s = 0.0
        self._next_s = 0.0
        self._sent = False
        self._commanded: np.ndarray | None = None  # position: the last command (the start pose at first)
        self._positions = MultiArrayEncoder(np.float64, ("joint",))

    def start(self, now_s: float, positions: np.ndarray) -> ExcitationPlan:
        """Plan the excitation about ``positions`` (ConfigError if a joint cannot move); t = 0 is now."""
        self.plan = plan_excitation(
            self.config,
            self.robot.joint_names,
            positions,
            self.safety.lower,
            self.safety.upper,
            self.speed_limits,
        )
        self.started_s = self._next_s = now_s
        self._commanded = self.plan.start
        if self.interface == "trajectory":
            self.started_s += TRAJECTORY_LEAD_S
        return self.plan

    @property
    def speed_limits(self) -> np.ndarray:
        """(J,) the velocity limits, within the filter's step cap per ``1 / point_rate_hz`` if it has one."""
        return self.safety.max_step / self.period_s

    def finished(self, now_s: float) -> bool:
        """The plan has run its course and (position) the last command is back at the start pose."""
        if self.plan is None or now_s - self.started_s < self.plan.duration_s:
            return False
        return self.interface == "trajectory" or np.array_equal(self._commanded, self.plan.start)

    def commands(self, now_s: float) -> list[bytes]:
        """The commands due at ``now_s`` (after ``start``)."""
        if self.plan is None or self.finished(now_s):
            return []
        if self.interface == "trajectory":
            if self._sent:
                return []
            self._sent = True
            self.started_s = now_s + TRAJECTORY_LEAD_S
            return [self._trajectory()]
        if now_s < self._next_s - 0.1 * self.period_s:  # a state up to a tenth of a period early counts
            return []
        while self._next_s <= now_s + 0.1 * self.period_s:
            self._next_s += self.period_s
        positions, _, _ = self.plan.sample(np.array([now_s - self.started_s + self.period_s]))
        self._commanded = self.safety(positions[0], self._commanded)
        return [self._positions.encode(self._commanded)]

    def _trajectory(self) -> bytes:
        count = int(np.ceil(self.plan.duration_s / self.period_s))
        times = np.arange(1, count + 1) * self.period_s
        positions, velocities, accelerations = self.plan.sample(times)
        positions = np.clip(positions, self.safety.lower, self.safety.upper)
        stamp_ns = round(self.started_s * 1e9)
        return encode_joint_trajectory(
            self.driver_names, stamp_ns, np.round(times * 1e9), positions, velocities, accelerations
        )

    def hold(self, positions: np.ndarray) -> bytes:
        """Stay at ``positions`` from now on (the measured pose, so the robot stops where it is)."""
        if self.interface == "position":
            return self._positions.encode(positions)
        return encode_joint_trajectory(self.driver_names, 0, [round(self.period_s * 1e9)], [positions])
