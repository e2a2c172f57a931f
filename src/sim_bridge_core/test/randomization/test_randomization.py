"""Domain randomization on real MuJoCo physics: specs, draws, their effect on the physics, schedules."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sim_bridge_core.config import ConfigError
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.jobs.training import evaluation_worlds
from sim_bridge_core.models import PdGains, load_robot
from sim_bridge_core.randomization import (
    PARAMETERS,
    Randomizer,
    bind,
    load_spec,
    spec_from_mapping,
)
from sim_bridge_core.randomization.plot import plot_distributions
from sim_bridge_core.randomization.spec import VISUAL
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.simulator.core import Simulator, SimulatorConfig
from sim_bridge_core.tasks import HoldTask, make_task

SPECS = Path(__file__).resolve().parents[4] / "config" / "randomization"
FLOATER = str(Path(__file__).resolve().parents[1] / "models" / "floating_imu.xml")
DT = 0.02
ARM = load_robot("arm7")
# A weak servo (5 % of arm7's gains) lets gravity and link masses show as sag.
WEAK = {
    "actuator_kp": {"operation": "scale", "low": 0.05, "high": 0.05},
    "actuator_kd": {"operation": "scale", "low": 0.05, "high": 0.05},
}
NO_GRAVITY = {"gravity": {"operation": "abs", "low": 0.0, "high": 0.0}}

SLIDER = """
<mujoco model="slider">
  <option timestep="0.002"/>
  <worldbody>
    <geom name="floor" type="plane" size="5 5 0.1"/>
    <body name="box" pos="0 0 0.05">
      <joint name="x" type="slide" axis="1 0 0"/>
      <joint name="z" type="slide" axis="0 0 1"/>
      <geom name="box" type="box" size="0.05 0.05 0.05" mass="1"/>
    </body>
  </worldbody>
  <actuator>
    <position name="x" joint="x" kp="20" kv="2"/>
  </actuator>
</mujoco>
"""


def fixed(low: float, operation: str = "abs", **extra) -> dict:
    """A parameter entry whose every draw is ``low`` (a degenerate range)."""
    return {"operation": operation, "low": low, "high": low, **extra}


def randomized(spec: dict, robot=ARM, num_envs: int = 2, seed: int | None = None) -> Randomizer:
    return Randomizer(spec_from_mapping(spec), CpuBackend(robot, num_envs, DT, threads=1), seed=seed)


def env_with(
    spec: dict | None,
    num_envs: int = 2,
    task=None,
    episode_length_s: float = 100.0,
    seed: int = 0,
    command_interface: str = "trajectory",
):
    backend = CpuBackend(ARM, num_envs, DT, threads=1)
    randomizer = None if spec is None else Randomizer(spec_from_mapping(spec), backend)
    return BatchedEnv(
        backend,
        task or HoldTask(ARM),
        episode_length_s,
        seed=seed,
        randomizer=randomizer,
        command_interface=command_interface,
    )


def hold_home(spec: dict, steps: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions and efforts of arm7 holding its home pose for ``steps`` control steps."""
    backend = randomized(spec).backend
    targets = np.tile(ARM.home, (2, 1))
    for _ in range(steps):
        backend.step(targets)
    return backend.joint_positions(), backend.joint_efforts()


def sag(positions: np.ndarray) -> float:
    return float(np.abs(positions - ARM.home).sum(axis=1).mean())


# ------------------------------------------------------------------------- draws


