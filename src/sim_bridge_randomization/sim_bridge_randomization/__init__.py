"""sim_bridge domain-randomization node."""
