"""WarpBackend (MuJoCo Warp on Warp's CPU device) against the CpuBackend reference.

The first run compiles MuJoCo Warp's kernels for the CPU (about half a minute, cached
in ~/.cache/warp afterwards), so each robot is rolled out once per module, on few worlds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from sim_bridge_core.models import RobotModel, load_robot
from sim_bridge_core.sim.backends import BackendError, SimBackend
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.sim.backends.warp import WarpBackend

pytestmark = pytest.mark.warp

NUM_ENVS = 4
CONTROL_DT = 0.02
STEPS = 25
RESET_AT = 12
RESET_IDS = np.array([1, 3])
KEPT_IDS = np.array([0, 2])
# Worlds 0 and 1 get the same targets; world 0 has heavier links (a per-world model field).
PHASE = np.array([0.0, 0.0, 1.0, 2.0])
HEAVY_WORLD, MASS_SCALE = 0, 1.5

# Warp simulates in float32, MuJoCo in float64. Over these 250 substeps of stiff servos the
# largest differences measured were 1.6e-6 rad, 1.5e-5 rad/s, 3.9e-3 N·m and 5.9e-7 m (arm7;
# other target sequences gave up to 3.5e-6, 4.4e-5, 4.4e-3, 1.8e-6). Efforts are the loosest
# because kp up to 4500 N·m/rad turns micro-radian errors into milli-newton-metres, against
# torques of up to 87 N·m. The tolerances allow about five times the worst seen.
TOLERANCE = {"positions": 2e-5, "velocities": 2e-4, "efforts": 2e-2, "site": 1e-5}


@dataclass
class Rollout:
    """Each quantity over the control steps, (STEPS, N, ...), and the state just before the reset."""

    trace: dict[str, np.ndarray]
    before_reset: dict[str, np.ndarray]


def _state(backend: SimBackend) -> dict[str, np.ndarray]:
    return {
        "positions": backend.joint_positions(),
        "velocities": backend.joint_velocities(),
        "efforts": backend.joint_efforts(),
        "site": np.array(backend.site_positions(0)),  # CpuBackend returns a live view
    }


def _roll_out(backend: SimBackend, reset_positions: np.ndarray) -> Rollout:
    robot = backend.robot
    backend.model_field("body_mass")[HEAVY_WORLD] *= MASS_SCALE
    states = []
    for k in range(STEPS):
        wave = np.sin(0.3 * k + PHASE[:, None] + np.arange(robot.num_joints))
        target = robot.clamp(robot.home + 0.3 * _span(robot) * wave)
        if k % 2:  # odd steps: five controller updates ramping to the target, as a trajectory controller
            start = backend.joint_positions()
            target = start + (target - start) * (np.arange(1, 6) / 5)[:, None, None]
        backend.step(target)
        if k == RESET_AT:
            before_reset = _state(backend)
            backend.reset(RESET_IDS, reset_positions)
        states.append(_state(backend))
    return Rollout({key: np.stack([s[key] for s in states]) for key in states[0]}, before_reset)


def _span(robot: RobotModel) -> np.ndarray:
    return np.where(np.isfinite(robot.upper - robot.lower), robot.upper - robot.lower, 2.0)


@pytest.fixture(scope="module", params=["arm7", "pendulum"])
def robot(request) -> RobotModel:
    return load_robot(request.param)


@pytest.fixture(scope="module")
def reset_positions(robot: RobotModel) -> np.ndarray:
    return robot.clamp(robot.home + 0.1 * _span(robot))[None].repeat(len(RESET_IDS), axis=0)


@pytest.fixture(scope="module")
def cpu(robot: RobotModel, reset_positions: np.ndarray) -> Rollout:
    return _roll_out(CpuBackend(robot, NUM_ENVS, CONTROL_DT), reset_positions)


@pytest.fixture(scope="module")
def warp(robot: RobotModel, reset_positions: np.ndarray) -> Rollout:
    return _roll_out(WarpBackend(robot, NUM_ENVS, CONTROL_DT, device="cpu"), reset_positions)


def test_warp_matches_cpu(cpu: Rollout, warp: Rollout) -> None:
    for key, tolerance in TOLERANCE.items():
        diff = np.abs(cpu.trace[key] - warp.trace[key]).max()
        assert diff < tolerance, f"{key}: max |cpu - warp| = {diff:.3g} >= {tolerance}"


def test_reset_subset_leaves_other_worlds_untouched(warp: Rollout, reset_positions: np.ndarray) -> None:
    after = {key: values[RESET_AT] for key, values in warp.trace.items()}
    for key, before in warp.before_reset.items():
        np.testing.assert_array_equal(after[key][KEPT_IDS], before[KEPT_IDS], err_msg=key)
    np.testing.assert_allclose(after["positions"][RESET_IDS], reset_positions, atol=1e-6)
    np.testing.assert_array_equal(after["velocities"][RESET_IDS], 0.0)


def test_per_world_model_field_takes_effect(cpu: Rollout, warp: Rollout) -> None:
    # Worlds 0 and 1 follow the same targets until world 1 is reset; only the mass differs.
    for rollout in (cpu, warp):
        efforts = rollout.trace["efforts"][:RESET_AT]
        assert np.abs(efforts[:, HEAVY_WORLD] - efforts[:, 1]).max() > 10 * TOLERANCE["efforts"]


def test_unservable_model_raises_backend_error(tmp_path) -> None:
    mjcf = tmp_path / "pgs_pendulum.xml"
    mjcf.write_text(
        """<mujoco model="pgs_pendulum">
  <option solver="PGS"/>
  <worldbody><body><joint name="hinge" axis="0 1 0"/><geom size="0.1" mass="1"/></body></worldbody>
  <actuator><motor joint="hinge"/></actuator>