def test_same_seed_same_draws_and_noise():
    spec = load_spec(SPECS / "wide.yaml")
    a, b, c = (Randomizer(spec, CpuBackend(ARM, 8, DT, threads=1), seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.applied()[0], b.applied()[0])
    assert not np.array_equal(a.applied()[0], c.applied()[0])

    envs = [env_with(_yaml("default"), 4) for _ in range(2)]
    other = env_with({**_yaml("default"), "seed": 1}, 4)
    targets = np.tile(ARM.home + 0.1, (4, 1))
    for _ in range(10):
        for env in (*envs, other):
            env.step(targets)
        np.testing.assert_array_equal(envs[0].observation(), envs[1].observation())
        np.testing.assert_array_equal(envs[0].backend.joint_positions(), envs[1].backend.joint_positions())
    assert not np.array_equal(envs[0].observation(), other.observation())


def _yaml(name: str) -> dict:
    import yaml

    return yaml.safe_load((SPECS / f"{name}.yaml").read_text())["randomization"]


def test_distributions_stay_in_range_and_have_their_shape():
    robot_spec = {
        "body_mass": {"operation": "scale", "distribution": "log_uniform", "low": 0.5, "high": 2.0},
        "dof_damping": {"operation": "scale", "distribution": "gaussian", "low": 0.5, "high": 1.5},
        "geom_friction": {"operation": "scale", "distribution": "uniform", "low": 0.5, "high": 1.5},
        "action_delay_steps": {"low": 0, "high": 2},
    }
    parameters = {p.name: p for p in bind(spec_from_mapping(robot_spec), ARM)}
    rng = np.random.default_rng(0)
    draws = {name: p.draw(rng, 20000) for name, p in parameters.items()}
    for name, values in draws.items():
        assert values.min() >= robot_spec[name]["low"] and values.max() <= robot_spec[name]["high"]
    # log-uniform: log of the draws is uniform, so its median is the geometric mean (1.0).
    assert abs(np.median(draws["body_mass"]) - 1.0) < 0.03
    # gaussian about the middle with std a sixth of the range: about 68 % within one std.
    within = np.mean(np.abs(draws["dof_damping"] - 1.0) < 1 / 6)
    assert 0.64 < within < 0.72
    assert set(np.unique(draws["action_delay_steps"])) == {0.0, 1.0, 2.0}


def test_applied_names_have_no_commas_and_match_the_values():
    randomizer = randomized(_yaml("wide"), num_envs=3)
    values, names = randomizer.applied()
    assert values.shape == (3, len(names)) and values.dtype == np.float64
    assert not any("," in name for name in names) and len(set(names)) == len(names)
    assert {"body_mass/link3", "gravity_z", "action_delay_steps", "actuator_kp/joint1"} <= set(names)
    mass = randomizer.backend.model_field("body_mass")
    np.testing.assert_array_equal(
        values[:, names.index("body_mass/link3")], mass[:, ARM.model.body("link3").id]
    )


# ------------------------------------------------------------ physics effects


def test_heavier_links_need_more_effort_and_sag_more_under_a_weak_servo():
    nominal_q, nominal_effort = hold_home(WEAK)
    heavy_q, heavy_effort = hold_home({**WEAK, "body_mass": fixed(2.0, "scale")})
    assert sag(heavy_q) > 1.8 * sag(nominal_q)
    assert abs(heavy_effort[0, 1]) > 1.8 * abs(nominal_effort[0, 1])
    # The inertia follows the mass.
    randomizer = randomized({"body_mass": fixed(2.0, "scale")})
    inertia = randomizer.backend.model_field("body_inertia")
    np.testing.assert_allclose(
        inertia[:, 1:], np.broadcast_to(2.0 * ARM.model.body_inertia[1:], (2, 7, 3)), rtol=1e-15
    )


def test_gravity_changes_sag():
    nominal = sag(hold_home(WEAK)[0])
    assert sag(hold_home({**WEAK, "gravity": fixed(-5.0, "add", axes="z")})[0]) > 1.3 * nominal
    assert sag(hold_home({**WEAK, **NO_GRAVITY})[0]) < 0.01 * nominal


def test_centre_of_mass_shift_changes_the_holding_torques():
    _, nominal = hold_home(WEAK)
    _, shifted = hold_home({**WEAK, "body_com": fixed(0.05, "add", axes="x")})
    assert np.abs(shifted - nominal).max() > 0.5  # N*m


def _slider_travel(tmp_path: Path, spec: dict) -> float:
    path = tmp_path / "slider.xml"
    path.write_text(SLIDER)
    robot = load_robot(str(path))
    backend = randomized(spec, robot=robot, num_envs=1).backend
    for _ in range(50):
        backend.step(np.array([[1.0]]))
    return float(backend.joint_positions()[0, 0])


def test_higher_friction_slows_a_sliding_box(tmp_path):
    slippery = _slider_travel(tmp_path, {"geom_friction": fixed(0.2)})
    nominal = _slider_travel(tmp_path, {})
    sticky = _slider_travel(tmp_path, {"geom_friction": fixed(2.0, "scale")})
    assert slippery > nominal > sticky
    assert slippery - sticky > 0.2  # metres


def _pendulum_swing(spec: dict, steps: int = 100) -> np.ndarray:
    """Joint angle of a pendulum released from 1 rad with a negligible servo, per step."""
    robot = load_robot("pendulum", gains=PdGains(kp=1e-6, kd=0.0))
    backend = randomized(spec, robot=robot, num_envs=1).backend
    backend.reset(np.array([0]), np.array([[1.0]]))
    angles = []
    for _ in range(steps):
        backend.step(np.array([[1.0]]))
        angles.append(backend.joint_positions()[0, 0])
    return np.array(angles)


def test_joint_damping_and_frictionloss_slow_a_swinging_joint_and_armature_slows_its_period():
    nominal = _pendulum_swing({})
    damped = _pendulum_swing({"dof_damping": fixed(40.0, "scale")})
    rubbing = _pendulum_swing({"dof_frictionloss": fixed(1.0, "add")})
    heavy_rotor = _pendulum_swing({"dof_armature": fixed(0.3, "add")})
    late = slice(50, None)
    assert np.abs(damped[late]).max() < 0.5 * np.abs(nominal[late]).max()
    assert np.abs(rubbing[late]).max() < 0.5 * np.abs(nominal[late]).max()
    first_crossing = {
        name: int(np.argmax(q < 0)) for name, q in (("nominal", nominal), ("rotor", heavy_rotor))
    }
    assert first_crossing["rotor"] > first_crossing["nominal"] + 3


def _step_response(spec: dict, steps: int = 5) -> np.ndarray:
    backend = randomized(spec).backend
    target = np.tile(ARM.home, (2, 1))
    target[:, 0] += 0.3  # joint1 turns about the vertical: no gravity torque
    trace = []
    for _ in range(steps):
        backend.step(target)
        trace.append(backend.joint_positions()[:, 0] - ARM.home[0])
    return np.array(trace)


def test_kp_and_kd_change_tracking_and_keep_the_servo_consistent():
    nominal = _step_response({})
    soft = _step_response({"actuator_kp": fixed(0.1, "scale")})
    assert abs(0.3 - soft[2, 0]) > abs(0.3 - nominal[2, 0]) + 0.05
    underdamped = _step_response({"actuator_kd": fixed(0.1, "scale")}, steps=25)
    assert underdamped.max() > 0.3 + 0.02 and _step_response({}, steps=25).max() < 0.3 + 1e-3

    randomizer = randomized(
        {"actuator_kp": {"low": 0.5, "high": 2.0}, "actuator_kd": {"low": 0.5, "high": 2.0}}
    )
    gain = randomizer.backend.model_field("actuator_gainprm")[:, ARM.actuator_ids]
    bias = randomizer.backend.model_field("actuator_biasprm")[:, ARM.actuator_ids]
    values, names = randomizer.applied()
    kp = values[:, [names.index(f"actuator_kp/{j}") for j in ARM.joint_names]]
    kd = values[:, [names.index(f"actuator_kd/{j}") for j in ARM.joint_names]]
    np.testing.assert_array_equal(gain[..., 0], kp)
    np.testing.assert_array_equal(bias[..., 1], -kp)
    np.testing.assert_array_equal(bias[..., 2], -kd)
    assert not np.allclose(kp, ARM.model.actuator_gainprm[ARM.actuator_ids, 0])


def test_motor_strength_scales_kp_kd_and_the_torque_limit_together():
    weak = _step_response({"actuator_strength": fixed(0.1, "scale")})
    assert abs(0.3 - weak[2, 0]) > abs(0.3 - _step_response({})[2, 0]) + 0.05
    randomizer = randomized({"actuator_strength": {"low": 0.5, "high": 1.5}})
    actuators = ARM.actuator_ids
    factor, names = randomizer.applied()
    assert names == tuple(f"actuator_strength/{j}" for j in ARM.joint_names)
    field = randomizer.backend.model_field
    np.testing.assert_allclose(
        field("actuator_gainprm")[:, actuators, 0], factor * ARM.model.actuator_gainprm[actuators, 0]
    )
    np.testing.assert_allclose(
        field("actuator_biasprm")[:, actuators, 2], factor * ARM.model.actuator_biasprm[actuators, 2]
    )
    np.testing.assert_allclose(
        field("actuator_forcerange")[:, actuators],
        factor[..., None] * ARM.model.actuator_forcerange[actuators],
    )


def test_motor_strength_and_servo_gains_together_are_refused():
    with pytest.raises(ConfigError, match=r"randomization\.actuator_strength: it sets the kp and kd"):
        randomized({"actuator_strength": {"low": 0.9, "high": 1.1}, "actuator_kd": {"low": 0.9, "high": 1.1}})


def test_a_floating_base_is_pushed_through_its_free_joint_named_by_its_body():
    robot = load_robot(FLOATER)
    spec = {"push_velocity": {"targets": "trunk", "low": 0.5, "high": 0.5, "interval_s": 0.02}}
    randomizer = randomized(spec, robot=robot)
    base = robot.base.dof_adr + np.arange(6)
    randomizer.after_step()
    np.testing.assert_allclose(randomizer.backend.read("qvel", base), 0.5)
    assert randomizer.applied()[1][:2] == ("push_velocity_x/trunk", "push_velocity_y/trunk")


def test_action_delay_shifts_the_response_by_the_delay():
    delay = 2
    prompt = env_with(NO_GRAVITY)
    late = env_with({**NO_GRAVITY, "action_delay_steps": fixed(delay)})
    assert late.randomizer.applied()[0][:, -1].tolist() == [delay, delay]
    prompt_trace, late_trace = [], []
    for k in range(20):
        targets = ARM.home + 0.2 * np.sin(0.4 * k + np.arange(7))
        prompt.step(np.tile(targets, (2, 1)))
        late.step(np.tile(targets, (2, 1)))
        prompt_trace.append(prompt.backend.joint_positions())
        late_trace.append(late.backend.joint_positions())
    prompt_trace, late_trace = np.array(prompt_trace), np.array(late_trace)
    np.testing.assert_array_equal(late_trace[:delay], np.broadcast_to(ARM.home, late_trace[:delay].shape))
    np.testing.assert_allclose(late_trace[delay:], prompt_trace[:-delay], atol=1e-12)
    assert np.abs(late_trace - prompt_trace).max() > 0.05


def test_action_noise_changes_the_motion():
    quiet, noisy = env_with(None), env_with({"action_noise": {"low": -0.05, "high": 0.05}})
    for _ in range(5):
        quiet.step(np.tile(ARM.home, (2, 1)))
        noisy.step(np.tile(ARM.home, (2, 1)))
    assert np.abs(noisy.backend.joint_positions() - quiet.backend.joint_positions()).max() > 1e-3


def test_sensor_noise_and_bias_change_observations_but_not_physics():
    """Under a forward position controller; a trajectory controller starts each ramp from the
    sensed position, so there sensing errors do reach the physics (as on a robot)."""
    spec = {
        "joint_position_noise": {"low": -0.01, "high": 0.01},
        "joint_velocity_noise": {"distribution": "gaussian", "low": -0.1, "high": 0.1},
        "joint_position_bias": {"low": -0.02, "high": 0.02},
    }
    exact = env_with(None, task=make_task("reach", ARM), command_interface="position")
    noisy = env_with(spec, task=make_task("reach", ARM), command_interface="position")
    targets = np.tile(ARM.home + 0.1, (2, 1))
    previous = None
    for _ in range(10):
        exact.step(targets)
        noisy.step(targets)
        np.testing.assert_array_equal(noisy.backend.joint_positions(), exact.backend.joint_positions())
        np.testing.assert_array_equal(noisy.backend.joint_velocities(), exact.backend.joint_velocities())
        measured = noisy.measured_positions()
        np.testing.assert_array_equal(measured, noisy.measured_positions())  # one draw per step
        np.testing.assert_array_equal(noisy.observation(), noisy.observation())
        error = measured - noisy.backend.joint_positions()
        assert np.abs(error).max() <= 0.03 + 1e-12 and np.abs(error).min() > 0
        assert 0 < np.abs(noisy.measured_velocities() - noisy.backend.joint_velocities()).max() <= 0.1
        assert not np.array_equal(noisy.observation(), exact.observation())
        assert previous is None or not np.array_equal(error, previous)
        previous = error
    values, names = noisy.randomizer.applied()
    assert names == tuple(f"joint_position_bias/{j}" for j in ARM.joint_names)
    # Over many steps the noise averages out and leaves the bias.
    errors = []
    for _ in range(300):
        noisy.step(targets)
        errors.append(noisy.measured_positions() - noisy.backend.joint_positions())
    np.testing.assert_allclose(np.mean(errors, axis=0), values, atol=2e-3)


def test_imu_noise_and_bias_change_what_the_imu_reads_but_not_physics():
    spec = {
        "imu_angular_velocity_noise": {"distribution": "gaussian", "low": -0.06, "high": 0.06},
        "imu_linear_acceleration_bias": {"axes": "z", "low": 0.2, "high": 0.4},
    }
    yaml_text = yaml.safe_dump({"randomization": spec})
    config = SimulatorConfig(model=FLOATER, num_envs=4, task="none")
    exact, noisy = Simulator(config), Simulator(dataclasses.replace(config, randomization=yaml_text))
    fields = noisy.sensors.fields
    gyro = [fields.index(f"imu/angular_velocity_{a}") for a in "xyz"]
    vertical = fields.index("imu/linear_acceleration_z")
    previous = None
    for _ in range(30):
        exact.step()
        noisy.step()
        true, measured = exact.sensor_rows(), noisy.sensor_rows()
        np.testing.assert_array_equal(noisy.sensors.read(noisy.env.backend), true)  # the physics is untouched
        error = measured - true
        assert 0 < np.abs(error[:, gyro]).max() <= 0.06
        assert previous is None or not np.array_equal(error[:, gyro], previous)  # drawn every step
        previous = error[:, gyro]
        untouched = np.delete(np.arange(len(fields)), [*gyro, vertical])
        np.testing.assert_array_equal(error[:, untouched], 0.0)
    values, names = noisy.env.randomizer.applied()
    assert names == ("imu_linear_acceleration_bias_z",)
    assert np.all((values >= 0.2) & (values <= 0.4))
    np.testing.assert_allclose(error[:, vertical], values[:, 0], atol=1e-12)  # at rest: 9.81 + the bias
    noisy.env.randomizer.set_enabled(False)
    np.testing.assert_array_equal(noisy.sensor_rows(), noisy.sensors.read(noisy.env.backend))


def test_initial_joint_offset_moves_the_reset_pose():
    env = env_with({"initial_joint_offset": {"low": -0.1, "high": 0.1}}, num_envs=16)
    values, _ = env.randomizer.applied()
    offsets = env.backend.joint_positions() - ARM.home
    np.testing.assert_allclose(offsets, ARM.clamp(ARM.home + values) - ARM.home, atol=1e-12)
    assert np.abs(values).max() <= 0.1 and np.abs(values).max() > 0.05
    env.reset(np.array([3]))
    assert not np.array_equal(env.randomizer.applied()[0][3], values[3])
    np.testing.assert_array_equal(env.randomizer.applied()[0][:3], values[:3])


def test_pushes_kick_joint_velocities_every_interval():
    spec = {"push_velocity": {"targets": "joint1", "low": 0.5, "high": 0.5, "interval_s": 0.1}}
    calm, pushed = env_with(None), env_with(spec)
    targets = np.tile(ARM.home, (2, 1))
    for step in range(1, 12):
        calm.step(targets)
        pushed.step(targets)
        kick = pushed.backend.joint_velocities() - calm.backend.joint_velocities()
        if step < 5:
            np.testing.assert_array_equal(kick, 0.0)
        if step in (5, 10):  # every 0.1 s = 5 control steps
            assert np.abs(kick[:, 0] - 0.5).max() < 1e-9 if step == 5 else kick[0, 0] > 0.4
    values, names = pushed.randomizer.applied()
    assert names == ("push_velocity/joint1",) and values.tolist() == [[0.5], [0.5]]


# ------------------------------------------------------------ enable / disable


@pytest.mark.parametrize("name", ["default", "wide"])
def test_disabling_restores_nominal_fields_exactly_and_enabling_reapplies(name):
    randomizer = randomized(_yaml(name), num_envs=4)
    backend, model = randomizer.backend, ARM.model
    drawn, names = randomizer.applied()
    fields = [n for n in ("body_mass", "body_inertia", "body_ipos", "geom_friction", "dof_damping")]
    fields += ["dof_armature", "dof_frictionloss", "actuator_gainprm", "actuator_biasprm"]
    assert not np.array_equal(
        backend.model_field("body_mass"), np.broadcast_to(model.body_mass, (4, model.nbody))
    )

    randomizer.set_enabled(False)
    for field in fields:
        live = backend.model_field(field)
        np.testing.assert_array_equal(live, np.broadcast_to(getattr(model, field), live.shape), err_msg=field)
    gravity = backend.model_field("opt.gravity")
    np.testing.assert_array_equal(gravity, np.broadcast_to(model.opt.gravity, gravity.shape))
    for derived in ("body_subtreemass", "dof_invweight0", "actuator_acc0"):
        values = backend.batch.expanded(derived)
        np.testing.assert_array_equal(values, np.broadcast_to(getattr(model, derived), values.shape))
    nominal_values, _ = randomizer.applied()
    np.testing.assert_array_equal(
        nominal_values[:, names.index("body_mass/link3")], model.body("link3").mass[0]
    )

    randomizer.set_enabled(True)
    np.testing.assert_array_equal(randomizer.applied()[0], drawn)
    column = names.index("body_mass/link3")
    np.testing.assert_array_equal(
        backend.model_field("body_mass")[:, model.body("link3").id], drawn[:, column]
    )


def test_a_disabled_randomizer_and_the_none_spec_step_like_no_randomizer():
    reach = make_task("reach", ARM)
    plain = env_with(None, 3, task=reach, episode_length_s=0.2)
    none = env_with(_yaml("none"), 3, task=reach, episode_length_s=0.2)
    disabled = env_with({**_yaml("wide"), "enabled": False}, 3, task=reach, episode_length_s=0.2)
    rng = np.random.default_rng(0)
    for _ in range(25):  # through two auto-resets
        targets = ARM.clamp(ARM.home + rng.uniform(-0.3, 0.3, (3, 7)))
        for env in (plain, none, disabled):
            env.step(targets)
        for env in (none, disabled):
            np.testing.assert_array_equal(env.observation(), plain.observation())
            np.testing.assert_array_equal(env.backend.joint_efforts(), plain.backend.joint_efforts())


# ------------------------------------------------------------------- schedules


def test_reset_schedule_redraws_exactly_the_worlds_that_reset():
    env = env_with(_yaml("default"), num_envs=6, task=make_task("reach", ARM), episode_length_s=0.1)
    targets = np.tile(ARM.home, (6, 1))
    before, names = env.randomizer.applied()
    mass_before = env.backend.model_field("body_mass").copy()
    env.reset(np.array([1, 4]))
    after, _ = env.randomizer.applied()
    # Columns drawn from a continuous range (not, e.g., a scaled zero frictionloss).
    drawn = ("body_mass", "body_com", "geom_friction", "actuator_kp", "dof_damping", "joint_position_bias")
    model_columns = [i for i, n in enumerate(names) if n.startswith(drawn)]
    changed = np.any(after[:, model_columns] != before[:, model_columns], axis=1)
    assert changed.tolist() == [False, True, False, False, True, False]
    assert np.all(after[[1, 4]][:, model_columns] != before[[1, 4]][:, model_columns])
    mass = env.backend.model_field("body_mass")
    np.testing.assert_array_equal(mass[[0, 2, 3, 5]], mass_before[[0, 2, 3, 5]])

    # Auto-reset: world 2 restarts its episode one step later than the others.
    env.step(targets)
    env.reset(np.array([2]))
    before, _ = env.randomizer.applied()
    for _ in range(4):
        result = env.step(targets)
    assert result.truncated.tolist() == [True, True, False, True, True, True]
    after, _ = env.randomizer.applied()
    changed = np.any(after[:, model_columns] != before[:, model_columns], axis=1)
    assert changed.tolist() == [True, True, False, True, True, True]


def test_interval_schedule_redraws_every_interval_and_startup_never():
    interval = env_with(
        {**_yaml("default"), "schedule": "interval", "interval_s": 0.1}, episode_length_s=0.04
    )
    startup = env_with({**_yaml("default"), "schedule": "startup"}, episode_length_s=0.04)
    targets = np.tile(ARM.home, (2, 1))
    first_interval = interval.randomizer.applied()[0][:, :20].copy()
    first_startup = startup.randomizer.applied()[0][:, :20].copy()
    for step in range(1, 11):
        interval.step(targets)
        startup.step(targets)
        np.testing.assert_array_equal(startup.randomizer.applied()[0][:, :20], first_startup)
        now = interval.randomizer.applied()[0][:, :20]
        if step < 5:
            np.testing.assert_array_equal(now, first_interval)
        if step == 5:
            assert np.all(now != first_interval)


def test_curriculum_grows_the_ranges_from_the_start_fraction():
    spec = {
        "schedule": "reset",
        "curriculum": {"start_fraction": 0.0, "steps": 100},
        "body_mass": {"low": 0.5, "high": 1.5},
    }
    env = env_with(spec, num_envs=64)
    nominal = ARM.model.body_mass[1:]
    np.testing.assert_array_equal(env.randomizer.applied()[0], np.broadcast_to(nominal, (64, 7)))
    for _ in range(50):
        env.step(np.tile(ARM.home, (64, 1)))
    assert env.randomizer.fraction == 0.5
    env.reset()
    ratio = env.randomizer.applied()[0] / nominal
    assert 0.75 - 1e-12 <= ratio.min() < 0.8 and 1.2 < ratio.max() <= 1.25 + 1e-12


# -------------------------------------------------------------------- bad specs

GOOD = {"operation": "scale", "distribution": "uniform", "low": 0.8, "high": 1.2}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"body_mas": GOOD}, r"randomization\.body_mas: unknown parameter"),
        ({"body_mass": {**GOOD, "lo": 1}}, r"randomization\.body_mass\.lo: unknown key"),
        ({"body_mass": {"low": 0.8}}, r"randomization\.body_mass\.high: required"),
        (
            {"body_mass": {**GOOD, "targets": ["link9"]}},
            r"randomization\.body_mass\.targets: arm7 has no body named 'link9'",
        ),
        (
            {"body_mass": {**GOOD, "targets": "wheel*"}},
            r"randomization\.body_mass\.targets: 'wheel\*' matches no body",
        ),
        (
            {"actuator_kp": {**GOOD, "targets": "floor"}},
            r"actuator_kp\.targets: arm7 has no position-controlled joint",
        ),
        (
            {"body_mass": {**GOOD, "low": 1.2, "high": 0.8}},
            r"randomization\.body_mass\.low: 1\.2 is above high 0\.8",
        ),
        (
            {"body_mass": {**GOOD, "distribution": "normal"}},
            r"randomization\.body_mass\.distribution: must be one of",
        ),
        ({"body_mass": {**GOOD, "operation": "mul"}}, r"randomization\.body_mass\.operation: must be one of"),
        (
            {"body_mass": {**GOOD, "low": 0.0}},
            r"randomization\.body_mass\.low: a scale of 0\.0 would make the mass non-positive",
        ),
        (
            {"body_mass": {**GOOD, "operation": "add", "low": -1.0}},
            r"randomization\.body_mass\.low: add -1 would make body_mass/link7 -0\.5",
        ),
        (
            {"body_mass": {**GOOD, "operation": "abs", "low": 0.0}},
            r"randomization\.body_mass\.low: mass must stay > 0",
        ),
        (
            {"actuator_kp": {**GOOD, "low": -0.1}},
            r"randomization\.actuator_kp\.low: a scale of -0\.1 would make the kp",
        ),
        (
            {"geom_friction": {**GOOD, "operation": "add", "low": -2.0}},
            r"randomization\.geom_friction\.low: add -2 would make",
        ),
        (
            {"body_mass": {**GOOD, "distribution": "log_uniform", "low": 0.0}},
            r"randomization\.body_mass\.low: .*log_uniform needs low > 0",
        ),
        ({"body_mass": {**GOOD, "std": 0.1}}, r"randomization\.body_mass\.std: only the gaussian"),
        (
            {"action_delay_steps": {"low": 0, "high": 1.5}},
            r"randomization\.action_delay_steps\.high: .*whole steps",
        ),
        (
            {"action_delay_steps": {"low": -1, "high": 1}},
            r"randomization\.action_delay_steps\.low: delay must stay >= 0",
        ),
        (
            {"action_delay_steps": {"low": 0, "high": 1e7}},
            r"randomization\.action_delay_steps\.high: delay must stay <= 50, got 1e\+07$",
        ),
        (
            {"action_noise": {"operation": "abs", "low": 0, "high": 1}},
            r"randomization\.action_noise\.operation: must be one of add, scale",
        ),
        (
            {"gravity": {"targets": "*", "low": 0, "high": 1}},
            r"randomization\.gravity\.targets: gravity takes no targets",
        ),
        (
            {"gravity": {"axes": "zz", "low": 0, "high": 1}},
            r"randomization\.gravity\.axes: must be distinct letters",
        ),
        ({"body_mass": {**GOOD, "axes": "x"}}, r"randomization\.body_mass\.axes: body_mass is not a vector"),
        ({"push_velocity": {"low": 0, "high": 1}}, r"randomization\.push_velocity\.interval_s: required"),
        (
            {"imu_angular_velocity_noise": {"low": -0.1, "high": 0.1}},
            r"randomization\.imu_angular_velocity_noise: arm7 has no IMU",
        ),
        (
            {"imu_linear_acceleration_bias": {"targets": "*", "low": 0, "high": 1}},
            r"randomization\.imu_linear_acceleration_bias\.targets: imu_linear_acceleration_bias takes no",
        ),
        (
            {"push_velocity": {"low": 0, "high": 1, "interval_s": [2, 1]}},
            r"randomization\.push_velocity\.interval_s: min",
        ),
        (
            {"body_mass": {**GOOD, "interval_s": 1}},
            r"randomization\.body_mass\.interval_s: only push_velocity",
        ),
        ({"body_mass": {**GOOD, "low": "small"}}, r"randomization\.body_mass\.low: must be float"),
        ({"body_mass": [0.8, 1.2]}, r"randomization\.body_mass: must be a mapping"),
        ({"schedule": "daily"}, r"randomization\.schedule: must be one of startup, reset, interval"),
        ({"schedule": "interval", "interval_s": 0}, r"randomization\.interval_s: must be > 0"),
        ({"seed": -1}, r"randomization\.seed: must be >= 0"),
        (
            {"curriculum": {"start_fraction": 1.5, "steps": 10}},
            r"randomization\.curriculum\.start_fraction: must be <= 1",
        ),
        ({"curriculum": {"start_fraction": 0.5}}, r"randomization\.curriculum\.steps: must be > 0"),
        ({"curriculum": {"begin": 0.5}}, r"randomization\.curriculum\.begin: unknown key"),
    ],
)
def test_bad_specs_name_their_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        bind(spec_from_mapping(spec), ARM)


