"""The policy node: it reads its parameters (``PolicyConfig``) and hands itself to the role its
``mode`` asks for, which owns everything else: ``DeployRole`` (deploy: drive a robot) or
``JobRole`` (train, eval: a job on its own thread). ``finished`` and ``exit_code`` are the role's,
for ``sim_bridge_core.ros.run`` to end the process on.
"""

from __future__ import annotations

import sys
import threading

from rclpy.executors import Executor
from rclpy.node import Node
from sim_bridge_core.deploy.policy import PolicyConfig
from sim_bridge_core.ros.parameters import declare_config
from sim_bridge_core.ros.run import run_node

from sim_bridge_policy.deploy_role import DeployRole
from sim_bridge_policy.job_role import JobRole


class PolicyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("policy", **kwargs)
        config = declare_config(self, PolicyConfig, "policy")
        self.role = DeployRole(self, config) if config.mode == "deploy" else JobRole(self, config)

    @property
    def finished(self) -> threading.Event:
        """Set once the process may end: the job wound down, or deploy stopped or gave up."""
        return self.role.finished

    @property
    def exit_code(self) -> int:
        return self.role.exit_code

    def start(self) -> None:
        """Start the role's work (the executor must be spinning for the ros transport)."""
        self.role.start()

    def stop(self) -> None:
        """SIGINT or SIGTERM: a job ends at its next step, deploy holds where the robot is."""
        self.role.stop()

    def destroy_node(self) -> None:
        self.role.close()
        super().destroy_node()


def prepare(node: PolicyNode, executor: Executor, stop: threading.Event) -> None:
    """Start the train/eval job once the node is on an executor (also what `bringup` calls)."""
    node.start()


def main(args: list[str] | None = None) -> int:
    return run_node("policy", PolicyNode, args, prepare=prepare)


if __name__ == "__main__":
    sys.exit(main())