</mujoco>"""
    )
    with pytest.raises(BackendError, match=r"MuJoCo Warp cannot simulate model 'pgs_pendulum': .*PGS"):
        WarpBackend(load_robot(str(mjcf)), 1, CONTROL_DT, device="cpu")


def test_unknown_device_raises_backend_error() -> None:
    with pytest.raises(BackendError, match="Warp device 'no-such-device' is not available"):
        WarpBackend(load_robot("pendulum"), 1, CONTROL_DT, device="no-such-device")


@pytest.mark.parametrize("backend_class", [CpuBackend, WarpBackend])
def test_added_joint_velocities_reach_only_the_given_worlds(backend_class) -> None:
    robot = load_robot("arm7")
    backend = backend_class(robot, NUM_ENVS, CONTROL_DT)
    before = backend.joint_velocities()
    dofs = robot.dof_adr[[1, 3]]
    backend.add_joint_velocities(np.array([2]), dofs, np.array([[0.5, -0.25]]))
    after = backend.joint_velocities()
    np.testing.assert_allclose(after[2, [1, 3]] - before[2, [1, 3]], [0.5, -0.25], atol=1e-6)
    np.testing.assert_array_equal(np.delete(after, 2, axis=0), np.delete(before, 2, axis=0))


def _bed_of_spheres(path) -> RobotModel:
    """A plate on 25 spheres with a driven flap, dropped on the floor: at rest it holds 25 contacts,
    100 constraint rows (pyramidal cones), more than MuJoCo Warp allocates for it by default."""
    spheres = "".join(
        f'<geom type="sphere" size="0.02" pos="{x} {y} -0.04" mass="0.05"/>'
        for x in np.linspace(-0.24, 0.24, 5)
        for y in np.linspace(-0.24, 0.24, 5)
    )
    path.write_text(
        f"""<mujoco model="bed_of_spheres"><option timestep="0.004"/>
        <worldbody><geom type="plane" size="5 5 0.1"/>
          <body name="plate" pos="0 0 0.2"><freejoint/><geom type="box" size="0.3 0.3 0.02" mass="2"/>
            {spheres}
            <body name="flap" pos="0 0 0.05"><joint name="flap" axis="0 1 0" range="-1 1"/>
              <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02" mass="0.1"/></body>
          </body>
        </worldbody>
        <actuator><position joint="flap" kp="10"/></actuator></mujoco>"""
    )
    return load_robot(str(path))


def test_a_robot_at_rest_on_many_contacts_keeps_every_constraint(tmp_path) -> None:
    import mujoco_warp as mjw

    robot = _bed_of_spheres(tmp_path / "bed.xml")
    assert mjw.make_data(robot.model, nworld=1).njmax < 100  # the default would drop constraints
    warp, cpu = WarpBackend(robot, 2, CONTROL_DT, device="cpu"), CpuBackend(robot, 2, CONTROL_DT)
    for _ in range(40):  # 0.8 s: dropped 0.14 m, settled on all 25 spheres
        for backend in (warp, cpu):
            backend.step(np.zeros((2, 1)))
    assert not warp._data.overflow.numpy().any()
    heights = [backend.read("qpos", np.array([2]))[:, 0] for backend in (warp, cpu)]
    np.testing.assert_allclose(heights[0], heights[1], atol=1e-3)  # resting on its spheres, as MuJoCo
    assert abs(heights[1][0] - 0.06) < 5e-3  # the plate's centre over spheres of radius 0.02
