"""rclpy glue for ``RemoteWorlds``: the simulator's lockstep ``batch/*`` topics and services on a node.

The batched topics stay serialized bytes both ways (``raw=True`` subscriptions, ``publish(bytes)``),
decoded and encoded by ``sim_bridge_core.simulator.wire`` inside RemoteWorlds. Service calls come from the
training thread while an executor spins the node on another thread, so they use ``call_async``
and wait on the future with a timeout instead of spinning (which would deadlock or steal callbacks).
"""

from __future__ import annotations

import threading
from typing import Any

from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.client import Client
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from sim_bridge_core.simulator.remote import COMMAND, STATES, TASK, RemoteError, RemoteWorlds
from sim_bridge_core.simulator.shards import ShardedWorlds, shard_sizes
from sim_bridge_core.tasks import Task

# As the simulator's batched topics: reliable, depth 2 (lockstep has one message in flight).
BATCH_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)


def call_service(client: Client, request: object, timeout_s: float) -> object:
    """A service response, waiting without spinning (the node's executor runs elsewhere)."""
    name = client.service_name
    if not client.wait_for_service(timeout_sec=timeout_s):
        raise RemoteError(f"service {name} is not available (is the simulator running?)")
    done = threading.Event()
    future = client.call_async(request)
    future.add_done_callback(lambda _future: done.set())
    if not done.wait(timeout_s):
        client.remove_pending_request(future)
        raise RemoteError(
            f"service {name} did not answer within {timeout_s} s (is the node's executor spinning?)"
        )
    return future.result()


def connect_remote_worlds(
    node: Node,
    task: Task,
    num_envs: int,
    control_dt: float,
    episode_length_s: float,
    simulator_name: str = "simulator",
    timeout_s: float = 10.0,
    command_interface: str = "trajectory",
    namespace: str = "",
) -> RemoteWorlds:
    """RemoteWorlds fed by ``node``'s subscriptions; the node must be spun by an executor on another thread.

    Topics are relative to the node (``batch/joint_states``, ``batch/task``, ``batch/joint_trajectory``),
    so namespaces and remapping apply as for the policy node; services are ``<simulator_name>/reset``
    and ``<simulator_name>/set_parameters``. A ``namespace`` (a simulator shard's) goes in front of
    all of them: relative, it resolves in the node's own namespace.
    """
    logger = node.get_logger()
    prefix = f"{namespace.rstrip('/')}/" if namespace else ""
    publisher = node.create_publisher(JointTrajectory, prefix + COMMAND, BATCH_QOS)
    reset_client = node.create_client(Trigger, f"{prefix}{simulator_name}/reset")
    parameters_client = node.create_client(SetParameters, f"{prefix}{simulator_name}/set_parameters")

    def set_parameter(name: str, enabled: bool) -> None:
        value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=enabled)
        request = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
        result = call_service(parameters_client, request, timeout_s).results[0]
        if not result.successful:
            raise RemoteError(f"{simulator_name} refused {name}={enabled}: {result.reason}")

    def reset(stagger: bool) -> None:
        set_parameter("stagger_episodes", stagger)
        response = call_service(reset_client, Trigger.Request(), timeout_s)
        if not response.success:
            raise RemoteError(f"{simulator_name}/reset refused: {response.message}")

    def on_error(topic: str, reason: str) -> None:
        logger.warning(f"rejected {prefix}{topic}: {reason}", throttle_duration_sec=1.0)

    worlds = RemoteWorlds(
        task,
        num_envs,
        control_dt,
        episode_length_s,
        send=publisher.publish,
        reset=reset,
        set_randomization_enabled=lambda enabled: set_parameter("randomization_enabled", enabled),
        timeout_s=timeout_s,
        on_error=on_error,
        command_interface=command_interface,
    )
    node.create_subscription(JointState, prefix + STATES, worlds.on_joint_states, BATCH_QOS, raw=True)
    node.create_subscription(Float32MultiArray, prefix + TASK, worlds.on_task, BATCH_QOS, raw=True)
    return worlds


def connect_sharded_worlds(
    node: Node, task: Task, namespaces: list[str], num_envs: int, **options: Any
) -> ShardedWorlds:
    """One ``ShardedWorlds`` over the simulator nodes in ``namespaces``, ``num_envs`` worlds in all
    (split by ``shard_sizes``); ``options`` as ``connect_remote_worlds`` takes them."""
    shards = [
        connect_remote_worlds(node, task, size, namespace=namespace, **options)
        for namespace, size in zip(namespaces, shard_sizes(num_envs, len(namespaces)), strict=True)
    ]
    return ShardedWorlds(shards, namespaces)
