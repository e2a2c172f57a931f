"""Robots beyond a fixed-base arm, on small models written for these tests (test/models): a floating
base with an IMU, an arm with a tendon-driven gripper and a force/torque site; robot-config settings
(home keyframe, IMU site, task settings) and where model files are found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import serialize_message
from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import ModelError, load_robot
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.sim.sensors import SensorLayout
from sim_bridge_core.simulator.core import CommandError, Simulator, SimulatorConfig
from sim_bridge_core.simulator.wire import decode_joint_state, decode_multi_array
from sim_bridge_core.tasks import make_task
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

MODELS = Path(__file__).resolve().parents[1] / "models"
FLOATER, GRIPPER_ARM = str(MODELS / "floating_imu.xml"), str(MODELS / "gripper_arm.xml")


def settle(robot, steps: int = 50) -> tuple[CpuBackend, dict[str, float]]:
    backend = CpuBackend(robot, 1, 0.02, threads=1)
    for _ in range(steps):
        backend.step(robot.home[None])
    layout = SensorLayout.of(robot)
    return backend, dict(zip(layout.fields, layout.read(backend)[0], strict=True))


def test_a_floating_base_at_rest_reads_like_a_real_robot():
    robot = load_robot(FLOATER)
    assert robot.base is not None and robot.base.name == "trunk"
    assert robot.state_joints.names == ("tail",)  # the free joint is not a JointState joint
    assert robot.imu is not None and robot.imu.name == "imu"  # the site of the model's IMU sensors
    assert [site.name for site in robot.further_imus] == ["tail_imu"]  # a gyro only: read as a full IMU
    _, values = settle(robot)
    assert values["base/position_z"] == pytest.approx(0.05, abs=2e-3)  # resting on its 5 cm half-height
    assert values["base/orientation_w"] == pytest.approx(1.0, abs=1e-6)
    assert abs(values["base/linear_velocity_z"]) < 1e-3
    # An accelerometer at rest reads gravity, upward; the gyro reads nothing.
    assert values["imu/linear_acceleration_z"] == pytest.approx(9.81, abs=1e-2)
    assert np.allclose([values[f"imu/angular_velocity_{a}"] for a in "xyz"], 0.0, atol=1e-6)
    # The tail holds level: its IMU reads gravity too.
    assert values["tail_imu/imu/linear_acceleration_z"] == pytest.approx(9.81, abs=0.1)
    assert values["tail_imu/imu/orientation_w"] == pytest.approx(1.0, abs=1e-2)


def test_base_twist_is_in_the_body_frame():
    """Yawed 90 degrees and pushed along world x: the body sees the velocity along its -y."""
    robot = load_robot(FLOATER)
    backend = CpuBackend(robot, 1, 0.02, threads=1)
    qpos = backend.read("qpos", np.arange(7))
    qpos[0, 3:7] = [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]
    backend._batch.bind("qpos")[0, :7] = qpos[0]
    backend.add_joint_velocities(np.array([0]), np.array([0]), np.array([[1.0]]))
    values = dict(zip(SensorLayout.of(robot).fields, SensorLayout.of(robot).read(backend)[0], strict=True))
    assert values["base/linear_velocity_y"] == pytest.approx(-1.0, abs=1e-9)
    assert values["base/linear_velocity_x"] == pytest.approx(0.0, abs=1e-9)


def test_a_force_torque_site_reads_the_load_it_carries():
    robot = load_robot(GRIPPER_ARM)
    assert [site.name for site in robot.wrenches] == ["ft"]
    _, values = settle(robot, 100)
    force = np.array([values[f"ft/force_{a}"] for a in "xyz"])
    # The hand and fingers (0.4 kg) hang on the sensor: |F| is their weight.
    assert np.linalg.norm(force) == pytest.approx(0.4 * 9.81, rel=0.02)


def test_every_joint_and_actuator_is_found():
    robot = load_robot(GRIPPER_ARM)
    assert robot.joint_names == ("shoulder", "elbow")
    assert robot.state_joints.names == ("shoulder", "elbow", "left_finger", "right_finger")
    assert robot.extra.names == ("gripper",) and robot.passive_joints == ("left_finger", "right_finger")
    one_joint = load_robot(GRIPPER_ARM, joint_names=["elbow"])
    assert one_joint.joint_names == ("elbow",) and one_joint.extra.names == ("shoulder", "gripper")


def trajectory(names, positions, seconds: float = 0.5) -> bytes:
    point = JointTrajectoryPoint(positions=[float(p) for p in positions])
    point.time_from_start.sec, point.time_from_start.nanosec = int(seconds), round(seconds % 1 * 1e9)
    return serialize_message(JointTrajectory(joint_names=list(names), points=[point]))


def test_the_gripper_opens_and_closes_by_its_actuator_name():
    sim = Simulator(SimulatorConfig(model=GRIPPER_ARM, num_envs=1, task="none"))
    fingers = [2, 3]  # among joint_states' joints

    def finger_opening() -> np.ndarray:
        return decode_joint_state(sim.joint_states()[0]).position[fingers]

    for command, opening in ((255.0, 0.03), (0.0, 0.0)):
        sim.apply_world_command(0, trajectory(["shoulder", "elbow", "gripper"], [0.0, 0.5, command]))
        for _ in range(75):
            sim.step()
        np.testing.assert_allclose(finger_opening(), opening, atol=2e-3)
    # The arm's joints alone are a whole goal: the gripper is commanded only when named.
    sim.apply_world_command(0, trajectory(["shoulder", "elbow"], [0.2, 0.4]))
    assert sim.followers[0].active


def test_a_passive_joint_in_a_command_is_refused_with_the_reason():
    sim = Simulator(SimulatorConfig(model=GRIPPER_ARM, num_envs=1, task="none"))
    with pytest.raises(
        CommandError, match=r"joint 'left_finger' is passive: .*commandable besides .*: gripper"
    ):
        sim.apply_world_command(0, trajectory(["shoulder", "elbow", "left_finger"], [0.0, 0.5, 0.01]))
    assert not sim.followers[0].active


def test_joint_states_list_every_joint_and_batch_sensors_every_world():
    sim = Simulator(SimulatorConfig(model=FLOATER, num_envs=3, mirror_envs=[1], task="none"))
    sim.step()
    assert decode_joint_state(sim.joint_states()[0]).names == ("tail",)
    labels, rows = decode_multi_array(sim.batch_sensors(sim.sensor_rows()), np.float32)
    assert labels[1].split(",")[0] == "base/position_x" and labels[1].endswith(",step")
    assert rows.shape == (3, len(SensorLayout.of(sim.robot).fields) + 1) and set(rows[:, -1]) == {1.0}


def test_home_from_a_named_keyframe_and_bad_names_fail_naming_the_key():
    ready = load_robot(GRIPPER_ARM, home="ready")
    np.testing.assert_allclose(ready.home, [-0.3, 1.0])
    assert ready.home_qpos[2] == 0.03 and ready.home_ctrl[2] == 255.0  # the fingers and gripper too
    cases = [
        (dict(home="stow"), r"home: no keyframe 'stow' \(keyframes: home, ready\)"),
        (dict(imu_site="nowhere"), r"imu_site: the model has no site 'nowhere'"),
        (dict(imu_site="tcp"), r"imu_site: site 'tcp' has no gyro or accelerometer sensor"),
        (dict(joint_names=["wrist"]), r"joint_names: 'wrist' is not a joint an actuator drives"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ModelError, match=message):
            load_robot(GRIPPER_ARM, **kwargs)


def test_reach_takes_its_site_and_goal_box_from_the_settings():
    robot = load_robot(GRIPPER_ARM)
    task = make_task(
        "reach", robot, {"ee_site": "tcp", "goal_low": [0.3, -0.1, 0.2], "goal_high": [0.5, 0.1, 0.4]}
    )
    _, goals = task.sample_initial(np.random.default_rng(0), 100)
    assert np.all(goals >= [0.3, -0.1, 0.2]) and np.all(goals <= [0.5, 0.1, 0.4])
    with pytest.raises(
        ConfigError, match=r"tasks\.reach\.ee_site: model 'gripper_arm' has no site named 'ee'"
    ):
        make_task("reach", robot, {})
    with pytest.raises(ConfigError, match=r"tasks\.reach\.goal_high: unknown key|tasks\.reach\.goal_hi"):
        make_task("reach", robot, {"ee_site": "tcp", "goal_hi": [1, 1, 1]})


def test_relative_model_paths_are_found_on_the_search_path(monkeypatch, tmp_path):
    monkeypatch.setenv("SIM_BRIDGE_MODEL_PATH", f"{tmp_path}:{MODELS.parent}")
    assert load_robot("models/gripper_arm.xml").joint_names == ("shoulder", "elbow")
    with pytest.raises(
        ModelError, match=r"model file not found: robots/none\.xml \(nor under SIM_BRIDGE_MODEL_PATH"
    ):
        load_robot("robots/none.xml")


def test_package_uris_resolve_through_the_ament_index_urdf_meshes_too(monkeypatch, tmp_path):
    """A URDF in a package whose mesh is named package://...: both resolve through the ament index."""
    share = tmp_path / "prefix" / "share"
    (share / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (share / "ament_index" / "resource_index" / "packages" / "toy_robot").touch()
    (share / "toy_robot" / "meshes").mkdir(parents=True)
    cube = "\n".join(f"v {x} {y} {z}" for x in (-0.05, 0.05) for y in (-0.05, 0.05) for z in (-0.05, 0.05))
    faces = "f 1 3 4 2\nf 5 6 8 7\nf 1 2 6 5\nf 3 7 8 4\nf 1 5 7 3\nf 2 4 8 6"
    (share / "toy_robot" / "meshes" / "link.obj").write_text(f"{cube}\n{faces}\n")
    inertia = '<inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/>'
    (share / "toy_robot" / "toy.urdf").write_text(
        f"""<robot name="toy">
          <link name="base"><inertial><mass value="1"/>{inertia}</inertial></link>
          <link name="l1"><inertial><mass value="1"/>{inertia}</inertial>
            <visual><geometry><mesh filename="package://toy_robot/meshes/link.obj"/></geometry></visual>
            <collision><geometry><mesh filename="package://toy_robot/meshes/link.obj"/></geometry></collision>
          </link>
          <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/><axis xyz="0 1 0"/>
            <limit lower="-1" upper="1" effort="10" velocity="2"/></joint>
        </robot>"""
    )
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "prefix"))
    robot = load_robot("package://toy_robot/toy.urdf")
    assert robot.joint_names == ("j1",) and robot.model.nmesh == 1 and robot.velocity_limits[0] == 2.0
    with pytest.raises(ModelError, match=r"no package 'elsewhere' in the ament index"):
        load_robot("package://elsewhere/toy.urdf")


def test_a_robot_config_adds_the_sites_a_model_lacks():
    robot = load_robot(GRIPPER_ARM, sites={"tip": {"body": "hand", "pos": [0.1, 0.0, 0.0]}})
    task = make_task("reach", robot, {"ee_site": "tip"})
    tcp = make_task("reach", robot, {"ee_site": "tcp"})  # 0.08 m out, the model's own
    home = robot.home[None]
    np.testing.assert_allclose(
        task.kinematics(home) - tcp.kinematics(home),
        [[0.02 * np.cos(0.5), 0, -0.02 * np.sin(0.5)]],
        atol=1e-9,
    )
    for sites, message in (
        ({"tip": {"body": "palm"}}, r"sites\.tip\.body: the model has no body 'palm'"),
        ({"tcp": {"body": "hand"}}, r"sites\.tcp: the model has a site of that name already"),
        ({"tip": {"body": "hand", "pos": [1, 2]}}, r"sites\.tip\.pos: must be \[x, y, z\]"),
    ):
        with pytest.raises(ModelError, match=message):
            load_robot(GRIPPER_ARM, sites=sites)
