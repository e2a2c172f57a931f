"""Test stand-in for ROS 2's composition_interfaces (see srv.py); never installed."""
