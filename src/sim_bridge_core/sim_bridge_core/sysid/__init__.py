"""The way back from the robot: excitation, bags read into arrays, system identification with
``mujoco.sysid``, and its outputs (docs/sysid.md).

Modules: ``config`` (the node settings), ``excitation`` (the safe multi-sine), ``bags`` (a
recorded run), ``replay`` (its commands as the controller executed them), ``identify`` (the fit),
``selection`` (what the data identifies), ``outputs`` (robot.yaml, sysid.json, sysid_report.png,
randomization.yaml), ``simulated`` (a run recorded from the simulator in-process, for tests and
benchmarks).
"""
