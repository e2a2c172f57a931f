"""Locomotion: a legged robot tracks a velocity command (forward, lateral, yaw rate) on flat ground.

The observation holds only what a real robot's drivers give over ROS: joint states, the IMU
(gravity direction from its orientation, and its angular velocity), the velocity command
(``cmd_vel``), plus what the policy keeps of its own: its previous action and a gait clock (the
time since it began, as a phase). The base's velocity, height and the feet's contacts feed the
reward and the success test only (the simulator knows them; a robot need not).

Why a clock: without one (and without the base's velocity, which a robot does not measure) the
policy learned to walk only with its exploration noise: sampled, 100 % success; its mean, the
deployed action, stood still on half the commands (41 %). A phase to step to, rewarded when the
feet's contacts follow it, gives the deterministic policy a rhythm of its own.

Rewards follow the established velocity-tracking recipes (legged_gym / Isaac Lab / MuJoCo
Playground joystick): exponential tracking of planar velocity and yaw rate, penalties on
vertical and roll/pitch motion, tilt, torque, action rate and straying from the default pose,
a bonus for feet that swing long enough and one for contacts that follow the gait clock (stance
in the first half of each foot's cycle), weighted by ``reward_weights``; the sum is clipped at zero
(what the clip adds is the term ``clip_at_zero``). A fall (base below half its nominal height, or
tilted past 60 degrees) ends the episode. Success: the episode ends without a fall and the mean
planar velocity error and mean yaw-rate error stay within their tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_bridge_core.arrays import like, namespace, uniform, zeros
from sim_bridge_core.config import ConfigError, setting
from sim_bridge_core.models import ModelError, RobotModel
from sim_bridge_core.sim.backends import SimBackend
from sim_bridge_core.sim.sensors import down, rotate_into
from sim_bridge_core.tasks import terms
from sim_bridge_core.tasks.base import ControlHistory, Task, TaskOutcome, TaskSettings
from sim_bridge_core.tasks.terms import ObservationSources, ObservationTerm

FALL_HEIGHT_FRACTION = 0.5
FALL_TILT_COS = np.cos(np.radians(60.0))
INITIAL_JOINT_NOISE_RAD = 0.1
# Below this command speed (m/s and rad/s together) the robot should stand: no air-time bonus.
STANDING_COMMAND = 0.1
AIR_TIME_TARGET_S = 0.1


@dataclass(frozen=True)
class LocomotionSettings(TaskSettings):
    """``tasks.locomotion`` of a robot config; the default pose is the robot's ``home`` keyframe."""

    feet: list[str] = setting([], "the foot sites (at the centre of each foot's contact sphere)")
    nominal_height: float = setting(0.3, "the base's height when standing, m", low=0.01)
    contact_height: float = setting(
        0.03, "a foot below this height (its site's z, m) is on the ground", low=0.0
    )
    command_low: list[float] = setting(
        [-0.5, -0.3, -0.8], "lowest velocity command (forward m/s, lateral m/s, yaw rate rad/s)"
    )
    command_high: list[float] = setting(
        [0.8, 0.3, 0.8], "highest velocity command (forward m/s, lateral m/s, yaw rate rad/s)"
    )
    tracking_sigma: float = setting(
        0.25,
        "width of the tracking rewards exp(-error^2 / sigma), (m/s)^2 and (rad/s)^2: smaller pays "
        "more for the last tenths of a m/s",
        low=1e-3,
    )
    tracking_tolerance: float = setting(
        0.25, "success: mean planar velocity error over the episode at most this, m/s", low=0.0
    )
    yaw_rate_tolerance: float = setting(
        0.5, "success: mean yaw-rate error over the episode at most this, rad/s", low=0.0
    )
    gait_frequency_hz: float = setting(2.0, "steps per second of each foot (the gait clock)", low=0.1)
    gait_offsets: list[float] = setting(
        [],
        "each foot's phase offset, a fraction of the cycle ([] = 0, 0.5, 0, 0.5, ... along feet; "
        "a trot of feet [FR, FL, RR, RL] is [0, 0.5, 0.5, 0])",
    )


