"""Loading models and making every controllable joint take position targets."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import ModelError, PdGains, builtin_models, load_robot, load_robot_config
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.simulator.core import SimulatorConfig, simulated_robot


def test_builtin_arm7_is_a_seven_joint_position_controlled_arm():
    arm = load_robot("arm7")
    assert arm.num_joints == 7 and arm.pd_joints == ()
    assert np.all(arm.lower < arm.upper) and np.all(np.isfinite(arm.lower))
    assert np.all((arm.home >= arm.lower) & (arm.home <= arm.upper))
    data = mujoco.MjData(arm.model)
    data.qpos[arm.qpos_adr] = arm.home
    mujoco.mj_forward(arm.model, data)
    ee = data.site_xpos[arm.site_id("ee")]
    reach = np.linalg.norm(ee - [0, 0, 0.333])
    assert 0.3 < reach < 0.9, f"end-effector {ee} is not where a manipulator's would be"
    assert set(builtin_models()) >= {"arm7", "pendulum"}


def test_motor_gets_a_torque_limited_pd_servo():
    pendulum = load_robot("pendulum", gains=PdGains(kp=80.0, kd=5.0))
    assert pendulum.pd_joints == ("hinge",)
    act = pendulum.actuator_ids[0]
    assert pendulum.model.actuator_gainprm[act, 0] == 80.0
    assert pendulum.model.actuator_biasprm[act, 2] == -5.0
    np.testing.assert_allclose(pendulum.model.actuator_forcerange[act], [-8.0, 8.0])
    backend = CpuBackend(pendulum, 1, 0.02)
    for _ in range(150):
        backend.step(np.array([[0.5]]))
    # Gravity torque at 0.5 rad is ~2.6 N*m, well inside the 8 N*m limit: the servo holds close.
    assert abs(backend.joint_positions()[0, 0] - 0.5) < 0.05


def test_torque_limit_of_the_motor_is_kept():
    pendulum = load_robot("pendulum", gains=PdGains(kp=1000.0, kd=5.0))
    backend = CpuBackend(pendulum, 1, 0.02)
    backend.step(np.array([[3.0]]))
    assert np.abs(backend.joint_efforts()).max() <= 8.0 + 1e-9


def test_urdf_gets_pd_actuators_limited_by_effort(tmp_path):
    urdf = tmp_path / "two.urdf"
    inertia = '<inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/>'
    urdf.write_text(
        f"""<robot name="two">
          <link name="base"><inertial><mass value="1"/>{inertia}</inertial></link>
          <link name="l1"><inertial><origin xyz="0 0 0.2"/><mass value="1"/>{inertia}</inertial></link>
          <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/><axis xyz="0 1 0"/>
            <limit lower="-1.5" upper="1.5" effort="30" velocity="2"/></joint>
        </robot>"""
    )
    robot = load_robot(str(urdf))
    assert robot.joint_names == ("j1",) and robot.pd_joints == ("j1",)
    np.testing.assert_allclose([robot.lower[0], robot.upper[0]], [-1.5, 1.5])
    np.testing.assert_allclose(robot.model.actuator_forcerange[robot.actuator_ids[0]], [-30, 30])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("/definitely/not/here.xml", "not found"),
        ("no_such_builtin", "unknown model"),
    ],
)
def test_bad_model_names(model, message):
    with pytest.raises(ModelError, match=message):
        load_robot(model)


def test_unloadable_and_unsupported_models(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text("<mujoco><worldbody><body></worldbody></mujoco>")
    with pytest.raises(ModelError, match="cannot load model"):
        load_robot(str(broken))
    velocity = tmp_path / "velocity.xml"
    velocity.write_text(
        """<mujoco><worldbody><body><joint name="j"/><geom size=".1"/></body></worldbody>
           <actuator><velocity joint="j" kv="1"/></actuator></mujoco>"""
    )
    with pytest.raises(ModelError, match="neither a position servo nor a torque motor"):
        load_robot(str(velocity))
    passive = tmp_path / "passive.xml"
    passive.write_text("<mujoco><worldbody><body><freejoint/><geom size='.1'/></body></worldbody></mujoco>")
    with pytest.raises(ModelError, match="no hinge or slide joint"):
        load_robot(str(passive))


def test_model_parameters_override_the_model(tmp_path):
    from sim_bridge_core.models import parse_model_parameters

    parameters = parse_model_parameters(
        {
            "joints": {
                "joint2": {"damping": 3.0, "armature": 0.2, "frictionloss": 0.4, "kp": 4000.0, "kv": 300.0}
            },
            "bodies": {"link3": {"mass": 4.5}},
            "command_delay_s": 0.004,
        }
    )
    nominal, identified = load_robot("arm7"), load_robot("arm7", parameters=parameters)
    m, dof, act = identified.model, identified.dof_adr[1], identified.actuator_ids[1]
    assert (m.dof_damping[dof], m.dof_armature[dof], m.dof_frictionloss[dof]) == (3.0, 0.2, 0.4)
    assert m.actuator_gainprm[act, 0] == 4000.0 and tuple(m.actuator_biasprm[act, 1:3]) == (-4000.0, -300.0)
    link3 = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "link3")
    assert m.body_mass[link3] == 4.5
    np.testing.assert_allclose(m.body_inertia[link3], nominal.model.body_inertia[link3] * 4.5 / 3.0)
    assert identified.parameters.command_delay_s == 0.004
    assert nominal.model.dof_damping[dof] == 1.0  # the nominal model is untouched


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"joints": {"joint2": {"stiffness": 1.0}}},
            r"model_parameters\.joints\.joint2\.stiffness: unknown parameter",
        ),
        (
            {"joints": {"joint2": {"damping": -1.0}}},
            r"model_parameters\.joints\.joint2\.damping: must be finite and >= 0",
        ),
        (
            {"joints": {"joint2": {"kp": 0.0}}},
            r"model_parameters\.joints\.joint2\.kp: must be finite and > 0",
        ),
        (
            {"bodies": {"link3": {"mass": "heavy"}}},
            r"model_parameters\.bodies\.link3\.mass: must be a number",
        ),
        ({"command_delay_s": 2.0}, r"model_parameters\.command_delay_s: must be finite and >= 0.0, <= 1.0"),
        ({"masses": {}}, r"model_parameters\.masses: unknown key"),
    ],
)
def test_bad_model_parameters_name_the_key(data, message):
    from sim_bridge_core.config import ConfigError
    from sim_bridge_core.models import parse_model_parameters

    with pytest.raises(ConfigError, match=message):
        parse_model_parameters(data)


def test_model_parameters_for_unknown_names_are_refused_at_load():
    from sim_bridge_core.config import ConfigError
    from sim_bridge_core.models import parse_model_parameters

    with pytest.raises(ConfigError, match=r"model_parameters\.joints\.joint9: the model has no such joint"):
        load_robot("arm7", parameters=parse_model_parameters({"joints": {"joint9": {"damping": 1.0}}}))
    with pytest.raises(ConfigError, match=r"model_parameters\.bodies\.hand: the model has no such body"):
        load_robot("arm7", parameters=parse_model_parameters({"bodies": {"hand": {"mass": 1.0}}}))


def test_a_joint_listed_twice_is_refused_naming_it(tmp_path):
    twice = ["joint1", "joint2", "joint1"]
    with pytest.raises(ModelError, match=r"^joint_names: 'joint1' is listed twice"):
        load_robot("arm7", joint_names=twice)
    with pytest.raises(ConfigError, match=r"^simulator\.model: joint_names: 'joint1' is listed twice"):
        simulated_robot(SimulatorConfig(joint_names=twice))
    robot_file = tmp_path / "twice.yaml"
    robot_file.write_text(f"model: arm7\njoint_names: {twice}\n")
    with pytest.raises(ConfigError, match=r"^twice\.yaml: joint_names: 'joint1' is listed twice"):
        load_robot_config(str(robot_file), tmp_path)