def test_bad_files_name_the_section(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("randomization: [unclosed\n")
    with pytest.raises(ConfigError, match=r"randomization: .*not valid YAML"):
        load_spec(broken)
    with pytest.raises(ConfigError, match="randomization: cannot read"):
        load_spec(tmp_path / "missing.yaml")


# ---------------------------------------------------------- shipped specs, plot


@pytest.mark.parametrize("name", ["none", "default", "wide"])
def test_shipped_specs_load_against_arm7_and_run(name):
    spec = load_spec(SPECS / f"{name}.yaml")
    assert spec.schedule in ("startup", "reset", "interval") and spec.seed == 0
    assert (name == "none") == (not spec.parameters)
    backend = CpuBackend(ARM, 4, DT, threads=1)
    randomizer = Randomizer(spec, backend)
    env = BatchedEnv(backend, make_task("reach", ARM), 0.1, randomizer=randomizer)
    for _ in range(12):
        env.step(np.tile(ARM.home, (4, 1)))
    values, names = randomizer.applied()
    assert np.isfinite(values).all() and np.isfinite(env.observation()).all()
    assert values.shape == (4, len(names))
    if name != "none":  # every kind but the IMU's (arm7 has none; they are in the files as comments)
        # and motor strength, which sets what actuator_kp/kd set (config/randomization/go1.yaml has it);
        # visual kinds are in default (textures but for the model's own ids), for cameras only
        imu = {kind for kind in PARAMETERS if kind.startswith("imu_")}
        visual = {kind for kind, entry in PARAMETERS.items() if entry.stage == VISUAL}
        left_out = {
            "gravity",
            "actuator_strength",
            "material_texture",
            *imu,
            *(visual if name == "wide" else ()),
        }
        assert set(PARAMETERS) - {p.name for p in spec.parameters} <= left_out


def test_plot_writes_a_png_and_the_cli_runs(tmp_path):
    path = plot_distributions(SPECS / "wide.yaml", "arm7", seed=0, path=tmp_path / "dist.png", num_envs=256)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    out = tmp_path / "cli.png"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim_bridge_core.randomization.plot",
            str(SPECS / "default.yaml"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.yaml"
    bad.write_text("randomization:\n  body_mass: {low: 2, high: 1}\n")
    run = subprocess.run(
        [sys.executable, "-m", "sim_bridge_core.randomization.plot", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 2 and "randomization.body_mass.low" in run.stderr


@pytest.mark.warp
def test_warp_backend_takes_the_same_draws_and_pushes():
    from sim_bridge_core.sim.backends.warp import WarpBackend

    spec = spec_from_mapping(
        {**_yaml("default"), "push_velocity": {"low": 0.3, "high": 0.3, "interval_s": 0.04}}
    )
    envs = {}
    for name, backend in (("warp", WarpBackend(ARM, 2, DT, device="cpu")), ("cpu", CpuBackend(ARM, 2, DT))):
        envs[name] = BatchedEnv(backend, HoldTask(ARM), 10.0, randomizer=Randomizer(spec, backend))
    warp, cpu = envs["warp"], envs["cpu"]
    np.testing.assert_array_equal(warp.randomizer.applied()[0], cpu.randomizer.applied()[0])
    # Warp keeps model fields in float32.
    np.testing.assert_allclose(
        warp.backend.model_field("body_mass"), cpu.backend.model_field("body_mass"), rtol=1e-7
    )
    for _ in range(2):  # a 0.3 rad/s push lands after the second step
        for env in envs.values():
            env.step(np.tile(ARM.home, (2, 1)))
    assert cpu.randomizer.applied()[0][0, -1] == 0.3
    np.testing.assert_allclose(warp.backend.joint_velocities(), cpu.backend.joint_velocities(), atol=1e-3)
    np.testing.assert_allclose(warp.measured_positions(), cpu.measured_positions(), atol=1e-4)
    warp.randomizer.set_enabled(False)
    np.testing.assert_array_equal(
        warp.backend.model_field("body_mass"),
        np.broadcast_to(ARM.model.body_mass.astype(np.float32), (2, ARM.model.nbody)),
    )


def test_state_resumes_the_draws_and_the_curriculum():
    spec = {**_yaml("wide"), "seed": 5}
    a = randomized(spec)
    a.step_count = 1234
    saved = a.state()
    a.resample()
    b = randomized({**spec, "seed": 6})
    b.restore(saved)
    b.resample()
    assert b.fraction == a.fraction < 1.0
    np.testing.assert_array_equal(b.applied()[0], a.applied()[0])


def test_a_spec_that_switches_itself_off_stays_off_when_enabled():
    switched_off = "enabled: false\nbody_mass: {targets: [link3], low: 0.5, high: 1.5}\n"
    env = Simulator(SimulatorConfig(num_envs=2, task="reach", randomization=switched_off)).env
    env.set_randomization_enabled(True)  # what the randomized evaluation asks
    assert not env.randomizer.enabled


def test_evaluation_worlds_draw_from_the_full_ranges_whatever_the_curriculum():
    spec = (
        "curriculum: {start_fraction: 0.1, steps: 100000}\n"
        "body_mass: {targets: [link3], low: 0.5, high: 1.5}\n"
    )
    sim = SimulatorConfig(num_envs=256, task="reach", randomization=spec)
    nominal = Simulator(SimulatorConfig(num_envs=1, task="reach")).env.backend.model_field("body_mass")[0]
    link = ARM.model.body("link3").id

    def spread(env: BatchedEnv) -> float:
        return float(np.max(np.abs(env.backend.model_field("body_mass")[:, link] / nominal[link] - 1.0)))

    assert spread(Simulator(sim).env) <= 0.05 + 1e-9  # a tenth of the +-50 % range
    assert spread(evaluation_worlds(sim, 256)) > 0.4
    assert evaluation_worlds(sim, 256).randomizer.fraction == 1.0


def test_a_curriculum_on_the_startup_schedule_is_refused():
    with pytest.raises(ConfigError, match=r"randomization\.curriculum: the startup schedule"):
        load_spec({"schedule": "startup", "curriculum": {"start_fraction": 0.3, "steps": 10}})
