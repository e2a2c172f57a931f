"""The cpu backend against mujoco.batch used directly."""

from __future__ import annotations

import mujoco
import numpy as np
from mujoco.batch import Batch
from sim_bridge_core.models import load_robot
from sim_bridge_core.sim.backends.cpu import CpuBackend


def test_matches_raw_batch_bit_for_bit():
    arm = load_robot("arm7")
    backend = CpuBackend(arm, 8, 0.02, threads=2)
    raw = Batch(arm.model, 8, 1)
    qpos, ctrl = raw.bind("qpos"), raw.bind("ctrl")
    qpos[:] = arm.home
    raw.forward()
    rng = np.random.default_rng(0)
    for _ in range(20):
        targets = arm.clamp(arm.home + rng.uniform(-0.3, 0.3, (8, 7)))
        backend.step(targets)
        ctrl[:] = targets
        raw.step(nstep=10)
    np.testing.assert_array_equal(backend.joint_positions(), qpos[:, arm.qpos_adr])


def test_setpoints_changing_inside_the_period_reach_each_physics_step():
    """A ramp (a setpoint per controller update) runs as one rollout call; it must be the same physics
    as writing each update's control and stepping, with the gripper-like actuators left alone."""
    arm = load_robot("arm7")
    backend = CpuBackend(arm, 4, 0.02, threads=2)
    raw = Batch(arm.model, 4, 1)
    qpos, ctrl = raw.bind("qpos"), raw.bind("ctrl")
    qpos[:] = arm.home
    ctrl[:] = arm.home
    raw.forward()
    rng = np.random.default_rng(1)
    for updates in (10, 5, 2, 10):
        ramp = arm.clamp(arm.home + rng.uniform(-0.3, 0.3, (updates, 4, 7)))
        backend.step(ramp)
        for setpoint in ramp:
            ctrl[:] = setpoint
            raw.step(nstep=10 // updates)
    np.testing.assert_array_equal(backend.joint_positions(), qpos[:, arm.qpos_adr])
    np.testing.assert_array_equal(backend.joint_velocities(), raw.bind("qvel")[:, arm.dof_adr])


def test_reset_touches_only_the_given_worlds():
    arm = load_robot("arm7")
    backend = CpuBackend(arm, 4, 0.02)
    for _ in range(5):
        backend.step(np.tile(arm.home + 0.2, (4, 1)))
    before = backend.joint_positions()
    velocities = backend.joint_velocities()
    backend.reset(np.array([1, 3]), np.tile(arm.home, (2, 1)))
    after = backend.joint_positions()
    np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
    np.testing.assert_array_equal(after[[1, 3]], np.tile(arm.home, (2, 1)))
    assert np.all(backend.joint_velocities()[[1, 3]] == 0)
    np.testing.assert_array_equal(backend.joint_velocities()[[0, 2]], velocities[[0, 2]])


def test_site_positions_describe_the_state_after_the_step():
    arm = load_robot("arm7")
    backend = CpuBackend(arm, 2, 0.02)
    backend.step(np.tile(arm.home + 0.3, (2, 1)))
    data = mujoco.MjData(arm.model)
    data.qpos[:] = backend.batch.bind("qpos")[0]
    mujoco.mj_kinematics(arm.model, data)
    site = arm.site_id("ee")
    np.testing.assert_allclose(backend.site_positions(site)[0], data.site_xpos[site], atol=1e-12)


def test_per_world_model_fields_change_one_world():
    arm = load_robot("arm7")
    backend = CpuBackend(arm, 2, 0.02)
    mass = backend.model_field("body_mass")
    mass[1] *= 3.0
    for _ in range(20):
        backend.step(np.tile(arm.home, (2, 1)))
    efforts = backend.joint_efforts()
    # The heavier world needs more torque at the shoulder to hold the same pose.
    assert abs(efforts[1, 1]) > 1.5 * abs(efforts[0, 1])
