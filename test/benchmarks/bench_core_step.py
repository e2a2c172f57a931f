"""Core stepping throughput of the cpu backend beside raw ``mujoco.batch`` on the same model.

Measured in one run, alternating the contenders so that machine noise hits them alike:
  raw       mujoco.batch.Batch.step(nstep=substeps) with ctrl written from numpy: the baseline
  raw+pos   the same with stage=mjSTAGE_POS, which the backend uses so kinematics are current
  backend   CpuBackend.step(targets) and reading joint positions and velocities
  env/pos   BatchedEnv.step with the task (reward, success, auto-reset) on top, commands executed
            as a forward position controller (the setpoint steps: one Batch.step per period)
  env/traj  the same executed as a joint_trajectory_controller (the setpoint ramps from the
            measured position, a new one at every physics step: one Batch.rollout call with a
            control per physics step, then the last step)

Run: python test/benchmarks/bench_core_step.py [--model arm7] [--num-envs 1024] [--repeats 5]
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable

import mujoco
import numpy as np
from cli import world_parser
from mujoco.batch import Batch
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.models import load_robot
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.tasks import make_task
from timing import rate


def main() -> None:
    parser = world_parser(__doc__, num_envs=1024)
    parser.add_argument("--steps", type=int, default=50, help="control steps per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    robot = load_robot(args.model)
    n, threads = args.num_envs, os.cpu_count() or 1
    substeps = round(args.control_dt / robot.physics_dt)
    rng = np.random.default_rng(0)
    targets = [robot.clamp(robot.home + rng.uniform(-0.2, 0.2, (n, robot.num_joints))) for _ in range(8)]

    raw = Batch(robot.model, n, threads)
    raw_ctrl, raw_qpos, raw_qvel = raw.bind("ctrl"), raw.bind("qpos"), raw.bind("qvel")
    raw_qpos[:, robot.qpos_adr] = robot.home
    raw.forward()

    def raw_step(stage: int) -> Callable[[int], None]:
        def step(i: int) -> None:
            raw_ctrl[:, robot.actuator_ids] = targets[i % 8]
            raw.step(nstep=substeps, stage=stage)
            raw_qpos[:, robot.qpos_adr], raw_qvel[:, robot.dof_adr]

        return step

    backend = CpuBackend(robot, n, args.control_dt, threads=threads)

    def backend_step(i: int) -> None:
        backend.step(targets[i % 8])
        backend.joint_positions(), backend.joint_velocities()

    def env_step(interface: str) -> Callable[[int], None]:
        backend = CpuBackend(robot, n, args.control_dt, threads=threads)
        env = BatchedEnv(backend, make_task(args.task, robot), 5.0, command_interface=interface)

        def step(i: int) -> None:
            env.step(targets[i % 8])
            env.observation()

        return step

    contenders = {
        "raw": raw_step(mujoco.mjtStage.mjSTAGE_NONE),
        "raw+pos": raw_step(mujoco.mjtStage.mjSTAGE_POS),
        "backend": backend_step,
        "env/pos": env_step("position"),
        "env/traj": env_step("trajectory"),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, step in contenders.items():
            rates[name].append(rate(step, args.steps, n))

    print(
        f"{args.model} x {n} worlds, {threads} threads, control_dt {args.control_dt} s = "
        f"{substeps} x {robot.physics_dt} s physics steps; median of {args.repeats} x {args.steps} steps"
    )
    baseline = statistics.median(rates["raw"])
    print(f"{'contender':<10} {'env-steps/s':>12} {'physics steps/s':>16} {'vs raw':>8}")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:<10} {median:12.0f} {median * substeps:16.0f} {median / baseline:8.1%}")


if __name__ == "__main__":
    main()
