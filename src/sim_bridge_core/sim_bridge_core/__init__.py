"""ROS-free core of sim_bridge: models, batched MuJoCo backends, tasks, wire encoding."""

import os

# MuJoCo picks its GL backend once, when first imported: with no display, offscreen EGL is the
# one that renders (cameras, videos); MUJOCO_GL set by the user wins.
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")
