"""The policy node's deploy role: ROS topics around ``sim_bridge_core.deploy.deployment.Deployment``.

A command is computed when a JointState arrives and the control schedule is due, so the command
answers the freshest state with the least delay; a watchdog timer at the control rate catches
states that stop coming. Time is the node's clock (sim time under use_sim_time), states and
commands travel as serialized bytes (numpy codec), and commands go out through the policy's
command interface: JointTrajectory on joint_trajectory or Float64MultiArray on joint_commands.
With ``record`` the robot's states, the commands, goals and /clock go to a bag.
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.clock import Clock, ClockType, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock as RosClock
from sensor_msgs.msg import Imu, JointState
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.deployment import NON_FINITE_OUTPUT, Command, StateError
from sim_bridge_core.deploy.policy import DeployPlan, PolicyConfig, load_deployment
from sim_bridge_core.jobs.training import prepare_output_dir, rollouts_dir
from sim_bridge_core.models import RobotModel
from sim_bridge_core.recording import RecordingError
from sim_bridge_core.recording.bag import COMMAND_TYPES, IMU_TYPE, JOINT_STATE_TYPE, camera_topics
from sim_bridge_core.ros.commands import COMMAND_TOPICS
from sim_bridge_core.ros.controllers import CONTROLLER_TIMEOUT_S, controller_of, read_controller_joints
from sim_bridge_core.ros.parameters import watch_config
from sim_bridge_core.ros.recording import CAMERA_MESSAGES, NodeRecorder
from sim_bridge_core.ros.task_inputs import input_topic, input_values
from sim_bridge_core.simulator.wire import (
    JointStateDecoder,
    JointTrajectoryEncoder,
    MultiArrayEncoder,
    WireError,
)
from std_srvs.srv import SetBool

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _deploy_path(callback: Callable[..., None]) -> Callable[..., None]:
    """A deploy callback whose unexpected failure holds the robot instead of killing the node."""

    @functools.wraps(callback)
    def guarded(self: DeployRole, *args: Any) -> None:
        try:
            callback(self, *args)
        except Exception as exc:
            self._deploy_failed(exc)

    return guarded


def _command_encoder(plan: DeployPlan) -> Callable[[np.ndarray], bytes]:
    """Target positions (robot order) to the serialized command of the plan's interface."""
    if plan.command_interface == "trajectory":
        return functools.partial(
            JointTrajectoryEncoder(plan.driver_names).encode, 0, time_from_start_ns=round(plan.period_s * 1e9)
        )
    # the array in the controller's joint order
    order, encode = plan.command_order(), MultiArrayEncoder(np.float64, ("joint",)).encode
    return lambda positions: encode(positions[order])


