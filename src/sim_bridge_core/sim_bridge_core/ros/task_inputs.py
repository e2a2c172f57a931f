"""A task's inputs on ROS: a goal point (``goal``, geometry_msgs/PointStamped) or a velocity
command (``cmd_vel``, geometry_msgs/Twist, or TwistStamped as Jazzy's controllers take it: linear
x, y and angular z), as ``Task.input_message`` says. The policy node in deploy mode subscribes
it, the deploy-path evaluator publishes each episode's, and the simulator takes ``cmd_vel`` as a
world's task input."""

from __future__ import annotations

from collections.abc import Sequence

from geometry_msgs.msg import PointStamped, Twist, TwistStamped

from sim_bridge_core.tasks import Task

# Task.input_message -> (message type, topic, rosbag2 type name)
INPUT_TOPICS = {
    "goal": (PointStamped, "goal", "geometry_msgs/msg/PointStamped"),
    "cmd_vel": (Twist, "cmd_vel", "geometry_msgs/msg/Twist"),
}


STAMPED_CMD_VEL = (TwistStamped, "cmd_vel", "geometry_msgs/msg/TwistStamped")


def input_topic(task: Task, stamped: bool = False) -> tuple[type, str, str]:
    """The message type, topic and rosbag2 type name of ``task``'s inputs (``stamped``: a velocity
    command as TwistStamped)."""
    if stamped and task.input_message == "cmd_vel":
        return STAMPED_CMD_VEL
    return INPUT_TOPICS[task.input_message]


def input_values(message: PointStamped | Twist | TwistStamped) -> tuple[float, float, float]:
    """The three values a goal point or a velocity command carries."""
    if isinstance(message, TwistStamped):
        message = message.twist
    if isinstance(message, Twist):
        return message.linear.x, message.linear.y, message.angular.z
    return message.point.x, message.point.y, message.point.z


def input_message(task: Task, values: Sequence[float], stamp=None) -> PointStamped | Twist:
    """The message that sends ``values`` (x, y, z; or forward, lateral, yaw rate) to ``task``."""
    x, y, z = (float(v) for v in values)
    if task.input_message == "cmd_vel":
        message = Twist()
        message.linear.x, message.linear.y, message.angular.z = x, y, z
        return message
    message = PointStamped()
    if stamp is not None:
        message.header.stamp = stamp
    message.point.x, message.point.y, message.point.z = x, y, z
    return message
