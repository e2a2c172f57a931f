#!/usr/bin/env bash
# Source ROS and the workspace, then run the command (by default the launch file).
set -e
source /opt/ros/jazzy/setup.bash
source /ws/install/setup.bash
exec "$@"
