"""Which solver settings the Menagerie Go1 can be trained on: the cost of each, and how far its
motion drifts from the model file's own (2 ms, elliptic cones, impratio 100).

Every setting runs the same open-loop trot (the legs' position targets swing at 2 Hz about the
home pose, diagonal pairs in phase) in --worlds worlds for --seconds from the home keyframe, each
world shifted 1 cm along x, with `mujoco.rollout` on one thread. Reported per setting: control
steps of 20 ms per second of wall time (the physics steps one takes: 20 ms / timestep), and where
the trunk ends up (mean x and height), beside the file's own settings in the same run. A setting
whose end point is far from the file's moves the robot otherwise.

The Go1 comes from --menagerie DIR, else $SIM_BRIDGE_MODEL_PATH, else the assets wheel as
bench_robots.py finds it.

Run: python test/benchmarks/bench_contact_solvers.py [--worlds 64] [--seconds 4]
     [--settings 0.004/pyramidal/1,0.004/elliptic/100,0.01/elliptic/100]
"""

from __future__ import annotations

import argparse
import time

import mujoco
import numpy as np
from bench_robots import menagerie
from mujoco import rollout

CONTROL_DT = 0.02
FILE_SETTING = "0.002/elliptic/100"
SETTINGS = ("0.004/pyramidal/1", "0.004/elliptic/100", "0.005/elliptic/100", "0.01/elliptic/100")
AMPLITUDE = (0.15, 0.25)  # thigh and calf swing (rad): the trunk stays up on every setting
CONES = {"pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL, "elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC}


def go1(folder: str, setting: str) -> mujoco.MjModel:
    """The Menagerie Go1 with ``setting`` (TIMESTEP/CONE/IMPRATIO) as its solver options."""
    timestep, cone, impratio = setting.split("/")
    model = mujoco.MjModel.from_xml_path(f"{folder}/unitree_go1/scene.xml")
    model.opt.timestep, model.opt.cone, model.opt.impratio = float(timestep), CONES[cone], float(impratio)
    return model


def trot(model: mujoco.MjModel, worlds: int, seconds: float) -> tuple[float, np.ndarray]:
    """Wall seconds of the open-loop trot, and each world's final trunk position."""
    data = mujoco.MjData(model)
    steps = round(seconds / model.opt.timestep)
    time_s = np.arange(steps) * model.opt.timestep
    home = model.key_qpos[0, 7:]
    phase = np.repeat([0.0, np.pi, np.pi, 0.0], 3)  # FR, FL, RR, RL: a trot
    amplitude = np.tile([0.0, AMPLITUDE[0], AMPLITUDE[1]], 4)  # hip, thigh, calf (rad)
    targets = home + amplitude * np.sin(2 * np.pi * 2.0 * time_s[:, None] + phase)
    kind = mujoco.mjtState.mjSTATE_FULLPHYSICS
    initial = np.zeros((worlds, mujoco.mj_stateSize(model, kind)))
    for world in range(worlds):
        mujoco.mj_resetDataKeyframe(model, data, 0)
        data.qpos[0] += 0.01 * world
        mujoco.mj_getState(model, data, initial[world], kind)
    start = time.perf_counter()
    state, _ = rollout.rollout(model, data, initial, np.repeat(targets[None], worlds, axis=0))
    wall = time.perf_counter() - start
    end = state[:, -1, 1:4]
    end[:, 0] -= 0.01 * np.arange(worlds)
    return wall, end


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worlds", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--menagerie", default="")
    args = parser.parse_args()
    folder = str(menagerie(args.menagerie))
    print(f"Go1 x {args.worlds} worlds, an open-loop trot for {args.seconds:g} s, one thread\n")
    print("| timestep / cone / impratio | control steps/s (20 ms) | trunk end x (m) | height (m) |")
    print("|---|---|---|---|")
    for setting in [FILE_SETTING, *args.settings.split(",")]:
        wall, end = trot(go1(folder, setting), args.worlds, args.seconds)
        label = f"{setting} (the file's)" if setting == FILE_SETTING else setting
        rate = args.worlds * args.seconds / CONTROL_DT / wall
        print(f"| {label} | {rate:,.0f} | {end[:, 0].mean():.3f} | {end[:, 2].mean():.3f} |")
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
