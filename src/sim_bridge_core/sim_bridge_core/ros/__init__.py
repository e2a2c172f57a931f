"""Helpers shared by the ROS node packages: the only part of sim_bridge_core that needs rclpy.

Nothing else in the core imports this subpackage, so the core imports without ROS.
"""
