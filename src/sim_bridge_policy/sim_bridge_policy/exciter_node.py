"""The exciter node (``bringup excite``): a safe excitation of every joint, recorded for system
identification. The logic is ``sim_bridge_core.sysid.excitation.Exciter``; this node moves bytes.

At the first ``joint_states`` it plans the excitation about the measured pose (refusing, with one
line, a joint with no room to move) and sends it through the robot's controller: the whole
trajectory at once on ``joint_trajectory`` (``command_interface: trajectory``) or one position
per period on ``joint_commands`` (``position``). The robot's states, the commands and ``/clock``
go to ``<output_dir>/rollouts/`` as deploy records them. The trajectory is stamped on this
node's clock, so the node refuses to start when the robot stamps its states on another one.
When the excitation has run its course the node ends the process (exit 0). If the states stop
for ``state_timeout_s`` it commands a hold at the last measured pose and ends with exit 1; so
does Ctrl-C (the hold, exit 0). ``dry_run`` prints the excitation's extent against the limits
and moves nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.deployment import require_bounded, safety_filter
from sim_bridge_core.jobs.training import rollouts_dir
from sim_bridge_core.models import ModelError, load_robot
from sim_bridge_core.recording import RecordingError
from sim_bridge_core.recording.bag import (
    COMMAND_TYPES,
    JOINT_STATE_TYPE,
)
from sim_bridge_core.ros.commands import COMMAND_TOPICS
from sim_bridge_core.ros.controllers import CONTROLLER_TIMEOUT_S, controller_of, read_controller_joints
from sim_bridge_core.ros.parameters import declare_config
from sim_bridge_core.ros.recording import NodeRecorder
from sim_bridge_core.ros.run import run_node
from sim_bridge_core.simulator.wire import JointStateDecoder, WireError
from sim_bridge_core.sysid.config import ExcitationConfig, ExciterConfig
from sim_bridge_core.sysid.excitation import ExcitationPlan, Exciter

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# The robot's state stamps and this node's clock may differ by this much (transport, queues), s.
CLOCK_TOLERANCE_S = 0.25
# Zero-stamped states skipped before starting without the clock check (a robot that never stamps).
UNSTAMPED_STATES = 5


def describe_plan(
    plan: ExcitationPlan, lower: np.ndarray, upper: np.ndarray, velocity: np.ndarray, acceleration: float
) -> list[str]:
    """The excitation's extent against the limits (``velocity``: the speed allowed), one line per joint."""
    extent = plan.extent()
    lines = [
        f"excitation of {plan.duration_s:g} s about the current pose "
        f"(rests {plan.rest_s:g} s, fades {plan.ramp_s:g} s):",
        f"  {'joint':<10} {'start':>8} {'min':>8} {'max':>8} {'limits':>19} {'|v| peak':>9} {'allowed':>7} "
        f"{'|a| peak':>9} {'limit':>7}  frequencies, Hz",
    ]
    for j, name in enumerate(plan.joint_names):
        frequencies = ", ".join(f"{f:.3g}" for f in plan.frequencies_hz[j])
        lines.append(
            f"  {name:<10} {plan.start[j]:8.3f} {extent['min_position'][j]:8.3f} "
            f"{extent['max_position'][j]:8.3f} [{lower[j]:8.3f},{upper[j]:8.3f}] "
            f"{extent['peak_velocity'][j]:9.3f} {velocity[j]:7.3f} "
            f"{extent['peak_acceleration'][j]:9.3f} {acceleration:7.3f}  {frequencies}"
        )
    return lines


class ExciterNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("exciter", **kwargs)
        self.config = declare_config(self, ExciterConfig, "exciter")
        self.excitation = declare_config(self, ExcitationConfig, "excitation", prefix="excitation.")
        self.excitation.check()
        try:
            self.robot = load_robot(self.config.model, joint_names=self.config.joint_names)
        except ModelError as exc:
            raise ConfigError(f"exciter.model: {exc}") from exc
        period = 1.0 / self.excitation.point_rate_hz
        safety = safety_filter(
            self.robot,
            period,
            self.config.position_limits,
            self.config.velocity_limits,
            self.config.max_position_step,
            section="exciter",
        )
        require_bounded(safety, self.robot, "exciter")
        names = tuple(self.config.driver_joint_names) or self.robot.joint_names
        if len(names) != self.robot.num_joints:
            raise ConfigError(
                f"exciter.driver_joint_names: {len(names)} names for the {self.robot.num_joints} joints"
            )
        self.exciter = Exciter(self.excitation, self.robot, self.config.command_interface, safety, names)
        self.exit_code = 0
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._states = JointStateDecoder(names)
        self._columns: tuple[tuple[str, ...], np.ndarray] | None = None
        self._last_state: float | None = None
        self._last_positions: np.ndarray | None = None
        self._unstamped = 0
        self._created = time.monotonic()
        command_type, command_topic = COMMAND_TOPICS[self.config.command_interface]
        self._publisher = self.create_publisher(command_type, command_topic, RELIABLE)
        self._check_controller(names)
        subscription = self.create_subscription(
            JointState, "joint_states", self._on_state, qos_profile_sensor_data, raw=True
        )
        self._state_topic = subscription.topic_name
        self._recorder = None if self.config.dry_run else self._open_recorder()
        # On the steady clock: it must run when no /clock comes (use_sim_time) to say so.
        self._sim_time = self.get_parameter("use_sim_time").value
        self.create_timer(0.05, self._on_watchdog, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"exciting {self.robot.num_joints} joints of {self.robot.name} through "
            f"{self.config.command_interface} on {self._publisher.topic_name}, "
            f"states from {self._state_topic}" + (" [dry run]" if self.config.dry_run else "")
        )

    def _check_controller(self, names: tuple[str, ...]) -> None:
        """A forward position controller takes an unnamed array in its own joint order: refuse to
        start unless that order is the robot file's (else each joint gets another's target)."""
        controller = controller_of(self._publisher.topic_name, self.get_namespace())
        if not controller or self.config.command_interface != "position" or self.config.dry_run:
            return
        joints = read_controller_joints(self, controller, CONTROLLER_TIMEOUT_S)
        if joints is None:
            raise ConfigError(
                f"exciter.joint_names: could not read {controller}/joints to check the order of its array; "
                "start the controller first"
            )
        if joints != list(names):
            raise ConfigError(
                f"exciter.joint_names: {controller} takes its joints in the order {joints}, the robot file "
                f"gives {list(names)}: list joint_names in the controller's order"
            )

    def _open_recorder(self) -> NodeRecorder:
        path = (
            Path(self.config.output_dir or time.strftime("runs/%Y%m%d-%H%M%S_excite")).expanduser().resolve()
        )
        topics = [
            (self._state_topic, JOINT_STATE_TYPE),
            (self._publisher.topic_name, COMMAND_TYPES[self.config.command_interface]),
        ]
        try:
            path.mkdir(parents=True, exist_ok=True)
            return NodeRecorder(self, rollouts_dir(path), topics)
        except (OSError, RecordingError) as exc:
            raise ConfigError(f"exciter.output_dir: cannot record to {path}: {exc}") from exc

    def _record(self, topic: str, data: bytes) -> None:
        if self._recorder is not None:
            self._recorder.record(topic, data)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _on_state(self, data: bytes) -> None:
        with self._lock:
            if self.finished.is_set():
                return
            self._record(self._state_topic, data)
            try:
                state = self._states.decode(data)
                positions = self._positions(state.names, state.position)
            except (WireError, ValueError) as exc:
                self.get_logger().warning(f"ignored joint state: {exc}", throttle_duration_sec=1.0)
                return
            self._last_state, self._last_positions = time.monotonic(), positions
            now = self._now()
            if self.exciter.plan is None:
                if now <= 0.0:
                    return  # use_sim_time, and no /clock yet: the trajectory's stamp would be wrong
                if not state.stamp_ns and self._unstamped < UNSTAMPED_STATES:
                    self._unstamped += 1  # sim time 0, or a robot that does not stamp: see the next
                    return
                self._start(now, positions, state.stamp_ns / 1e9)
                if self.finished.is_set():
                    return
            for command in self.exciter.commands(now):
                self._publisher.publish(command)
                self._record(self._publisher.topic_name, command)
            if self.exciter.finished(now):
                self.get_logger().info("excitation done: the robot is back at its start pose")
                self._finish(0)

    def _positions(self, names: tuple[str, ...], positions: np.ndarray) -> np.ndarray:
        wanted = self.exciter.driver_names
        if self._columns is None or self._columns[0] != names:
            missing = [j for j in wanted if j not in names]
            if missing:
                raise ValueError(f"joint_states lacks {', '.join(missing)}")
            self._columns = (names, np.array([names.index(j) for j in wanted]))
        values = positions[self._columns[1]]
        if not np.isfinite(values).all():
            raise ValueError("joint_states positions contain NaN or inf")
        return values

    def _start(self, now: float, positions: np.ndarray, stamp: float) -> None:
        try:
            if (
                self.config.command_interface == "trajectory"
                and stamp
                and abs(now - stamp) > CLOCK_TOLERANCE_S
            ):
                # The trajectory is stamped on this node's clock; the controller reads the stamp on
                # its own. If they disagree it would start late, or mid-motion.
                raise ConfigError(
                    f"exciter: joint_states are stamped {now - stamp:+.2f} s from this node's clock; set "
                    "use_sim_time to match the robot's clock (true for a simulated robot)"
                )
            plan = self.exciter.start(now, positions)
        except ConfigError as exc:
            print(f"[exciter] error: {exc}", file=sys.stderr, flush=True)
            self._finish(2)
            return
        safety = self.exciter.safety
        for line in describe_plan(
            plan,
            safety.lower,
            safety.upper,
            self.excitation.velocity_fraction * self.exciter.speed_limits,
            self.excitation.max_acceleration,
        ):
            self.get_logger().info(line)
        if self.config.dry_run:
            self.get_logger().info("dry run: nothing was sent")
            self._finish(0)

    def _on_watchdog(self) -> None:
        with self._lock:
            if self.finished.is_set():
                return
            now = time.monotonic()
            no_clock = self._sim_time and self._now() <= 0.0
            if no_clock and now - self._created <= self.config.start_timeout_s:
                self.get_logger().info(
                    "waiting for /clock (use_sim_time is true); nothing is sent until it comes",
                    throttle_duration_sec=2.0,
                )
            elif no_clock:
                print(
                    f"[exciter] error: no /clock within {self.config.start_timeout_s:g} s and use_sim_time "
                    "is true: start the simulator, or give use_sim_time:=false for a robot on the "
                    "system clock",
                    file=sys.stderr,
                    flush=True,
                )
                self._finish(2)
            elif self._last_state is None:
                if now - self._created > self.config.start_timeout_s:
                    print(
                        f"[exciter] error: no joint state on {self._state_topic} within "
                        f"{self.config.start_timeout_s:g} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    self._finish(1)
            elif now - self._last_state > self.config.state_timeout_s:
                self.get_logger().error(
                    f"joint states stopped for {now - self._last_state:.2f} s: holding and aborting"
                )
                self._hold()
                self._finish(1)

    def _hold(self) -> None:
        if self.exciter.plan is not None and self._last_positions is not None and not self.config.dry_run:
            command = self.exciter.hold(self._last_positions)
            self._publisher.publish(command)
            self._record(self._publisher.topic_name, command)

    def _finish(self, code: int) -> None:
        self.exit_code = code
        if self._recorder is not None:
            self._recorder.close()
        self.finished.set()

    def stop(self) -> None:
        """Ctrl-C: hold where the robot is and close the bag (what was recorded stays readable)."""
        with self._lock:
            if not self.finished.is_set():
                self._hold()
                self._finish(self.exit_code)

    def destroy_node(self) -> None:
        with self._lock:
            if not self.finished.is_set():  # interrupted mid-excitation: stop where the robot is
                self._hold()
                self._finish(self.exit_code)
        super().destroy_node()


def prepare(node: ExciterNode, executor: Executor, stop: threading.Event) -> None:
    """Nothing to start: the node acts on joint states (what `bringup` calls for every node)."""


def main(args: list[str] | None = None) -> int:
    return run_node("exciter", ExciterNode, args, prepare=prepare)


if __name__ == "__main__":
    sys.exit(main())
