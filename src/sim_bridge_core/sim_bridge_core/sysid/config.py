"""The settings of the excitation and system-identification nodes (one schema for YAML, ROS
parameters, launch arguments and ``bringup`` overrides, as everywhere in sim_bridge)."""

from __future__ import annotations

from dataclasses import dataclass

from sim_bridge_core.config import ConfigError, setting
from sim_bridge_core.models.parameters import JOINT_FIELDS
from sim_bridge_core.sim.control import COMMAND_INTERFACES

SECTION = "excitation"
# What can be fitted: every per-joint field model_parameters can write, and the command delay.
DELAY = "command_delay_s"
FIT_KINDS = (*JOINT_FIELDS, DELAY)


@dataclass(frozen=True)
class ExcitationConfig:
    duration_s: float = setting(
        30.0, "length of the excitation, rests and fades included, s", low=1.0, high=3600.0
    )
    rest_s: float = setting(
        1.0, "at rest at the start pose before and after the motion, s", low=0.0, high=60.0
    )
    ramp_s: float = setting(2.0, "the motion fades in and out over this long, s", low=0.1, high=60.0)
    min_frequency_hz: float = setting(0.1, "lowest sine frequency, Hz", low=0.001, high=100.0)
    max_frequency_hz: float = setting(1.5, "highest sine frequency, Hz", low=0.001, high=100.0)
    sines: int = setting(4, "sines per joint (no two joints share a frequency)", low=1, high=64)
    max_amplitude_rad: float = setting(
        0.4, "largest excursion of a joint from the start pose, rad (m for slide joints)", low=0.0, high=10.0
    )
    position_margin_rad: float = setting(
        0.1, "distance kept from every position limit, rad (m)", low=0.0, high=10.0
    )
    velocity_fraction: float = setting(
        0.3, "peak speed as a fraction of each joint's velocity limit", low=0.01, high=1.0
    )
    max_acceleration: float = setting(
        5.0, "peak acceleration of every joint, rad/s^2 (m/s^2)", low=0.01, high=1000.0
    )
    point_rate_hz: float = setting(
        50.0,
        "trajectory: points per second of the one JointTrajectory sent; position: commands per second",
        low=1.0,
        high=2000.0,
    )
    seed: int = setting(0, "seed of the frequency assignment and phases", low=0, high=(1 << 31) - 1)

    def check(self) -> None:
        if self.min_frequency_hz >= self.max_frequency_hz:
            raise ConfigError(
                f"{SECTION}.min_frequency_hz: {self.min_frequency_hz} must be below max_frequency_hz "
                f"{self.max_frequency_hz}"
            )
        motion = self.duration_s - 2.0 * self.rest_s
        if motion < 2.0 * self.ramp_s:
            raise ConfigError(
                f"{SECTION}.duration_s: {self.duration_s} s leaves {motion:g} s between the rests, less "
                f"than the two {self.ramp_s:g} s fades"
            )


@dataclass(frozen=True)
class ExciterConfig:
    model: str = setting("arm7", "robot model (built-in name or MJCF/URDF path)")
    joint_names: list[str] = setting(
        [], "the joints to excite, as the robot config names them ([] = every joint an actuator drives)"
    )
    driver_joint_names: list[str] = setting(
        [], "the drivers' names of joint_names, in their order, on the wire ([] = the same names)"
    )
    command_interface: str = setting(
        "trajectory",
        "trajectory: the whole excitation as one JointTrajectory (joint_trajectory); position: one "
        "Float64MultiArray per period (joint_commands)",
        choices=COMMAND_INTERFACES,
    )
    position_limits: list[float] = setting([], "lower, upper per joint ([] = the model's ranges)")
    velocity_limits: list[float] = setting(
        [], "rad/s, one per joint or one for all ([] = the model's)", low=0.0
    )
    max_position_step: float = setting(
        0.0, "an extra cap on the step per 1 / point_rate_hz, rad (0 = velocity limit only)", low=0.0
    )
    output_dir: str = setting("", "the run folder: rollouts/ is written there (default runs/<timestamp>)")
    dry_run: bool = setting(False, "print the excitation's extent and limits, move nothing, record nothing")
    start_timeout_s: float = setting(10.0, "fail if no joint state arrives within this long", low=0.1)
    state_timeout_s: float = setting(
        0.5, "joint states stopping for this long abort the excitation (hold, exit 1)", low=0.01
    )


@dataclass(frozen=True)
class SysidConfig:
    bags: list[str] = setting(
        [], "rosbag2 directories with the robot's joint states and the commands it was sent"
    )
    robot: str = setting(
        "", "the robot config (YAML) of the recorded robot: its model and nominal parameters"
    )
    validation_bags: list[str] = setting(
        [],
        "rosbag2 directories of the same robot doing something else (a faster excitation, a deploy run): "
        "never fitted; nominal and identified are compared on them",
    )
    output_dir: str = setting("", "where robot.yaml, sysid.json, sysid_report.png, randomization.yaml go")
    state_topic: str = setting(
        "/joint_states", "JointState topic in the bags (if absent, the bag's only JointState topic)"
    )
    command_topic: str = setting("", "command topic in the bags ('' = the bag's only command topic)")
    fit: list[str] = setting(
        list(FIT_KINDS), f"what to identify, of {', '.join(FIT_KINDS)} (per joint, and the delay)"
    )
    window_s: float = setting(
        2.0, "each rollout starts from a recorded state and runs this long open loop, s", low=0.05, high=600.0
    )
    holdout_every: int = setting(
        4, "every n-th window is held out of the fit and reported on (n >= 2)", low=2, high=1000
    )
    max_fit_s: float = setting(
        24.0,
        "at most this much of the other windows is fitted (spread evenly; the rest is held out too), s",
        low=0.05,
        high=1e6,
    )
    max_delay_s: float = setting(0.05, "upper bound of the command delay, s", low=0.0, high=1.0)
    velocity_weight_s: float = setting(
        0.1, "velocity errors count as position errors times this, s (0 = positions only)", low=0.0
    )
    min_motion_rad: float = setting(
        0.01, "a joint whose recorded positions span less than this never moved, rad (m)", low=0.0
    )
    samples_per_parameter: int = setting(
        100, "joint-state samples the fit needs per fitted parameter (else: the bags are too short)", low=1
    )
    max_iterations: int = setting(25, "Levenberg-Marquardt iterations at most", low=1, high=10000)
    threads: int = setting(0, "rollout threads (0 = one per core)", low=0, high=1024)

    def check(self) -> None:
        unknown = [kind for kind in self.fit if kind not in FIT_KINDS]
        if unknown:
            raise ConfigError(f"sysid.fit: unknown '{unknown[0]}' (choose from {', '.join(FIT_KINDS)})")
        if not self.fit:
            raise ConfigError("sysid.fit: nothing to identify")
