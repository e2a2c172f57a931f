"""The command contract on ROS: each command interface's message type and topic (ros2_control's)."""

from __future__ import annotations

from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from sim_bridge_core.sim.control import COMMAND_TOPIC_NAMES

# command_interface -> (message type, topic)
COMMAND_TOPICS = {
    "trajectory": (JointTrajectory, COMMAND_TOPIC_NAMES["trajectory"]),
    "position": (Float64MultiArray, COMMAND_TOPIC_NAMES["position"]),
}
