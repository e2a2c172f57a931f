"""sim_bridge bringup: launch files, configs and the bringup runner."""
