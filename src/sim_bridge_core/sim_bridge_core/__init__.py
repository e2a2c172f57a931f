"""ROS-free core of sim_bridge: models, batched MuJoCo backends, tasks, wire encoding."""