class LocomotionTask(Task):
    name = "locomotion"
    input_names = ("cmd_linear_x", "cmd_linear_y", "cmd_angular_z")
    input_message = "cmd_vel"
    uses_imu = True
    action_scale = 0.5

    Settings = LocomotionSettings
    # The reward's terms in the order they are summed, with their default weights.
    default_reward_weights = {
        "track_linear": 1.0,
        "track_yaw": 0.5,
        "vertical_velocity": -2.0,
        "roll_pitch_rate": -0.05,
        "tilt": -5.0,
        "torque": -2e-4,
        "action_rate": -0.01,
        "pose": -0.1,
        "feet_air_time": 1.0,
        "gait": 0.5,
    }

    def __init__(self, robot: RobotModel, settings: LocomotionSettings | None = None) -> None:
        super().__init__(robot, settings)
        settings = self.settings
        if robot.base is None:
            raise ModelError(f"task locomotion needs a floating base; '{robot.name}' has none")
        if robot.imu is None:
            raise ModelError(f"task locomotion needs an IMU; '{robot.name}' has none")
        low, high = np.asarray(settings.command_low, float), np.asarray(settings.command_high, float)
        if low.shape != (3,) or high.shape != (3,) or np.any(low > high):
            raise ConfigError(
                "tasks.locomotion.command_low/command_high: need forward, lateral, yaw rate each, "
                f"low <= high; got {list(low)}, {list(high)}"
            )
        self.command_low, self.command_high = low, high
        if not settings.feet:
            raise ConfigError("tasks.locomotion.feet: name the robot's foot sites")
        try:
            self.feet = [robot.site_id(foot) for foot in settings.feet]
        except ModelError as exc:
            raise ConfigError(f"tasks.locomotion.feet: {exc}") from exc
        offsets = settings.gait_offsets or [0.5 * (i % 2) for i in range(len(self.feet))]
        if len(offsets) != len(self.feet):
            raise ConfigError(
                f"tasks.locomotion.gait_offsets: one per foot ({len(self.feet)}), got {len(offsets)}"
            )
        self.gait_offsets = np.asarray(offsets, float)
        self._episodes: _EpisodeState | None = None

    def observation_layout(self) -> tuple[ObservationTerm, ...]:
        """Gravity in the IMU's frame and its angular velocity, joints about home, the command, the
        previous action (the previous targets about home, in action units) and the gait clock."""
        return (
            terms.imu_gravity(),
            terms.imu_angular_velocity(),
            *super().observation_layout(),
            terms.previous_action(self.robot, self.action_scale),
            ObservationTerm("gait_clock", 2, self._gait_clock),
        )

    def _gait_clock(self, sources: ObservationSources) -> np.ndarray:
        """sin and cos of the gait phase, from the time since the episode began."""
        elapsed_s = sources.require_history("gait_clock").elapsed_s
        xp = namespace(elapsed_s)
        phase = 2.0 * np.pi * self.settings.gait_frequency_hz * elapsed_s
        return xp.stack([xp.sin(phase), xp.cos(phase)], axis=-1)

    def sample_initial(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (count, self.robot.num_joints)
        noise = uniform(rng, -INITIAL_JOINT_NOISE_RAD, INITIAL_JOINT_NOISE_RAD, shape)
        commands = uniform(rng, self.command_low, self.command_high, (count, 3))
        # A fifth of the episodes ask the robot to stand still: it must learn that too.
        commands[uniform(rng, 0.0, 1.0, (count,)) < 0.2] = 0.0
        return self.robot.clamp(like(self.robot.home, noise) + noise), commands

    def reset_episodes(self, ids: np.ndarray, num_envs: int) -> None:
        if self._episodes is None or self._episodes.targets.shape[0] != num_envs:
            self._episodes = _EpisodeState.empty(num_envs, len(self.feet), self.robot.home, ids)
        self._episodes.clear(ids, self.robot.home)

    def outcome(self, backend: SimBackend, inputs: np.ndarray, history: ControlHistory) -> TaskOutcome:
        if self._episodes is None:
            self.reset_episodes(namespace(inputs).arange(backend.num_envs), backend.num_envs)
        state = self._episodes
        base = self.robot.base
        pose = backend.read("qpos", base.qpos_adr + np.arange(7))
        twist = backend.read("qvel", base.dof_adr + np.arange(6))
        xp = namespace(pose)
        linear = rotate_into(pose[:, 3:7], twist[:, :3])  # the base's frame
        angular = twist[:, 3:6]  # MuJoCo: a free joint's angular velocity is in the body frame
        gravity = rotate_into(pose[:, 3:7], down(pose))

        planar_error = xp.linalg.vector_norm(linear[:, :2] - inputs[:, :2], axis=1)
        yaw_error = xp.abs(angular[:, 2] - inputs[:, 2])
        heights = xp.stack([backend.site_positions(foot)[:, 2] for foot in self.feet], axis=1)
        contact = heights < self.settings.contact_height
        first_contact = contact & (state.air_time > 0.0)
        state.air_time += backend.control_dt
        moving = xp.linalg.vector_norm(inputs, axis=1) > STANDING_COMMAND
        air_bonus = xp.sum((state.air_time - AIR_TIME_TARGET_S) * first_contact, axis=1) * moving
        state.air_time[contact] = 0.0
        # Each foot stands in the first half of its cycle; asked to stand, every foot stands.
        clock = self.settings.gait_frequency_hz * history.elapsed_s[:, None]
        cycle = (clock + like(self.gait_offsets, pose)) % 1.0
        stance = (cycle < 0.5) | ~moving[:, None]
        gait = xp.mean(xp.astype(contact == stance, pose.dtype), axis=1)

        reward_terms = self.weighted(
            {
                "track_linear": xp.exp(-(planar_error**2) / self.settings.tracking_sigma),
                "track_yaw": xp.exp(-(yaw_error**2) / self.settings.tracking_sigma),
                "vertical_velocity": linear[:, 2] ** 2,
                "roll_pitch_rate": xp.sum(angular[:, :2] ** 2, axis=1),
                "tilt": terms.tilt(gravity),
                "torque": terms.joint_torque(backend.joint_efforts()),
                "action_rate": terms.action_rate(history.previous_targets, state.targets, self.action_scale),
                "pose": terms.joint_position_about_home(backend.joint_positions(), self.robot.home),
                "feet_air_time": air_bonus,
                "gait": gait,
            }
        )
        # Clipped at zero (legged_gym's only_positive_rewards): early on the penalties outweigh the
        # rest, and a negative reward per step would teach the robot to fall sooner. What the clip
        # adds is a term of its own, so that the terms still sum to the reward.
        unclipped = sum(reward_terms.values())
        reward = xp.clip(unclipped, min=0.0)
        reward_terms["clip_at_zero"] = reward - unclipped
        state.targets[:] = history.previous_targets

        fallen = (pose[:, 2] < FALL_HEIGHT_FRACTION * self.settings.nominal_height) | (
            -gravity[:, 2] < FALL_TILT_COS
        )
        state.steps += 1
        state.planar_error += planar_error
        state.yaw_error += yaw_error
        tracking = (state.planar_error / state.steps <= self.settings.tracking_tolerance) & (
            state.yaw_error / state.steps <= self.settings.yaw_rate_tolerance
        )
        return TaskOutcome(
            reward=reward, terminated=fallen, success=tracking & ~fallen, reward_terms=reward_terms
        )

    def inputs_from_goal(self, goal: np.ndarray) -> np.ndarray:
        """A velocity command (forward, lateral, yaw rate), clamped into the range trained on;
        all zeros stays a command to stand, which training asks for whatever the range."""
        command = np.asarray(goal, float)[:3]
        if not command.any():
            return np.zeros(3)
        return np.clip(command, self.command_low, self.command_high)

    def goal_from_inputs(self, inputs: np.ndarray) -> np.ndarray:
        return np.asarray(inputs, float)[:3]


@dataclass
class _EpisodeState:
    """Per-world running sums of the episode so far, and what the next step compares against."""

    steps: np.ndarray
    planar_error: np.ndarray
    yaw_error: np.ndarray
    air_time: np.ndarray
    targets: np.ndarray

    @classmethod
    def empty(cls, num_envs: int, feet: int, home: np.ndarray, ids: np.ndarray) -> _EpisodeState:
        """Zeros beside ``ids`` (numpy, or the device of resident worlds)."""
        targets = zeros((num_envs, len(home)), ids)
        return cls(
            steps=zeros((num_envs,), ids),
            planar_error=zeros((num_envs,), ids),
            yaw_error=zeros((num_envs,), ids),
            air_time=zeros((num_envs, feet), ids),
            targets=targets + like(home, targets),
        )

    def clear(self, ids: np.ndarray, home: np.ndarray) -> None:
        self.steps[ids] = 0.0
        self.planar_error[ids] = 0.0
        self.yaw_error[ids] = 0.0
        self.air_time[ids] = 0.0
        self.targets[ids] = like(home, self.targets)
