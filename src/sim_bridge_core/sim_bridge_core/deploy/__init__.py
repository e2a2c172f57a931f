"""Running a trained policy on a robot: the policy contract, loading a policy, the safety filter and
the deployment that turns JointState into safe commands."""
