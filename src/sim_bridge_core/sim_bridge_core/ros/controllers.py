"""What a ros2_control controller says about itself: its ``joints`` parameter, read at start.

A controller is a node named after itself (``/forward_position_controller``) whose command topic
lies under that name (``/forward_position_controller/commands``), so the node to ask is the
command topic's namespace.
"""

from __future__ import annotations

from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

# How long start-up waits for a controller to be found before it goes on without its joints.
CONTROLLER_TIMEOUT_S = 5.0


def controller_of(command_topic: str, node_namespace: str) -> str:
    """The controller node a resolved command topic belongs to ('' for a topic of our own namespace,
    such as the default ``joint_commands``, which no controller owns)."""
    parent = command_topic.rsplit("/", 1)[0]
    return "" if parent in ("", node_namespace.rstrip("/")) else parent


def read_controller_joints(node: Node, controller: str, timeout_s: float) -> list[str] | None:
    """The controller's ``joints`` parameter, or None when it cannot be read within ``timeout_s``
    (no such node yet, or no such parameter). ``node`` must not be on an executor yet."""
    client = node.create_client(GetParameters, f"{controller}/get_parameters")
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            return None
        future = client.call_async(GetParameters.Request(names=["joints"]))
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        try:
            # The controller is there: give a loaded host longer to answer than to be found.
            executor.spin_until_future_complete(future, timeout_sec=3 * timeout_s)
        finally:
            executor.remove_node(node)
            executor.shutdown()
        result = future.result() if future.done() else None
        if (
            result is None
            or not result.values
            or result.values[0].type != ParameterType.PARAMETER_STRING_ARRAY
        ):
            return None
        return list(result.values[0].string_array_value)
    finally:
        node.destroy_client(client)
