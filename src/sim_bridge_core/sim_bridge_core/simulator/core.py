"""The simulator's logic without ROS: config, command handling, stepping and wire messages.

The ROS node only moves bytes between topics and this class, and decides when to step
(the mode). Commands come in two kinds:

* the batched command (``batch/joint_trajectory``): one point with position targets for
  every world, answering the ``batch/joint_states`` stamp it was computed from;
* per-world commands for the single world or the mirrored worlds, by ``command_interface``:
  JointTrajectory goals with joint_trajectory_controller semantics (``trajectory``), or
  Float64MultiArray positions as a forward position controller takes them (``position``).

Every command is executed the way the robot's controller executes it (``sim_bridge_core.sim.control``):
sampled at the controller's update rate inside each control period. A world's targets follow
its trajectory while it has one; a batched command replaces the targets of every world and
ends their trajectories (the newest command wins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from sim_bridge_core.arrays import to_host
from sim_bridge_core.config import ConfigError, setting
from sim_bridge_core.envs.batched import BatchedEnv, StepResult
from sim_bridge_core.models import (
    ModelError,
    PdGains,
    RobotConfig,
    RobotModel,
    driver_joint_names,
    load_robot,
    parse_model_parameters,
)
from sim_bridge_core.randomization import RandomizationSpec, Randomizer, bind, load_spec
from sim_bridge_core.rendering.cameras import parse_cameras
from sim_bridge_core.sim.backends import BACKENDS, BackendError, make_backend
from sim_bridge_core.sim.control import COMMAND_INTERFACES
from sim_bridge_core.sim.trajectory import TrajectoryError, TrajectoryFollower, TrajectoryGoal, parse_goal
from sim_bridge_core.simulator.protocol import TASK_PAIRING, TASK_SIGNALS, control_step, task_signal_rows
from sim_bridge_core.simulator.wire import (
    JointStateEncoder,
    JointTrajectoryDecoder,
    MultiArrayEncoder,
    WireError,
    decode_joint_trajectory,
    decode_multi_array,
)
from sim_bridge_core.tasks import TASKS, Task, make_task

MODES = ("lockstep", "realtime", "fast")
_NS = 1_000_000_000


@dataclass(frozen=True)
class SimulatorConfig:
    model: str = setting("arm7", "built-in model name (arm7, pendulum) or path to an MJCF/URDF file")
    num_envs: int = setting(1, "number of parallel worlds", low=1, high=1 << 20)
    backend: str = setting("cpu", "physics backend", choices=BACKENDS)
    device: str = setting("", "warp backend device: '' (CUDA if present, else CPU), 'cpu', 'cuda:0'")
    threads: int = setting(0, "cpu backend threads (0 = one per core)", low=0, high=1024)
    control_dt: float = setting(
        0.02, "control period in seconds (a multiple of the model timestep)", low=1e-5, high=10.0
    )
    command_interface: str = setting(
        "trajectory",
        "how commands reach the joints: trajectory = joint_trajectory_controller (joint_trajectory); "
        "position = forward position controller (joint_commands, Float64MultiArray)",
        choices=COMMAND_INTERFACES,
    )
    controller_rate_hz: float = setting(
        0.0,
        "update rate of the simulated controller inside each control period (0 = every physics step)",
        low=0.0,
        high=1e6,
    )
    max_trajectory_points: int = setting(
        10_000,
        "joint_trajectory messages with more points are refused before decoding (the controller has "
        "no cap; a huge message would hold up the executor)",
        low=1,
        high=1 << 24,
    )
    mode: str = setting(
        "realtime",
        "lockstep: step when the batched command for the last state "
        "arrives; realtime: step on the wall clock; fast: step as fast as possible",
        choices=MODES,
    )
    real_time_factor: float = setting(
        1.0, "sim seconds per wall second in realtime mode", low=0.001, high=1000.0
    )
    mirror_envs: list[int] = setting([0], "worlds with their own env_<i>/ topics when num_envs > 1", low=0)
    task: str = setting("none", "task run in every world (reward, resets, task inputs)", choices=tuple(TASKS))
    episode_length_s: float = setting(5.0, "episode length before truncation, seconds", low=1e-3, high=1e9)
    seed: int = setting(0, "seed of the reset distribution", low=0, high=(1 << 63) - 1)
    publish_clock: bool = setting(True, "publish sim time on /clock")
    joint_names: list[str] = setting(
        [], "the controlled joints: the batched topics and a policy's actions ([] = every actuated joint)"
    )
    home: str = setting(
        "", "the home pose's keyframe ('' = the model's 'home' keyframe, else its reference pose)"
    )
    imu_site: str = setting(
        "",
        "site the IMU reads at ('' = the site of the first gyro/accelerometer, else a floating base's body)",
    )
    sites: str = setting(
        "", "sites to add to the model as YAML ({<name>: {body: <body>, pos: [x, y, z]}}), '' = none"
    )
    cameras: str = setting(
        "",
        "cameras to publish as YAML (a robot config's cameras: [{name, body, pos, quat, fovy, width, "
        "height, depth, rate_hz}]), '' = none",
    )
    record_cameras: bool = setting(
        False,
        "record the camera topics (images and camera_info) into <output_dir>/rollouts (MCAP); "
        "bringup sim record:=true",
    )
    output_dir: str = setting("", "run folder of record_cameras (default runs/<timestamp>)")
    task_settings: str = setting(
        "", "the task's settings as YAML (a robot config's tasks.<task>), '' = defaults"
    )
    model_parameters: str = setting(
        "",
        "model-parameter overrides as YAML (joints: {<joint>: {damping, armature, frictionloss, kp, kv}}, "
        "bodies: {<body>: {mass}}, command_delay_s), e.g. identified by bringup sysid; '' = none",
    )
    joint_name_map: str = setting(
        "",
        "one world's joints on the wire as a robot's drivers name them, YAML {<driver name>: <joint>} "
        "(a robot config's joint_name_map), '' = the model's names with joint_prefix",
    )
    joint_prefix: str = setting("", "a prefix before every joint name on one world's topics (e.g. fr3_)")
    kp: float = setting(100.0, "PD stiffness for torque-driven joints (N*m/rad)", low=0.0, high=1e7)
    kd: float = setting(10.0, "PD damping for torque-driven joints (N*m*s/rad)", low=0.0, high=1e6)
    allow_partial_joints_goal: bool = setting(
        False, "accept trajectories naming a subset of the joints", read_only=False
    )
    randomization: str = setting(
        "", "domain-randomization spec: a YAML file path or YAML text ('' = none)", read_only=False
    )
    randomization_enabled: bool = setting(
        True, "false: nominal physics in every world (the spec stays loaded)", read_only=False
    )
    stagger_episodes: bool = setting(
        False,
        "~/reset starts each world at a random step of its episode (training rollouts then mix "
        "early and late steps); false: whole episodes (evaluation)",
        read_only=False,
    )
    lockstep_resend_s: float = setting(
        0.5,
        "lockstep: republish the pending state after this wall time "
        "without an answer (covers a learner that joined late)",
        low=0.01,
        high=60.0,
    )

    def check(self) -> None:
        """Cross-field checks that a single field's bounds cannot express."""
        if self.num_envs > 1:
            outside = [world for world in self.mirror_envs if world >= self.num_envs]
            if outside:
                raise ConfigError(
                    f"simulator.mirror_envs: world {outside[0]} does not exist with num_envs {self.num_envs}"
                )


