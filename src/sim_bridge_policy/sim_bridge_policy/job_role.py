"""The policy node's job role: a ``sim_bridge_core.jobs.training`` job (train or eval) on its own thread.

The executor serves the node's topics meanwhile (the ros transport's lockstep batch/* traffic);
when the job ends ``finished`` is set, so a `policy` process (or a `bringup` composition) exits
once the outputs are written. ``stop()`` (SIGINT or SIGTERM, see ros.run) ends the job at its next
step: training still writes its checkpoint, closes its bag and writes its outputs except the
evaluation, and the process exits 0.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.policy import PolicyConfig
from sim_bridge_core.envs.batched import JobStoppedError
from sim_bridge_core.jobs.training import TrainingJob, make_task_for, prepare_run_dir, run_evaluation
from sim_bridge_core.learning import PpoConfig
from sim_bridge_core.learning.offpolicy_config import OFF_POLICY_SECTION, OffPolicyConfig
from sim_bridge_core.ros.batch_topics import connect_remote_worlds, connect_sharded_worlds
from sim_bridge_core.ros.parameters import declare_config
from sim_bridge_core.simulator.core import SimulatorConfig
from sim_bridge_core.simulator.remote import RemoteWorlds
from sim_bridge_core.simulator.shards import ShardedWorlds
from sim_bridge_core.simulator.wire import WireError, decode_multi_array
from std_msgs.msg import Float64MultiArray

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class JobRole:
    """Runs the train or eval job over the worlds of its transport: fused (built by the job in this
    process, which publishes the latched ``randomization/applied`` as the simulator node would) or
    ros (a simulator node's, over batch/*, whose ``randomization/applied`` it hears)."""

    def __init__(self, node: Node, config: PolicyConfig) -> None:
        self.exit_code = 0
        self.finished = threading.Event()
        self._log = node.get_logger()
        sim = declare_config(node, SimulatorConfig, "sim", prefix="sim.")
        # Both sections are declared (a config file may set either); the algorithm's is the one used.
        ppo = declare_config(node, PpoConfig, "ppo", prefix="ppo.")
        section = OFF_POLICY_SECTION
        off_policy = declare_config(node, OffPolicyConfig, section, prefix=f"{section}.")
        learning = ppo if config.algorithm == "ppo" else off_policy
        output_dir = prepare_run_dir(config)  # under torchrun: rank 0's, the same for every rank
        self.config = config = dataclasses.replace(config, output_dir=str(output_dir))
        training = None
        if config.mode == "train":  # before the transport: a checkpoint it cannot start from fails first
            training = TrainingJob(config, learning, sim, log=self._log.info, log_error=self._log.error)
        # ros: the simulator's randomization in effect (env, parameter) and its parameter labels
        self._applied: tuple[np.ndarray, tuple[str, ...]] | None = None
        self._shard_applied: list[tuple[np.ndarray, tuple[str, ...]] | None] = []  # per shard, the same
        self._worlds, applied = self._connect(node, config, sim)
        # The job, called with the event that stops it; it returns the summary it wrote.
        self._job: Callable[..., dict[str, Any]] = (
            functools.partial(run_evaluation, config, sim, self._worlds)
            if training is None
            else functools.partial(training.run, self._worlds, **applied)
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job", daemon=True)
        self._log.info(
            f"{config.mode}: {sim.task} on {sim.model}, transport {config.transport}, "
            f"{config.algorithm if training else 'evaluation'}, outputs in {output_dir}"
        )

    def start(self) -> None:
        """Start the job (the executor must be spinning for the ros transport)."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the job to end at its next step; ``finished`` is set once it wound down."""
        if not self._thread.is_alive():
            self.finished.set()  # no job running: nothing to wind down
            return
        self._stop.set()
        if self._worlds is not None:
            self._worlds.interrupt()  # a step waiting for a simulator that is stopping too

    def close(self) -> None:
        """Nothing to close: the job closed its outputs before it set ``finished``."""

    def _connect(
        self, node: Node, config: PolicyConfig, sim: SimulatorConfig
    ) -> tuple[RemoteWorlds | ShardedWorlds | None, dict[str, Any]]:
        """The transport's worlds (None: fused, built by the job in this process) and how training
        hands on (fused) or reads (ros) the randomization in effect."""
        if config.simulators and config.transport != "ros":
            raise ConfigError("simulators: shards are reached over the batch/* topics: set transport ros")
        if config.transport != "ros":  # the worlds are here: publish what is in effect, as a simulator would
            publisher = node.create_publisher(Float64MultiArray, "randomization/applied", LATCHED)
            return None, {"on_applied": publisher.publish}
        options = {
            "control_dt": sim.control_dt,
            "episode_length_s": sim.episode_length_s,
            "simulator_name": config.simulator,
            "timeout_s": config.step_timeout_s,
            "command_interface": sim.command_interface,
        }
        task = make_task_for(sim)
        if not config.simulators:
            node.create_subscription(
                Float64MultiArray, "randomization/applied", self._on_applied, LATCHED, raw=True
            )
            worlds = connect_remote_worlds(node, task, sim.num_envs, **options)
            return worlds, {"read_applied": lambda: self._applied}
        try:
            sharded = connect_sharded_worlds(node, task, list(config.simulators), sim.num_envs, **options)
        except ValueError as exc:
            raise ConfigError(f"simulators: {exc}") from exc
        self._shard_applied = [None] * len(config.simulators)
        for shard, namespace in enumerate(config.simulators):
            topic = f"{namespace.rstrip('/')}/randomization/applied"
            callback = functools.partial(self._on_applied, shard=shard)
            node.create_subscription(Float64MultiArray, topic, callback, LATCHED, raw=True)
        return sharded, {"read_applied": self._sharded_applied}

    def _run(self) -> None:
        mode = self.config.mode
        try:
            summary = self._job(stop=self._stop)
            if "rank" in summary:  # a data-parallel rank above 0: rank 0 writes the outputs
                self._log.info(f"rank {summary['rank']} done; rank 0 writes the outputs")
                return
            outputs = ", ".join(sorted(path.name for path in Path(self.config.output_dir).iterdir()))
            if summary.get("interrupted"):
                done = f"stopped at {summary['env_steps']} env steps, not evaluated"
            else:
                rates = (summary["eval_success_rate_nominal"], summary["eval_success_rate_randomized"])
                done = f"done: eval success {rates[0]:.1%} nominal, {rates[1]:.1%} randomized"
            self._log.info(f"{done}; outputs in {self.config.output_dir}: {outputs}")
        except JobStoppedError:
            self._log.info(f"{mode} stopped before it had anything to write")
        except ConfigError as exc:
            print(f"[policy] error: {exc}", file=sys.stderr)
            self.exit_code = 2
        except Exception as exc:  # the job died: say why, exit non-zero, leave the checkpoint
            self._log.error(f"{mode} failed: {type(exc).__name__}: {exc}")
            self.exit_code = 1
        finally:
            self.finished.set()  # ends the process (run_nodes), or whatever waits on it

    def _sharded_applied(self) -> tuple[np.ndarray, tuple[str, ...]] | None:
        """Every shard's randomization in effect, its worlds in the shards' order, once all were
        heard with the same parameters (None until then)."""
        heard = self._shard_applied
        if any(applied is None for applied in heard) or len({names for _, names in heard}) != 1:
            return None
        return np.concatenate([values for values, _ in heard]), heard[0][1]

    def _on_applied(self, data: bytes, shard: int | None = None) -> None:
        try:
            labels, values = decode_multi_array(data, np.float64)
        except WireError as exc:
            self._log.warning(f"rejected randomization/applied: {exc}", throttle_duration_sec=1.0)
            return
        if values.ndim != 2 or len(labels) != 2:
            self._log.warning(
                "rejected randomization/applied: not (env, parameter)", throttle_duration_sec=1.0
            )
            return
        applied = (values, tuple(labels[1].split(",")) if values.shape[1] else ())
        if shard is None:
            self._applied = applied
        else:
            self._shard_applied[shard] = applied
