"""sim_bridge policy node: PPO training, evaluation and deployment."""