class DeployRole:
    """Drives a robot: the robot-facing subscriptions and command publisher, ``~/enable``, the
    watchdog, the clock handling and the recording, around one Deployment. ``finished`` is set
    by ``stop()``, or when no /clock comes (``exit_code`` 2)."""

    def __init__(self, node: Node, config: PolicyConfig) -> None:
        self.config = config
        self.exit_code = 0
        self.finished = threading.Event()
        self._node = node
        self._log = node.get_logger()
        self._clock = node.get_clock()
        plan = load_deployment(config)
        if plan.runtime == "torch":
            import torch

            torch.set_num_threads(1)  # one observation per call: a thread pool only adds wake-up jitter
        for warning in plan.warnings:
            self._log.warning(f"{warning} (allow_contract_mismatch)")
        self.deployment = deployment = plan.deployment
        robot, task = deployment.robot, deployment.task
        self._interface = plan.command_interface
        self._encode = _command_encoder(plan)
        self._states = JointStateDecoder(plan.driver_names)
        # joint_states callback -> command published, per command (reported at shutdown)
        self._latencies: collections.deque[float] = collections.deque(maxlen=100_000)
        command_type, command_topic = COMMAND_TOPICS[self._interface]
        self._publisher = node.create_publisher(command_type, command_topic, RELIABLE)
        # Watched from before the controller check, which spins the node: a dry_run set meanwhile counts.
        watch_config(node, PolicyConfig, "policy", lambda: self.config, self._set_config)
        self._check_controller(plan)
        # Under use_sim_time the node's time is 0 until a /clock comes (and a lockstep simulator's
        # first /clock is 0 too): whether one came is what tells them apart; until then no command.
        # (The probe stays: destroying a subscription under a multi-threaded executor that is
        # waiting on it breaks the executor.)
        self._clock_seen = not node.get_parameter("use_sim_time").value
        if not self._clock_seen:
            node.create_subscription(
                RosClock, "/clock", self._on_first_clock, qos_profile_sensor_data, raw=True
            )
        self._started = time.monotonic()
        # Sensors are heard from best-effort drivers (IMUs publish sensor-data QoS) and reliable ones.
        self._states_topic = node.create_subscription(
            JointState, "joint_states", self._on_joint_state, qos_profile_sensor_data, raw=True
        ).topic_name
        self._goal_type, goal_topic, goal_bag_type = input_topic(task, config.cmd_vel_stamped)
        self._goal_topic = node.create_subscription(
            self._goal_type, goal_topic, self._on_goal, RELIABLE, raw=True
        ).topic_name
        recorded = [
            (self._states_topic, JOINT_STATE_TYPE),
            (self._publisher.topic_name, COMMAND_TYPES[self._interface]),
            (self._goal_topic, goal_bag_type),
        ]
        self._imu_topic = ""
        if task.uses_imu:
            self._imu_topic = node.create_subscription(
                Imu, "imu", self._on_imu, qos_profile_sensor_data, raw=True
            ).topic_name
            recorded.append((self._imu_topic, IMU_TYPE))
        node.create_service(SetBool, "~/enable", self._on_enable)
        # On the steady clock: it must run when no /clock comes (use_sim_time) to say so.
        node.create_timer(plan.period_s, self._on_watchdog, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._jump = self._clock.create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1)),
            post_callback=self._on_clock_jump,
        )
        if config.record:
            recorded += self._hear_cameras(robot)
        self._recorder = self._open_recorder(recorded) if config.record else None
        armed = "commanding" if deployment.enabled else "disabled until ~/enable"
        self._log.info(
            f"deploying {config.checkpoint} ({plan.runtime}; {task.name} on {robot.name}, "
            f"{robot.num_joints} joints) at {1.0 / plan.period_s:g} Hz through {self._interface} on "
            f"{self._publisher.topic_name}, {armed}{' [dry run]' if config.dry_run else ''}"
        )

    def start(self) -> None:
        """Nothing to start: the callbacks drive the robot from the moment the executor spins."""

    def stop(self) -> None:
        """Ctrl-C leaves the robot holding where it is; ``finished`` at once."""
        hold = self.deployment.set_enabled(False)
        if hold is not None:
            self._send(hold)
        self.finished.set()

    def close(self) -> None:
        """Report the latency and close the bag (the node is being destroyed)."""
        if self._latencies:
            ms = 1e3 * np.array(list(self._latencies))  # a callback may still be appending
            p50, p99 = np.percentile(ms, [50, 99])
            self._log.info(
                f"deploy latency (joint_states callback -> command published): p50 {p50:.3f} ms, "
                f"p99 {p99:.3f} ms, max {ms.max():.3f} ms over {ms.size} commands"
            )
        if self._recorder is not None:
            self._recorder.close()

    # Start-up -----------------------------------------------------------------------------------

    def _check_controller(self, plan: DeployPlan) -> None:
        """Refuse to start when the controller behind the command topic drives other joints, or (for
        a forward position controller's array) the same joints in another order."""
        controller = controller_of(self._publisher.topic_name, self._node.get_namespace())
        if not controller:
            return
        joints = read_controller_joints(self._node, controller, CONTROLLER_TIMEOUT_S)
        if joints is None and self._interface == "position" and not self.config.command_joint_names:
            # An unnamed array in a guessed order would give each joint another's target.
            raise ConfigError(
                f"policy.command_joint_names: could not read {controller}/joints to check the order of its "
                "array; start the controller first, or give command_joint_names in its order"
            )
        if joints is None:
            self._log.warning(
                f"could not read {controller}/joints; the order of the joints it takes is not checked"
            )
            return
        expected = list(plan.command_joint_names if self._interface == "position" else plan.driver_names)
        if self._interface == "position" and joints != expected:
            raise ConfigError(
                f"policy.command_joint_names: {controller} takes its joints in the order {joints}, the "
                f"policy would send {expected}"
            )
        if sorted(joints) != sorted(expected):
            raise ConfigError(
                f"policy.robot: {controller} drives the joints {joints}, the policy commands {expected}"
            )

    def _open_recorder(self, topics: list[tuple[str, str]]) -> NodeRecorder:
        """rollouts/ in output_dir: what the robot said and what it was told, as `ros2 bag record` would."""
        path = rollouts_dir(prepare_output_dir(self.config.output_dir))
        try:
            return NodeRecorder(self._node, path, topics, max_bag_size_mb=self.config.record_split_mb)
        except RecordingError as exc:
            raise ConfigError(f"policy.record: {exc}") from exc

    def _hear_cameras(self, robot: RobotModel) -> list[tuple[str, str]]:
        """The robot's camera streams, subscribed only to be recorded: each callback queues the
        bytes it takes and nothing more, so the control callbacks beside them barely wait."""
        recorded = []
        for camera in robot.cameras:
            for topic, msgtype in camera_topics(camera.name, camera.depth):
                name = self._node.resolve_topic_name(topic)
                self._node.create_subscription(
                    CAMERA_MESSAGES[msgtype],
                    topic,
                    functools.partial(self._record, name),
                    qos_profile_sensor_data,  # best effort: hears reliable and best-effort drivers
                    raw=True,
                )
                recorded.append((name, msgtype))
        return recorded

    # Callbacks ----------------------------------------------------------------------------------

    def _record(self, topic: str, data: bytes) -> None:
        if self._recorder is not None:
            self._recorder.record(topic, data)

    def _now_s(self) -> float:
        return self._clock.now().nanoseconds / 1e9

    def _on_first_clock(self, data: bytes) -> None:
        self._clock_seen = True

    def _deploy_failed(self, exc: Exception) -> None:
        """Anything unexpected on the deploy path: one hold, disabled, one error line; the node stays
        up and answers ~/enable."""
        self._log.error(
            f"deploy failed: {type(exc).__name__}: {exc}; holding position, disabled until ~/enable",
            throttle_duration_sec=2.0,
        )
        hold = self.deployment.fail()
        if hold is not None:
            self._send(hold)

    @_deploy_path
    def _on_joint_state(self, data: bytes) -> None:
        start = time.perf_counter()
        self._record(self._states_topic, data)
        if not self._clock_seen:
            return  # the watchdog says that it waits for /clock
        try:
            state = self._states.decode(data)
            self.deployment.on_joint_state(
                self._now_s(), state.stamp_ns / 1e9, state.names, state.position, state.velocity
            )
        except (StateError, WireError) as exc:
            self._log.warning(f"no command this cycle: {exc}", throttle_duration_sec=1.0)
            return
        if self.deployment.due:
            if self._command(self._now_s()):
                self._latencies.append(time.perf_counter() - start)
        elif idle := self.deployment.idle_reason():
            self._log.warning(idle, throttle_duration_sec=2.0)

    @_deploy_path
    def _on_watchdog(self) -> None:
        """No /clock yet (use_sim_time), or states that stopped coming: say so, or let tick decide
        (one hold command, then silence)."""
        if self.finished.is_set():
            return
        if not self._clock_seen:
            waited = time.monotonic() - self._started
            if waited > self.config.clock_timeout_s:
                self._log.error(
                    f"no /clock in {waited:.0f} s and use_sim_time is true: start the simulator, or "
                    "give use_sim_time:=false for a robot on the system clock; giving up"
                )
                self.exit_code = 2
                self.finished.set()
            else:
                self._log.info(
                    "waiting for /clock (use_sim_time is true); no command until it comes",
                    throttle_duration_sec=2.0,
                )
            return
        now = self._now_s()
        if self.deployment.stale(now):
            self._command(now)

    def _on_clock_jump(self, jump: TimeJump) -> None:
        self._log.warning(
            f"this node's clock jumped back {-jump.delta.nanoseconds / 1e9:.3f} s: holding until fresh "
            "states come, then the control schedule restarts"
        )
        self.deployment.on_clock_jump()

    def _command(self, now: float) -> bool:
        """Tick the deployment; whether a command went out."""
        command, reason = self.deployment.tick(now)
        if reason == NON_FINITE_OUTPUT or reason.startswith("the policy output shape"):
            self._log.error(f"no command: {reason}", throttle_duration_sec=2.0)
        elif reason and command is not None and not command.hold:
            self._log.info(reason, throttle_duration_sec=2.0)
        elif reason:
            self._log.warning(f"no command: {reason}", throttle_duration_sec=2.0)
        if command is not None:
            self._send(command)
        return command is not None

    @_deploy_path
    def _on_goal(self, data: bytes) -> None:
        self._record(self._goal_topic, data)
        kind = self.deployment.task.input_message
        before = self.deployment.inputs
        try:
            values = input_values(deserialize_message(data, self._goal_type))
            inputs = self.deployment.on_goal(values, self._now_s())
        except StateError as exc:
            self._log.warning(f"rejected {kind}: {exc}", throttle_duration_sec=1.0)
            return
        if before is None or not np.array_equal(before, inputs):
            self._log.info(
                f"{kind} in effect: {[round(float(v), 4) for v in inputs]}", throttle_duration_sec=1.0
            )

    @_deploy_path
    def _on_imu(self, data: bytes) -> None:
        start = time.perf_counter()
        self._record(self._imu_topic, data)
        if not self._clock_seen:
            return
        imu = deserialize_message(data, Imu)
        stamp = imu.header.stamp.sec + imu.header.stamp.nanosec * 1e-9
        o, w, a = imu.orientation, imu.angular_velocity, imu.linear_acceleration
        try:
            self.deployment.on_imu(
                self._now_s(), stamp, (o.x, o.y, o.z, o.w), (w.x, w.y, w.z), (a.x, a.y, a.z)
            )
        except StateError as exc:
            self._log.warning(f"rejected imu: {exc}", throttle_duration_sec=1.0)
            return
        if self.deployment.due and self._command(self._now_s()):  # the state waited for this reading
            self._latencies.append(time.perf_counter() - start)

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        try:
            hold = self.deployment.set_enabled(request.data)
            if hold is not None:
                self._send(hold)
        except Exception as exc:
            self._deploy_failed(exc)
            response.success, response.message = False, f"failed: {type(exc).__name__}: {exc}"
            return response
        ramp = " (ramping to home first)" if request.data and self.deployment.ramp_pending else ""
        response.success = True
        response.message = f"enabled{ramp}" if request.data else "holding position"
        if request.data and not self.config.dry_run and self._publisher.get_subscription_count() == 0:
            unheard = f"nothing subscribes {self._publisher.topic_name}: no controller will hear the commands"
            self._log.warning(unheard)
            response.message += f"; warning: {unheard}"
        return response

    def _send(self, command: Command) -> None:
        if self.config.dry_run:
            kind = "hold" if command.hold else "command"
            self._log.info(
                f"[dry run] {kind} {np.round(command.positions, 4).tolist()}", throttle_duration_sec=1.0
            )
            return
        data = self._encode(command.positions)
        self._publisher.publish(data)
        self._record(self._publisher.topic_name, data)

    def _set_config(self, config: PolicyConfig) -> None:
        if config.dry_run != self.config.dry_run and self.deployment.enabled:
            # Commands that were only logged must not go out from wherever the robot is: hold, and
            # let the operator arm it again (the ramp to home first).
            hold = self.deployment.set_enabled(False)
            self.config = config
            if hold is not None:
                self._send(hold)
            self._log.warning("dry_run changed: disabled, holding; call ~/enable to arm again")
            return
        self.config = config