def robot_simulator_parameters(robot: RobotConfig, task: str) -> dict[str, Any]:
    """The simulator settings a robot file decides (for ``task``): the one mapping from a robot
    config to ``SimulatorConfig``, also used to evaluate on a second robot (``compare_robot``)."""
    return {
        "model": robot.model,
        "joint_names": list(robot.joint_names),
        "home": robot.home,
        "imu_site": robot.imu_site,
        "sites": _yaml_text(robot.sites),
        "cameras": yaml.safe_dump(list(robot.cameras), sort_keys=False) if robot.cameras else "",
        "task_settings": _yaml_text(robot.tasks.get(task, {})),
        "kp": robot.kp,
        "kd": robot.kd,
        "model_parameters": _yaml_text(robot.model_parameters),
        "joint_name_map": _yaml_text(robot.joint_name_map),
        "joint_prefix": robot.joint_prefix,
    }


def _yaml_text(mapping: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(mapping), sort_keys=False) if mapping else ""


def simulated_robot(config: SimulatorConfig, section: str = "simulator") -> tuple[RobotModel, Task]:
    """The robot and task the simulator settings describe; ConfigError naming the bad key."""
    try:
        robot = load_robot(
            config.model,
            gains=PdGains(config.kp, config.kd),
            parameters=parse_model_parameters(
                _yaml_setting(config.model_parameters, f"{section}.model_parameters"),
                f"{section}.model_parameters",
            ),
            joint_names=config.joint_names,
            home=config.home,
            imu_site=config.imu_site,
            sites=_yaml_setting(config.sites, f"{section}.sites"),
            cameras=parse_cameras(_yaml_list(config.cameras, f"{section}.cameras"), f"{section}.cameras"),
        )
    except ModelError as exc:
        raise ConfigError(f"{section}.model: {exc}") from exc
    try:
        return robot, make_task(
            config.task, robot, _yaml_setting(config.task_settings, f"{section}.task_settings")
        )
    except ModelError as exc:
        raise ConfigError(f"{section}.task: {exc}") from exc
    except ConfigError as exc:  # a task setting (tasks.<task>.<key>) that does not fit the robot
        raise ConfigError(f"{section}.{exc}") from exc


