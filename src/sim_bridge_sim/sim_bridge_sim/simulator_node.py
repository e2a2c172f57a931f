"""The simulator node: ROS topics and services around ``sim_bridge_core.simulator.core.Simulator``.

Stepping runs on its own thread, paced by the mode; subscriptions and services run on
the executor and hand their work to the simulator under one lock (commands are decoded
and validated before taking it). Batched topics carry serialized bytes both ways, so no
per-step Python message conversion happens. In lockstep mode a step waits until every
world answered the last state: by the batched command, or (one world, or every mirrored
world) by its own joint_trajectory / joint_commands, which is how a deploy-mode policy
node drives the simulator faster than real time on sim time.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Quaternion, Twist, Vector3, WrenchStamped
from nav_msgs.msg import Odometry
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState
from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import RobotModel
from sim_bridge_core.randomization import VisualState
from sim_bridge_core.recording.bag import RecordingError, prepare_output_dir, rollouts_dir
from sim_bridge_core.rendering import require_gl
from sim_bridge_core.ros.commands import COMMAND_TOPICS
from sim_bridge_core.ros.parameters import declare_config, watch_config
from sim_bridge_core.ros.run import run_node
from sim_bridge_core.ros.task_inputs import input_values
from sim_bridge_core.simulator.core import CommandError, Simulator, SimulatorConfig
from std_msgs.msg import Float32MultiArray, Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from sim_bridge_sim.cameras import CameraPublisher

RELIABLE_LATEST = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
# Falling further behind the wall clock than this many periods resets the schedule
# (after a pause or a stall) instead of stepping in a burst to catch up.
MAX_LAG_PERIODS = 10


def sensor_topics(blocks: dict[str, slice]) -> dict[str, tuple[type, str]]:
    """Sensor block -> (message type, topic) per world (DESIGN: ``odom``, ``imu``, ``<site>/imu``,
    ``<site>/wrench``)."""

    def topic(block: str) -> tuple[type, str]:
        if block == "base":
            return Odometry, "odom"
        return (Imu, block) if _is_imu(block) else (WrenchStamped, f"{block}/wrench")

    return {block: topic(block) for block in blocks}


def _is_imu(block: str) -> bool:
    return block == "imu" or block.endswith("/imu")


def sensor_message(
    block: str, values: np.ndarray, stamp: Time, robot: RobotModel
) -> Odometry | Imu | WrenchStamped:
    """One world's sensor block (columns as ``sim_bridge_core.sim.sensors`` names them) as its message."""
    v = [float(x) for x in values]
    if block == "base":
        message = Odometry(child_frame_id=robot.base.name)
        message.header.frame_id = "world"
        pose, twist = message.pose.pose, message.twist.twist
        pose.position = Point(x=v[0], y=v[1], z=v[2])
        pose.orientation = Quaternion(x=v[3], y=v[4], z=v[5], w=v[6])
        twist.linear, twist.angular = Vector3(x=v[7], y=v[8], z=v[9]), Vector3(x=v[10], y=v[11], z=v[12])
    elif _is_imu(block):
        message = Imu()
        message.header.frame_id = robot.imu.name if block == "imu" else block.removesuffix("/imu")
        message.orientation = Quaternion(x=v[0], y=v[1], z=v[2], w=v[3])
        message.angular_velocity = Vector3(x=v[4], y=v[5], z=v[6])
        message.linear_acceleration = Vector3(x=v[7], y=v[8], z=v[9])
    else:
        message = WrenchStamped()
        message.header.frame_id = block
        message.wrench.force, message.wrench.torque = (
            Vector3(x=v[0], y=v[1], z=v[2]),
            Vector3(x=v[3], y=v[4], z=v[5]),
        )
    message.header.stamp = stamp
    return message


class SimulatorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("simulator", **kwargs)
        self.config = declare_config(self, SimulatorConfig, "simulator")
        self.sim = Simulator(self.config)
        watch_config(self, SimulatorConfig, "simulator", lambda: self.sim.config, self._set_config)
        self._lock = threading.Condition()
        self._paused = False
        self._answered = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="simulation", daemon=True)

        prefix = "" if self.config.num_envs == 1 else "env_{}/"
        self._create_batch_topics()
        self._create_world_topics(prefix)
        self._cameras = self._create_cameras(prefix)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(SetBool, "~/pause", self._on_pause)
        self.create_service(Trigger, "~/step", self._on_step)
        self.create_service(Trigger, "~/randomize", self._on_randomize)
        robot = self.sim.robot
        self.get_logger().info(
            f"{self.config.num_envs} x {robot.name} ({robot.num_joints} joints, {robot.path}) on "
            f"{self.config.backend}, task '{self.config.task}', mode {self.config.mode}, "
            f"control_dt {self.config.control_dt} s = {self.sim.env.backend.substeps} x {robot.physics_dt} s"
        )

    def _create_batch_topics(self) -> None:
        """The lockstep ``batch/*`` topics for every world, /clock and randomization/applied."""
        self._clock_pub = (
            self.create_publisher(Clock, "/clock", RELIABLE) if self.config.publish_clock else None
        )
        self._batch_state_pub = self.create_publisher(JointState, "batch/joint_states", RELIABLE_LATEST)
        self._task_pub = self.create_publisher(Float32MultiArray, "batch/task", RELIABLE_LATEST)
        self._applied_pub = self.create_publisher(Float64MultiArray, "randomization/applied", LATCHED)
        self.create_subscription(
            JointTrajectory, "batch/joint_trajectory", self._on_batch_command, RELIABLE_LATEST, raw=True
        )
        self._sensors_pub = (
            None
            if self.sim.sensors.empty
            else self.create_publisher(Float32MultiArray, "batch/sensors", RELIABLE_LATEST)
        )

    def _create_world_topics(self, prefix: str) -> None:
        """Each mirrored world's robot topics, as a ros2_control robot has them: joint_states, the
        sensors, the controller's command topic and, for velocity-commanded tasks, cmd_vel."""
        command_type, command_topic = COMMAND_TOPICS[self.config.command_interface]
        self._world_state_pubs = []
        self._world_sensor_pubs: list[dict[str, Publisher]] = []
        blocks = self.sim.sensors.blocks
        for world in self.sim.mirrored:
            ns = prefix.format(world)
            self._world_state_pubs.append(self.create_publisher(JointState, f"{ns}joint_states", RELIABLE))
            self._world_sensor_pubs.append(
                {
                    block: self.create_publisher(kind, f"{ns}{topic}", RELIABLE)
                    for block, (kind, topic) in sensor_topics(blocks).items()
                }
            )
            self.create_subscription(
                command_type,
                f"{ns}{command_topic}",
                lambda data, world=world: self._on_world_command(world, data),
                RELIABLE,
                raw=True,
            )
            if self.sim.env.task.input_message == "cmd_vel":
                self.create_subscription(
                    Twist, f"{ns}cmd_vel", lambda data, world=world: self._on_cmd_vel(world, data), RELIABLE
                )

    def _create_cameras(self, prefix: str) -> CameraPublisher | None:
        """The robot's cameras for each mirrored world, recorded when asked; None (GL never
        touched) when the robot lists none."""
        if self.config.record_cameras and not self.sim.robot.cameras:
            raise ConfigError("simulator.record_cameras: the robot lists no cameras to record")
        if not self.sim.robot.cameras:
            return None
        require_gl()
        record_to = None
        if self.config.record_cameras:
            record_to = rollouts_dir(prepare_output_dir(self.config.output_dir, "simulator.output_dir"))
        self._camera_columns = np.arange(self.sim.robot.model.nq)
        self._camera_worlds = np.asarray(self.sim.mirrored)
        try:
            return CameraPublisher(
                self,
                self.sim.robot,
                self.sim.robot.cameras,
                [prefix.format(world) for world in self.sim.mirrored],
                self._camera_snapshot,
                lambda: self.sim.time_ns,
                record_to,
            )
        except RecordingError as exc:
            raise ConfigError(f"simulator.record_cameras: {exc}") from exc

    def start(self) -> None:
        self._thread.start()
        if self._cameras is not None:
            self._cameras.start()

    def destroy_node(self) -> None:
        self.stop()
        super().destroy_node()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self._cameras is not None:
            self._cameras.stop()

    # Stepping -------------------------------------------------------------------------------

    def _run(self) -> None:
        period = self.config.control_dt / self.config.real_time_factor
        with self._lock:
            self._publish()
        deadline = time.perf_counter()
        while True:
            if self.config.mode == "realtime":
                deadline += period
                delay = deadline - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -MAX_LAG_PERIODS * period:
                    deadline = time.perf_counter()
            with self._lock:
                if not self._wait_for_turn():
                    return
                self._advance(self.sim.step)

    def _wait_for_turn(self) -> bool:
        """Block (lock held) until the mode allows the next step; False when stopping."""
        resend_at = time.monotonic() + self.config.lockstep_resend_s
        while not self._stopping:
            if self._paused:
                self._lock.wait(timeout=0.1)
                continue
            if self.config.mode != "lockstep" or self._answered:
                return True
            self._lock.wait(timeout=max(0.0, resend_at - time.monotonic()))
            if not self._answered and time.monotonic() >= resend_at:
                self._publish()
                resend_at = time.monotonic() + self.config.lockstep_resend_s
        return False

    def _advance(self, change: Callable[[], object]) -> None:
        """Step or reset the worlds (``change``) and publish the new state, which in lockstep waits
        for an answer of its own (lock held)."""
        change()
        self._answered = False
        self._publish()

    def _publish(self) -> None:
        if not rclpy.ok():
            return
        stamp = self.sim.time_ns
        if self._clock_pub is not None:
            self._clock_pub.publish(
                Clock(clock=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000))
            )
        # Sensors first: a client that acts on a world's joint_states (a deployed policy) finds the
        # same instant's IMU already there.
        if self._sensors_pub is not None:
            self._publish_sensors(stamp)
        self._batch_state_pub.publish(self.sim.batch_joint_states())
        self._task_pub.publish(self.sim.task_signals())
        for publisher, data in zip(self._world_state_pubs, self.sim.joint_states(), strict=True):
            publisher.publish(data)
        self._publish_applied()

    def _publish_sensors(self, stamp_ns: int) -> None:
        rows = self.sim.sensor_rows()
        self._sensors_pub.publish(self.sim.batch_sensors(rows))
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        blocks = self.sim.sensors.blocks
        for world, publishers in zip(self.sim.mirrored, self._world_sensor_pubs, strict=True):
            for block, publisher in publishers.items():
                publisher.publish(sensor_message(block, rows[world, blocks[block]], stamp, self.sim.robot))

    def _camera_snapshot(self) -> tuple[int, np.ndarray, VisualState | None]:
        """The sim time, the published worlds' qpos and their visual randomization, copied under the
        lock for the cameras."""
        columns, worlds = self._camera_columns, self._camera_worlds
        with self._lock:
            randomizer = self.sim.env.randomizer
            visual = None if randomizer is None else randomizer.visual_state(worlds)
            return self.sim.time_ns, self.sim.env.backend.read("qpos", columns)[worlds], visual

    # Commands -------------------------------------------------------------------------------

    def _on_batch_command(self, data: bytes) -> None:
        with self._lock:
            try:
                stamp = self.sim.apply_batch_command(
                    data, expected_stamp_ns=self.sim.time_ns if self.config.mode == "lockstep" else None
                )
            except CommandError as exc:
                self._reject("batch/joint_trajectory", exc)
                return
            if stamp == self.sim.time_ns:
                self._answered = True
                self._lock.notify_all()

    def _on_world_command(self, world: int, data: bytes) -> None:
        topic = COMMAND_TOPICS[self.config.command_interface][1]
        try:
            command = self.sim.parse_command(data)  # outside the lock: stepping goes on meanwhile
        except CommandError as exc:
            self._reject(topic, exc)
            return
        with self._lock:
            clamped = self.sim.apply_command(world, command)
            if self.sim.commanded.all():  # lockstep: every world answered the pending state
                self._answered = True
                self._lock.notify_all()
        if clamped:
            self.get_logger().warning(
                f"{topic}: positions outside the joint limits were clamped", throttle_duration_sec=1.0
            )

    def _on_cmd_vel(self, world: int, message: Twist) -> None:
        """A velocity command: the world's task input until its episode ends (the next one draws its own)."""
        try:
            with self._lock:
                self.sim.set_task_inputs(world, input_values(message))
        except CommandError as exc:
            self._reject("cmd_vel", exc)

    def _reject(self, topic: str, exc: CommandError) -> None:
        if exc.stale:
            self.get_logger().debug(f"ignored {topic}: {exc}", throttle_duration_sec=1.0)
        else:
            self.get_logger().warning(f"rejected {topic}: {exc}", throttle_duration_sec=1.0)

    def _set_config(self, config: SimulatorConfig) -> None:
        with self._lock:
            self.sim.set_randomization(config.randomization, config.randomization_enabled)
            self.sim.config = config
            self._publish_applied()

    def _publish_applied(self) -> None:
        applied = self.sim.randomization_applied()
        if applied is not None:
            self._applied_pub.publish(applied)

    # Services -------------------------------------------------------------------------------

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._advance(self.sim.reset)
        response.success, response.message = True, f"all {self.config.num_envs} worlds reset"
        return response

    def _on_randomize(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            response.success = self.sim.randomize()
            self._publish_applied()
        response.message = "resampled every world" if response.success else "no randomization spec loaded"
        return response

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._lock:
            self._paused = request.data
            self._lock.notify_all()
        response.success, response.message = True, "paused" if request.data else "running"
        return response

    def _on_step(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            if not self._paused:
                response.success, response.message = False, "not paused: call ~/pause true first"
                return response
            self._advance(self.sim.step)
            response.success, response.message = True, f"t = {self.sim.time_ns / 1e9:.6f} s"
        return response


def prepare(node: SimulatorNode, executor: Executor, stop: threading.Event) -> None:
    """Start stepping once the node is on an executor (also what `bringup` calls)."""
    node.start()


def main(args: list[str] | None = None) -> int:
    return run_node("simulator", SimulatorNode, args, prepare=prepare)


if __name__ == "__main__":
    sys.exit(main())
