"""The simulator's logic without ROS: the lockstep protocol, the batched simulator core, remote
worlds seen through its topics, and the numpy wire codec for its messages."""