def _yaml_setting(text: str, key: str) -> dict:
    """A mapping given as YAML text ('' = empty); ConfigError naming ``key`` otherwise."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: must be a mapping, got {text!r}")
    return data


def _yaml_list(text: str, key: str) -> list:
    """A list given as YAML text ('' = empty); ConfigError naming ``key`` otherwise."""
    try:
        data = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: not valid YAML: {exc}") from exc
    if not isinstance(data, list):
        raise ConfigError(f"{key}: must be a list, got {text!r}")
    return data


def _parse_spec(source: str) -> RandomizationSpec | None:
    """A spec from a file path or YAML text; None for '' (no randomization)."""
    if not source.strip():
        return None
    if "\n" in source or source.lstrip().startswith("{"):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise ConfigError(f"simulator.randomization: not valid YAML: {exc}") from exc
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"simulator.randomization: must be a mapping or a file path, got {source!r}")
        return load_spec(data or {})
    return load_spec(source)


class CommandError(ValueError):
    """A command that was rejected; the message is the reason, fit for a log line.

    ``stale`` marks a lockstep answer to an earlier state (a resend's duplicate): expected
    traffic, not a client error.
    """

    def __init__(self, reason: str, stale: bool = False) -> None:
        super().__init__(reason)
        self.stale = stale


class Simulator:
    """N worlds, their commands and the messages that describe them."""

    def __init__(self, config: SimulatorConfig, resident: bool = False) -> None:
        """``resident``: the worlds' arrays stay on the warp backend's device (the fused training
        loop); the node's messages need them on the host."""
        config.check()
        self.config = config
        self._randomizers_built = 0
        self._randomization_source = ""
        self.robot, task = simulated_robot(config)
        try:
            backend = make_backend(
                config.backend,
                self.robot,
                config.num_envs,
                config.control_dt,
                device=config.device,
                threads=config.threads,
                resident=resident,
            )
        except BackendError as exc:
            raise ConfigError(f"simulator.backend: {exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"simulator.control_dt: {exc}") from exc
        try:
            self.env = BatchedEnv(
                backend,
                task,
                config.episode_length_s,
                config.seed,
                command_interface=config.command_interface,
                controller_rate_hz=config.controller_rate_hz,
            )
        except ValueError as exc:
            raise ConfigError(f"simulator.controller_rate_hz: {exc}") from exc
        self.set_randomization(config.randomization, config.randomization_enabled)
        self.targets = to_host(self.env.backend.joint_positions())
        self.last_result: StepResult | None = None
        # Worlds commanded since the last step (they ramp to their new target; the others hold).
        self.commanded = np.zeros(config.num_envs, dtype=bool)
        updates = self.env.commands.updates if config.command_interface == "trajectory" else 1
        # Where, after the start of a period, each controller update samples a trajectory (one
        # update period ahead, as joint_trajectory_controller writes its next command).
        self._update_offsets_s = config.control_dt * np.arange(1, updates + 1) / updates

        joints = self.robot.joint_names
        self.mirrored = [0] if config.num_envs == 1 else sorted(set(config.mirror_envs))
        self.followers = {world: TrajectoryFollower() for world in self.mirrored}
        # A world command may also name the extra axes (other actuators, a gripper): their values.
        extra = self.robot.extra
        self.extra_targets = np.tile(extra.home, (config.num_envs, 1))
        self._axes = (*joints, *extra.names)
        self._axis_lower = np.concatenate([self.robot.lower, extra.lower])
        self._axis_upper = np.concatenate([self.robot.upper, extra.upper])
        batch_names = [f"env_{i}/{joint}" for i in range(config.num_envs) for joint in joints]
        self._batch_state = JointStateEncoder(batch_names)
        self._batch_command = JointTrajectoryDecoder(batch_names)
        state = self.robot.state_joints
        # One world stands in for a robot whose drivers may name its joints otherwise.
        mapping = _yaml_setting(config.joint_name_map, "simulator.joint_name_map")
        wire = driver_joint_names(mapping, config.joint_prefix, (*state.names, *extra.names), "simulator")
        self._from_wire = dict(zip(wire, (*state.names, *extra.names), strict=True))
        self._renamed = any(name != model for name, model in self._from_wire.items())
        self._world_state = JointStateEncoder(wire[: len(state.names)])
        # Where the controlled joints sit among the state joints (their values are the measured ones).
        self._controlled_in_state = np.array([state.names.index(name) for name in joints], dtype=np.int64)
        self.sensors = self.env.sensors
        self._sensor_fields = (*self.sensors.fields, "step")
        self._batch_sensors = MultiArrayEncoder(np.float32, ("env", ",".join(self._sensor_fields)))
        self.task_fields = (*TASK_SIGNALS, *task.input_names, *TASK_PAIRING)
        self._task = MultiArrayEncoder(np.float32, ("env", ",".join(self.task_fields)))
        self._published_version: tuple[int, int] | None = None

    def set_randomization(self, source: str, enabled: bool) -> None:
        """Load a randomization spec (path or YAML text; '' = none) and switch it on or off.

        The spec is checked against the model before anything changes, so a refused spec
        leaves the previous randomization in effect.
        """
        current = self.env.randomizer
        if source == self._randomization_source:
            if current is not None:
                current.set_enabled(enabled)
            return
        spec = _parse_spec(source)
        if spec is not None:
            bind(spec, self.robot)  # raises ConfigError naming the key
        if current is not None:
            current.set_enabled(False)  # nominal fields back before the next one captures them
        # Visual parameters act only where the worlds are rendered: with the robot's cameras.
        visual = bool(self.robot.cameras)
        randomizer = None if spec is None else Randomizer(spec, self.env.backend, visual=visual)
        if randomizer is not None:
            randomizer.set_enabled(enabled)
        self.env.randomizer = randomizer
        self._randomization_source = source
        self._randomizers_built += 1

    def randomize(self) -> bool:
        """Resample every world now; False when no spec is loaded."""
        if self.env.randomizer is None:
            return False
        self.env.randomizer.resample()
        return True

    def randomization_applied(self) -> bytes | None:
        """``randomization/applied`` when the values in effect changed since the last call, else None."""
        randomizer = self.env.randomizer
        version = (self._randomizers_built, -1 if randomizer is None else randomizer.version)
        if version == self._published_version:
            return None
        self._published_version = version
        if randomizer is None:
            values, names = np.zeros((self.config.num_envs, 0)), ()
        else:
            values, names = randomizer.applied()
        return MultiArrayEncoder(np.float64, ("env", ",".join(names))).encode(values)

    @property
    def time_ns(self) -> int:
        return self.env.time_ns

    def step(self) -> StepResult:
        """Advance every world one control period under its current commands."""
        times_s = self.time_ns / _NS + self._update_offsets_s
        followed, joints = {}, self.robot.num_joints
        for world, follower in self.followers.items():
            if follower.active:
                profile = np.clip(follower.setpoints(times_s), self._axis_lower, self._axis_upper)
                followed[world] = profile[:, :joints]
                self.targets[world] = profile[-1, :joints]
                self._command_extra(world, profile[-1, joints:])
        result = self.env.step(self.targets, commanded=self.commanded, followed=followed)
        self.commanded[:] = False
        done = np.flatnonzero(result.done)
        if done.size:
            self.targets[done] = self.env.backend.joint_positions()[done]
            self.extra_targets[done] = self.robot.extra.home  # the reset restored their home controls
            for world in done:
                if world in self.followers:
                    self.followers[world].clear()
        self.last_result = result
        return result

    def reset(self) -> None:
        """Every world back to its initial distribution; targets hold the new pose."""
        self.env.reset(stagger=self.config.stagger_episodes)
        self.targets = self.env.backend.joint_positions()
        self.extra_targets[:] = self.robot.extra.home
        self.commanded[:] = False
        for follower in self.followers.values():
            follower.clear()
        self.last_result = None

    def _command_extra(self, world: int, values: np.ndarray) -> None:
        """Extra axes of one world to ``values`` (written to their actuators when they change)."""
        if values.size and not np.array_equal(values, self.extra_targets[world]):
            self.extra_targets[world] = values
            extra = self.robot.extra
            self.env.backend.write_ctrl(
                np.array([world]), extra.actuator_ids, (values * extra.ctrl_per_unit)[None]
            )

    def apply_batch_command(self, data: bytes, expected_stamp_ns: int | None = None) -> int:
        """Take a batched command (serialized JointTrajectory); return the stamp it answers.

        With ``expected_stamp_ns`` (lockstep) a command answering another state is refused.
        """
        try:
            message = self._batch_command.decode(data)
        except WireError as exc:
            raise CommandError(f"malformed message: {exc}") from exc
        if expected_stamp_ns is not None and message.stamp_ns != expected_stamp_ns:
            raise CommandError(
                f"answers the state at {message.stamp_ns} ns, the pending state is at {expected_stamp_ns} ns",
                stale=True,
            )
        if message.joint_names is not self._batch_command.names:
            raise CommandError("joint_names must be the names of batch/joint_states, in that order")
        if len(message.points) != 1:
            raise CommandError(f"expected exactly one point, got {len(message.points)}")
        positions = message.points[0].positions
        if positions.size != self.targets.size:
            raise CommandError(f"expected {self.targets.size} positions, got {positions.size}")
        if not np.isfinite(positions).all():
            raise CommandError("positions contain NaN or inf")
        self.command_all(positions.reshape(self.targets.shape))
        return message.stamp_ns

    def command_all(self, targets: np.ndarray) -> None:
        """New (N, J) position targets for every world (clamped to the joint limits), as a batched
        command sets them; trajectories being followed end."""
        self.targets = self.robot.clamp(targets)
        self.commanded[:] = True
        for follower in self.followers.values():
            follower.clear()

    def parse_command(self, data: bytes) -> TrajectoryGoal | np.ndarray:
        """Decode and validate a world command of the configured interface; CommandError if refused.

        Needs no lock: it reads only the robot and the config (and the clock, to refuse a
        stamped trajectory that already ended), so a large message never holds up stepping.
        """
        if self.config.command_interface == "position":
            try:
                _, positions = decode_multi_array(data, np.float64)
            except WireError as exc:
                raise CommandError(f"malformed message: {exc}") from exc
            joints = self.robot.num_joints
            if positions.size != joints:
                raise CommandError(
                    f"expected {joints} positions (in the order {', '.join(self.robot.joint_names)}), "
                    f"got {positions.size}"
                )
            if not np.isfinite(positions).all():
                raise CommandError("positions contain NaN or inf")
            return positions.reshape(joints).astype(np.float64)
        try:
            message = decode_joint_trajectory(data, max_points=self.config.max_trajectory_points)
            points = message.points
            unknown = [name for name in message.joint_names if name not in self._from_wire]
            if unknown and self._renamed:  # the model's own names are not the drivers'
                raise CommandError(
                    f"unknown joint '{unknown[0]}' (this robot's joints are {', '.join(self._from_wire)})"
                )
            return parse_goal(
                [self._from_wire.get(name, name) for name in message.joint_names],
                stamp_s=message.stamp_ns / _NS,
                times_s=[p.time_from_start_ns / _NS for p in points],
                positions=[p.positions for p in points],
                velocities=[p.velocities for p in points],
                accelerations=[p.accelerations for p in points],
                robot_joints=self._axes,
                lower=self._axis_lower,
                upper=self._axis_upper,
                allow_partial=self.config.allow_partial_joints_goal,
                now_s=self.time_ns / _NS,
                efforts=[p.effort for p in points],
                optional_joints=self.robot.extra.names,
                passive_joints=self.robot.passive_joints,
            )
        except (WireError, TrajectoryError) as exc:
            raise CommandError(str(exc)) from exc

    def apply_command(self, world: int, command: TrajectoryGoal | np.ndarray) -> bool:
        """Put a parsed world command in effect on a mirrored world; return whether it was clamped."""
        if isinstance(command, TrajectoryGoal):
            # Extra axes have no measured state here: their ramps start from their last command.
            extra = self.extra_targets[world]
            self.followers[world].start(
                command,
                self.time_ns / _NS,
                np.concatenate([self.targets[world], extra]),
                np.concatenate([self.env.measured_positions()[world], extra]),
                np.concatenate([self.env.measured_velocities()[world], np.zeros_like(extra)]),
            )
            clamped = command.clamped
        else:
            clamped_positions = self.robot.clamp(command)
            clamped = bool(np.any(clamped_positions != command))
            self.targets[world] = clamped_positions
        self.commanded[world] = True
        return clamped

    def apply_world_command(self, world: int, data: bytes) -> bool:
        """``parse_command`` then ``apply_command``."""
        return self.apply_command(world, self.parse_command(data))

    def batch_joint_states(self) -> bytes:
        """``batch/joint_states``: every world, names ``env_<i>/<joint>``, stamped with sim time."""
        env = self.env
        return self._batch_state.encode(
            self.time_ns, env.measured_positions(), env.measured_velocities(), env.backend.joint_efforts()
        )

    def joint_states(self) -> list[bytes]:
        """Each mirrored world's JointState, in ``mirrored`` order: every hinge and slide joint of the
        model, actuated or passive (the controlled ones as measured, sensing noise included)."""
        rows, state, backend = self.mirrored, self.robot.state_joints, self.env.backend
        positions = backend.read("qpos", state.qpos_adr)[rows]
        velocities = backend.read("qvel", state.dof_adr)[rows]
        efforts = backend.read("qfrc_actuator", state.dof_adr)[rows]
        positions[:, self._controlled_in_state] = self.env.measured_positions()[rows]
        velocities[:, self._controlled_in_state] = self.env.measured_velocities()[rows]
        return [
            self._world_state.encode(self.time_ns, positions[i], velocities[i], efforts[i])
            for i in range(len(rows))
        ]

    def set_task_inputs(self, world: int, values: Sequence[float]) -> None:
        """Set one world's task inputs from an operator's goal or velocity command (clamped by the
        task into what it trains on); CommandError, and nothing changes, if a value is not finite."""
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise CommandError(f"{self.env.task.input_message} contains NaN or inf")
        self.env.inputs[world] = self.env.task.inputs_from_goal(values)

    def sensor_rows(self) -> np.ndarray:
        """(N, F) sensor values of every world, columns named by ``sensors.fields``; the IMU's as it
        measures them (the randomization's IMU noise and bias)."""
        return self.env.measured_sensors()

    def batch_sensors(self, rows: np.ndarray) -> bytes:
        """``batch/sensors``: ``sensor_rows`` plus ``step`` (as in batch/task, to pair with the state)."""
        step = np.full((len(rows), 1), control_step(self.time_ns, self.env.backend.control_dt))
        return self._batch_sensors.encode(np.concatenate([rows, step], axis=1))

    def task_signals(self) -> bytes:
        """``batch/task``: reward, terminated, truncated of the last step, the task inputs, success, step.

        Before any step (or right after a reset) the step signals are zero.
        """
        return self._task.encode(
            task_signal_rows(self.last_result, self.env.inputs, self.time_ns, self.env.backend.control_dt)
        )
