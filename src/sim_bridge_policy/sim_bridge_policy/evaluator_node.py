"""The evaluator node: sim-to-sim parity of a checkpoint through the deploy path (``bringup eval
transport:=deploy``).

It plays operator and referee for one simulated robot driven by a deploy-mode policy node: it
publishes each episode's goal on ``goal`` (a velocity command on ``cmd_vel`` for locomotion) and
reads each episode's outcome from the simulator's ``batch/task`` (see
``sim_bridge_core.jobs.parity``). After ``episodes`` episodes it pauses the simulator, evaluates the
same checkpoint on fused worlds with the same physics, and writes ``summary.json`` with
``eval_success_rate_deploy`` beside the fused figure; then the process ends.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time

from rclpy.executors import Executor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.policy import PolicyConfig, read_contract
from sim_bridge_core.envs.batched import JobStoppedError
from sim_bridge_core.jobs.parity import DeployEpisodes, EvaluatorConfig
from sim_bridge_core.jobs.training import make_task_for, prepare_output_dir, run_evaluation, write_summary
from sim_bridge_core.ros.batch_topics import BATCH_QOS, call_service
from sim_bridge_core.ros.parameters import declare_config
from sim_bridge_core.ros.run import run_node
from sim_bridge_core.ros.task_inputs import input_message, input_topic
from sim_bridge_core.simulator.core import SimulatorConfig
from std_msgs.msg import Float32MultiArray
from std_srvs.srv import SetBool

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class EvaluatorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("evaluator", **kwargs)
        self.config = declare_config(self, EvaluatorConfig, "evaluator")
        self.sim = declare_config(self, SimulatorConfig, "sim", prefix="sim.")
        if not self.config.checkpoint:
            raise ConfigError("evaluator.checkpoint: required")
        self.contract = read_contract(self.config.checkpoint)
        self.output_dir = prepare_output_dir(self.config.output_dir)
        self.episodes = DeployEpisodes(make_task_for(self.sim), self.config.episodes)
        self.exit_code = 0
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._last_progress = time.monotonic()
        self._goal = None
        self._episodes_done = threading.Event()
        self._stop = threading.Event()
        goal_type, goal_topic, _ = input_topic(self.episodes.task)
        self._goals = self.create_publisher(goal_type, goal_topic, RELIABLE)
        self.create_subscription(Float32MultiArray, "batch/task", self._on_task, BATCH_QOS, raw=True)
        self._pause = self.create_client(SetBool, "simulator/pause")
        self._thread = threading.Thread(target=self._run, name="evaluation", daemon=True)
        self.get_logger().info(
            f"deploy-path evaluation of {self.config.checkpoint}: {self.config.episodes} episodes of "
            f"'{self.sim.task}' through {self.contract.command_interface}; outputs in {self.output_dir}"
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the evaluation early (Ctrl-C): nothing is written; ``finished`` is set once it ended."""
        if not self._thread.is_alive():
            self.finished.set()
            return
        self._stop.set()

    def _on_task(self, data: bytes) -> None:
        with self._lock:
            steps = self.episodes.steps
            try:
                goal = self.episodes.on_task(data)
            except ValueError as exc:
                self.get_logger().warning(f"rejected batch/task: {exc}", throttle_duration_sec=1.0)
                return
            if self.episodes.steps != steps or goal is not None:
                self._last_progress = time.monotonic()
            if goal is not None:
                self._goal = goal
            done = self.episodes.done
        if done:
            self._episodes_done.set()
        elif self._goal is not None:
            # Also on a lockstep resend: the simulator waits, perhaps for a goal that was lost.
            stamp = self.get_clock().now().to_msg()
            self._goals.publish(input_message(self.episodes.task, self._goal, stamp))

    def _run(self) -> None:
        try:
            self._wait_for_episodes()
            call_service(self._pause, SetBool.Request(data=True), 10.0)
            deploy_wall_s = time.monotonic() - self._started
            fused_sim = dataclasses.replace(self.sim, num_envs=max(1, self.sim.num_envs))
            policy = PolicyConfig(
                mode="eval",
                checkpoint=self.config.checkpoint,
                output_dir=str(self.output_dir),
                eval_episodes=max(1, self.config.eval_episodes),
            )
            summary = run_evaluation(policy, fused_sim, stop=self._stop) if self.config.eval_episodes else {}
            deploy = self.episodes.success_rate
            fused = summary.get("eval_success_rate_nominal")
            summary.update(
                transport="deploy",
                command_interface=self.contract.command_interface,
                eval_success_rate_deploy=deploy,
                deploy_episodes=len(self.episodes.outcomes),
                deploy_steps=self.episodes.steps,
                deploy_wall_s=deploy_wall_s,
                deploy_to_fused=deploy / fused if fused else None,
            )
            write_summary(self.output_dir, summary)
            self.get_logger().info(
                f"done: deploy-path success {deploy:.1%} over {len(self.episodes.outcomes)} episodes"
                + (f", fused {fused:.1%} (ratio {deploy / fused:.2f})" if fused else "")
                + f"; summary in {self.output_dir / 'summary.json'}"
            )
        except JobStoppedError:
            self.get_logger().info("evaluation stopped before its end: no summary written")
        except ConfigError as exc:
            print(f"[evaluator] error: {exc}", file=sys.stderr)
            self.exit_code = 2
        except Exception as exc:  # say why, exit non-zero
            self.get_logger().error(f"evaluation failed: {type(exc).__name__}: {exc}")
            self.exit_code = 1
        finally:
            self.finished.set()

    def _wait_for_episodes(self) -> None:
        self._started = time.monotonic()
        while not self._episodes_done.wait(timeout=0.2):
            if self._stop.is_set():
                raise JobStoppedError("evaluation stopped on request")
            with self._lock:
                idle = time.monotonic() - self._last_progress
                counted = len(self.episodes.outcomes)
            if idle > self.config.timeout_s:
                raise RuntimeError(
                    f"the simulator reported no step for {idle:.0f} s after {counted} episodes: is it in "
                    "lockstep mode, and is a deploy-mode policy commanding it?"
                )


def prepare(node: EvaluatorNode, executor: Executor, stop: threading.Event) -> None:
    """Start the evaluation once the node is on an executor (also what `bringup` calls)."""
    node.start()


def main(args: list[str] | None = None) -> int:
    return run_node("evaluator", EvaluatorNode, args, prepare=prepare)


if __name__ == "__main__":
    sys.exit(main())
