"""The physics a robot runs on: batched backends, sensors, and how commands execute (trajectory
following and the command contract), without tasks, learning or ROS."""
