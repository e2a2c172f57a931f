"""The policy node: ROS topics around ``sim_bridge_core.deploy.Deployment`` (deploy mode) and
``sim_bridge_core.training`` (train and eval modes).

Deploy: a command is computed when a JointState arrives and the control schedule is due, so
the command answers the freshest state with the least delay; a watchdog timer at the control
rate catches states that stop coming. Time is the node's clock (sim time under use_sim_time),
states and commands travel as serialized bytes (numpy codec), and commands go out through the
policy's command interface: JointTrajectory on joint_trajectory or Float64MultiArray on
joint_commands. With ``record`` the robot's states, the commands, goals and /clock go to a bag.

Train / eval: the job runs on its own thread while the executor serves the topics (the ros
transport's lockstep batch/* traffic); when it ends the node sets ``finished``, so a `policy`
process (or a `bringup` composition) exits once the outputs are written. ``stop()`` (SIGINT or
SIGTERM, see ros.run) ends the job at its next step: training still writes its checkpoint,
closes its bag and writes its outputs except the evaluation, and the process exits 0.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import sys
import threading
import time
from pathlib import Path

import numpy as np
from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Imu, JointState
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy import NON_FINITE_OUTPUT, Command, StateError
from sim_bridge_core.env import JobStoppedError
from sim_bridge_core.learning import PpoConfig
from sim_bridge_core.policy import PolicyConfig, load_deployment
from sim_bridge_core.recording import RecordingError
from sim_bridge_core.recording.bag import (
    COMMAND_TYPES,
    IMU_TYPE,
    JOINT_STATE_TYPE,
)
from sim_bridge_core.ros.batch_topics import connect_remote_worlds
from sim_bridge_core.ros.commands import COMMAND_TOPICS
from sim_bridge_core.ros.parameters import declare_config, watch_config
from sim_bridge_core.ros.recording import NodeRecorder
from sim_bridge_core.ros.run import run_node
from sim_bridge_core.ros.task_inputs import input_topic, input_values
from sim_bridge_core.simulator import SimulatorConfig
from sim_bridge_core.training import (
    TrainingJob,
    make_task_for,
    prepare_output_dir,
    rollouts_dir,
    run_evaluation,
)
from sim_bridge_core.wire import (
    JointStateDecoder,
    JointTrajectoryEncoder,
    MultiArrayEncoder,
    WireError,
    decode_multi_array,
)
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class PolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("policy", **kwargs)
        self.config = declare_config(self, PolicyConfig, "policy")
        watch_config(self, PolicyConfig, "policy", lambda: self.config, self._set_config)
        self.exit_code = 0
        self.finished = threading.Event()
        self._job_thread: threading.Thread | None = None
        if self.config.mode == "deploy":
            self._init_deploy()
        else:
            self._init_job()

    def destroy_node(self) -> None:
        if self.config.mode == "deploy":
            if self._latencies:
                ms = 1e3 * np.array(self._latencies)
                p50, p99 = np.percentile(ms, [50, 99])
                self.get_logger().info(
                    f"deploy latency (joint_states callback -> command published): p50 {p50:.3f} ms, "
                    f"p99 {p99:.3f} ms, max {ms.max():.3f} ms over {ms.size} commands"
                )
            if self._recorder is not None:
                self._recorder.close()
        super().destroy_node()

    def start(self) -> None:
        """Start the train/eval job (the executor must be spinning for the ros transport)."""
        if self._job_thread is not None:
            self._job_thread.start()

    def stop(self) -> None:
        """Ask the train/eval job to end at its next step; ``finished`` is set once it wound down."""
        if self._job_thread is None or not self._job_thread.is_alive():
            self.finished.set()  # deploy, or no job running: nothing to wind down
            return
        self._stop_job.set()
        if self.worlds is not None:
            self.worlds.interrupt()  # a step waiting for a simulator that is stopping too

    # Train and eval ---------------------------------------------------------------------------

    def _init_job(self) -> None:
        self.sim = declare_config(self, SimulatorConfig, "sim", prefix="sim.")
        self.ppo = declare_config(self, PpoConfig, "ppo", prefix="ppo.")
        output_dir = prepare_output_dir(self.config.output_dir)
        self.config = dataclasses.replace(self.config, output_dir=str(output_dir))
        if self.config.mode == "train":
            logger = self.get_logger()
            self.job = TrainingJob(self.config, self.ppo, self.sim, log=logger.info, log_error=logger.error)
        self.worlds = None  # fused: built by the job in this process
        self._applied: tuple[np.ndarray, tuple[str, ...]] | None = None  # ros: the simulator's
        if self.config.transport == "ros":
            self.create_subscription(
                Float64MultiArray, "randomization/applied", self._on_applied, LATCHED, raw=True
            )
            self.worlds = connect_remote_worlds(
                self,
                make_task_for(self.sim),
                self.sim.num_envs,
                self.sim.control_dt,
                self.sim.episode_length_s,
                self.config.simulator,
                self.config.step_timeout_s,
                self.sim.command_interface,
            )
        else:  # the worlds are here: publish what is in effect, as the simulator node would
            self._applied_pub = self.create_publisher(Float64MultiArray, "randomization/applied", LATCHED)
        self._stop_job = threading.Event()
        self._job_thread = threading.Thread(target=self._run_job, name="job", daemon=True)
        self.get_logger().info(
            f"{self.config.mode}: {self.sim.task} on {self.sim.model}, transport {self.config.transport}, "
            f"outputs in {output_dir}"
        )

    def _run_job(self) -> None:
        try:
            stop = self._stop_job
            if self.config.mode == "train":
                if self.worlds is None:
                    summary = self.job.run(on_applied=self._applied_pub.publish, stop=stop)
                else:
                    summary = self.job.run(self.worlds, read_applied=lambda: self._applied, stop=stop)
            else:
                summary = run_evaluation(self.config, self.sim, self.worlds, stop)
            outputs = ", ".join(sorted(path.name for path in Path(self.config.output_dir).iterdir()))
            if summary.get("interrupted"):
                done = f"stopped at {summary['env_steps']} env steps, not evaluated"
            else:
                rates = (summary["eval_success_rate_nominal"], summary["eval_success_rate_randomized"])
                done = f"done: eval success {rates[0]:.1%} nominal, {rates[1]:.1%} randomized"
            self.get_logger().info(f"{done}; outputs in {self.config.output_dir}: {outputs}")
        except JobStoppedError:
            self.get_logger().info(f"{self.config.mode} stopped before it had anything to write")
        except ConfigError as exc:
            print(f"[policy] error: {exc}", file=sys.stderr)
            self.exit_code = 2
        except Exception as exc:  # the job died: say why, exit non-zero, leave the checkpoint
            self.get_logger().error(f"{self.config.mode} failed: {type(exc).__name__}: {exc}")
            self.exit_code = 1
        finally:
            self.finished.set()  # ends the process (run_nodes), or whatever waits on it

    def _on_applied(self, data: bytes) -> None:
        try:
            labels, values = decode_multi_array(data, np.float64)
        except WireError as exc:
            self.get_logger().warning(f"rejected randomization/applied: {exc}", throttle_duration_sec=1.0)
            return
        if values.ndim != 2 or len(labels) != 2:
            self.get_logger().warning(
                "rejected randomization/applied: not (env, parameter)", throttle_duration_sec=1.0
            )
            return
        self._applied = (values, tuple(labels[1].split(",")) if values.shape[1] else ())

    # Deploy -------------------------------------------------------------------------------------

    def _init_deploy(self) -> None:
        plan = load_deployment(self.config)
        if plan.runtime == "torch":
            import torch

            torch.set_num_threads(1)  # one observation per call: a thread pool only adds wake-up jitter
        for warning in plan.warnings:
            self.get_logger().warning(f"{warning} (allow_contract_mismatch)")
        self.deployment = deployment = plan.deployment
        robot, task = deployment.robot, deployment.task
        names = robot.joint_names
        self._interface = plan.command_interface
        command_type, command_topic = COMMAND_TOPICS[self._interface]
        self._encode = (
            functools.partial(
                JointTrajectoryEncoder(names).encode, 0, time_from_start_ns=round(plan.period_s * 1e9)
            )
            if self._interface == "trajectory"
            else MultiArrayEncoder(np.float64, ("joint",)).encode
        )
        self._states = JointStateDecoder(names)
        # joint_states callback -> command published, per command (reported at shutdown)
        self._latencies: collections.deque[float] = collections.deque(maxlen=100_000)
        self._publisher = self.create_publisher(command_type, command_topic, RELIABLE)
        state_sub = self.create_subscription(
            JointState, "joint_states", self._on_joint_state, RELIABLE, raw=True
        )
        goal_type, goal_topic, goal_bag_type = input_topic(task)
        self._goal_type = goal_type
        goal_sub = self.create_subscription(goal_type, goal_topic, self._on_goal, RELIABLE, raw=True)
        self._states_topic, self._goal_topic = state_sub.topic_name, goal_sub.topic_name
        recorded = [
            (self._states_topic, JOINT_STATE_TYPE),
            (self._publisher.topic_name, COMMAND_TYPES[self._interface]),
            (self._goal_topic, goal_bag_type),
        ]
        self._imu_topic = ""
        if task.uses_imu:
            self._imu_topic = self.create_subscription(
                Imu, "imu", self._on_imu, RELIABLE, raw=True
            ).topic_name
            recorded.append((self._imu_topic, IMU_TYPE))
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_timer(plan.period_s, self._on_watchdog)
        self._recorder = self._open_deploy_recorder(recorded) if self.config.record else None
        self.get_logger().info(
            f"deploying {self.config.checkpoint} ({plan.runtime}; {task.name} on {robot.name}, "
            f"{robot.num_joints} joints) at {1.0 / plan.period_s:g} Hz through {self._interface} on "
            f"{self._publisher.topic_name}{' [dry run]' if self.config.dry_run else ''}"
        )

    def _open_deploy_recorder(self, topics: list[tuple[str, str]]) -> NodeRecorder:
        """rollouts/ in output_dir: what the robot said and what it was told, as `ros2 bag record` would."""
        path = rollouts_dir(prepare_output_dir(self.config.output_dir))
        try:
            return NodeRecorder(self, path, topics, max_bag_size_mb=self.config.record_split_mb)
        except RecordingError as exc:
            raise ConfigError(f"policy.record: {exc}") from exc

    def _record(self, topic: str, data: bytes) -> None:
        if self._recorder is not None:
            self._recorder.record(topic, data)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _on_joint_state(self, data: bytes) -> None:
        start = time.perf_counter()
        self._record(self._states_topic, data)
        try:
            state = self._states.decode(data)
            self.deployment.on_joint_state(
                self._now_s(), state.stamp_ns / 1e9, state.names, state.position, state.velocity
            )
        except (StateError, WireError) as exc:
            self.get_logger().warning(f"no command this cycle: {exc}", throttle_duration_sec=1.0)
            return
        if self.deployment.due:
            self._command(self._now_s())
            self._latencies.append(time.perf_counter() - start)
        elif waiting := self.deployment.waiting_for_imu():
            self.get_logger().warning(f"no command: {waiting}", throttle_duration_sec=2.0)

    def _on_watchdog(self) -> None:
        """States stopped coming: let tick decide (one hold command, then silence)."""
        now = self._now_s()
        if self.deployment.stale(now):
            self._command(now)

    def _command(self, now: float) -> None:
        command, reason = self.deployment.tick(now)
        if reason == NON_FINITE_OUTPUT:
            self.get_logger().error(f"no command: {reason}", throttle_duration_sec=2.0)
        elif reason:
            self.get_logger().warning(f"no command: {reason}", throttle_duration_sec=2.0)
        if command is not None:
            self._send(command)

    def _on_goal(self, data: bytes) -> None:
        self._record(self._goal_topic, data)
        kind = self.deployment.task.input_message
        before = self.deployment.inputs
        try:
            inputs = self.deployment.on_goal(input_values(deserialize_message(data, self._goal_type)))
        except StateError as exc:
            self.get_logger().warning(f"rejected {kind}: {exc}", throttle_duration_sec=1.0)
            return
        if before is None or not np.array_equal(before, inputs):
            self.get_logger().info(f"{kind} in effect: {[round(float(v), 4) for v in inputs]}")

    def _on_imu(self, data: bytes) -> None:
        self._record(self._imu_topic, data)
        imu = deserialize_message(data, Imu)
        stamp = imu.header.stamp.sec + imu.header.stamp.nanosec * 1e-9
        o, w, a = imu.orientation, imu.angular_velocity, imu.linear_acceleration
        try:
            self.deployment.on_imu(
                self._now_s(), stamp, (o.x, o.y, o.z, o.w), (w.x, w.y, w.z), (a.x, a.y, a.z)
            )
        except StateError as exc:
            self.get_logger().warning(f"rejected imu: {exc}", throttle_duration_sec=1.0)
            return
        if self.deployment.due:  # the state came first and waited for this reading
            self._command(self._now_s())

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        hold = self.deployment.set_enabled(request.data)
        if hold is not None:
            self._send(hold)
        response.success, response.message = True, "enabled" if request.data else "holding position"
        return response

    def _send(self, command: Command) -> None:
        if self.config.dry_run:
            kind = "hold" if command.hold else "command"
            self.get_logger().info(
                f"[dry run] {kind} {np.round(command.positions, 4).tolist()}", throttle_duration_sec=1.0
            )
            return
        data = self._encode(command.positions)
        self._publisher.publish(data)
        self._record(self._publisher.topic_name, data)

    def _set_config(self, config: PolicyConfig) -> None:
        self.config = config


def prepare(node: PolicyNode, executor: Executor) -> None:
    """Start the train/eval job once the node is on an executor (also what `bringup` calls)."""
    node.start()


def main(args: list[str] | None = None) -> int:
    return run_node("policy", PolicyNode, args, prepare=prepare)


if __name__ == "__main__":
    sys.exit(main())
