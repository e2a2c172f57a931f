"""sim_bridge simulator node: N MuJoCo worlds behind JointState/JointTrajectory topics."""
