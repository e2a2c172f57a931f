"""Locomotion on a small test quadruped: success, falls, the observation in training and deployment,
the robot-config settings, solver options and the task's own bringup defaults."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml
from sim_bridge_core.bringup.description import describe
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.deployment import Deployment, DeploySettings, StateError, safety_filter
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.models import ModelError, load_robot, parse_model_parameters
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.simulator.core import CommandError, Simulator, SimulatorConfig
from sim_bridge_core.tasks import LocomotionTask, make_task

MODEL = str(Path(__file__).resolve().parents[1] / "models" / "quadruped.xml")
CONFIG = Path(__file__).resolve().parents[4] / "config"
FEET = ["fl_foot", "fr_foot", "rl_foot", "rr_foot"]
SETTINGS = {"feet": FEET, "nominal_height": 0.21}
ROBOT = load_robot(MODEL, home="home")
CONTROL_DT = 0.02


def locomotion_env(num_envs: int, episode_length_s: float = 2.0, settings: dict | None = None) -> BatchedEnv:
    task = make_task("locomotion", ROBOT, settings or SETTINGS)
    return BatchedEnv(CpuBackend(ROBOT, num_envs, CONTROL_DT), task, episode_length_s, seed=1)


def stand(env: BatchedEnv):
    """One control period commanding the default pose (action zero) in every world."""
    return env.step(np.tile(ROBOT.home, (env.num_envs, 1)))


def test_standing_succeeds_when_asked_to_stand_and_fails_when_asked_to_walk():
    env = locomotion_env(2)
    env.inputs[:] = [[0.0, 0.0, 0.0], [0.6, 0.0, 0.0]]
    rewards = []
    for _ in range(env.episode_steps - 1):
        step = stand(env)
        rewards.append(step.reward)
        assert not step.done.any()
    last = stand(env)
    assert last.truncated.all() and not last.terminated.any()
    assert last.success.tolist() == [True, False]  # 0.6 m/s asked, 0 m/s done: error 0.6 > 0.25
    rewards = np.array(rewards)
    assert (rewards >= 0.0).all()
    assert rewards[:, 0].mean() > rewards[:, 1].mean() + 0.5  # tracking pays only the one standing


def test_a_fall_ends_the_episode_without_success_and_the_next_one_starts_upright():
    env = locomotion_env(2, episode_length_s=5.0)
    env.inputs[:] = 0.0
    base = ROBOT.base.dof_adr
    env.backend.add_joint_velocities(np.array([1]), np.array([base + 3]), np.array([[40.0]]))  # roll
    for _ in range(50):
        step = stand(env)
        if step.terminated[1]:
            break
    assert step.terminated[1] and not step.success[1]
    assert not step.terminated[0]
    assert env.episode_step[1] == 0
    gravity = env.observation()[1, :3]
    np.testing.assert_allclose(gravity, [0.0, 0.0, -1.0], atol=0.05)


def test_the_observation_holds_the_imu_command_and_previous_action():
    env = locomotion_env(1)
    task = env.task
    names = [name for name, _ in task.observation_terms]
    assert names == [
        "imu_gravity",
        "imu_angular_velocity",
        "joint_position_minus_home",
        "joint_velocity",
        "cmd_linear_x",
        "cmd_linear_y",
        "cmd_angular_z",
        "previous_action",
        "gait_clock",
    ]
    env.inputs[:] = [[0.3, -0.1, 0.2]]
    action = np.linspace(-0.5, 0.5, ROBOT.num_joints)[None]
    env.step(task.action_to_targets(action))
    observation = env.observation()[0]
    assert observation.shape == (task.observation_size,)
    np.testing.assert_allclose(observation[:3], [0.0, 0.0, -1.0], atol=0.1)
    np.testing.assert_allclose(observation[6 + 2 * 8 : 9 + 2 * 8], [0.3, -0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(observation[-10:-2], action[0], atol=1e-6)
    phase = 2 * np.pi * 2.0 * CONTROL_DT  # one period into the episode of a 2 Hz gait clock
    np.testing.assert_allclose(observation[-2:], [np.sin(phase), np.cos(phase)], atol=1e-6)


def test_deployment_observes_exactly_what_training_observed():
    """The deployed policy, fed the world's joint states, IMU and command as ROS messages carry
    them, sees the very observation the env gave the policy in training."""
    env = locomotion_env(1)
    env.inputs[:] = [[0.4, 0.1, -0.3]]
    rng = np.random.default_rng(0)
    for _ in range(10):
        env.step(env.task.action_to_targets(rng.uniform(-1, 1, (1, ROBOT.num_joints))))
    seen = []

    def policy(observation: np.ndarray) -> np.ndarray:
        seen.append(observation)
        return np.zeros((1, ROBOT.num_joints))

    safety = safety_filter(ROBOT, CONTROL_DT, velocity_limits=[20.0])
    deployment = Deployment(
        ROBOT, make_task("locomotion", ROBOT, SETTINGS), policy, safety, DeploySettings(CONTROL_DT, 1.0)
    )
    deployment.previous_targets = env.previous_targets[0].copy()
    # The policy's clock: it began commanding when the episode did, that long before this state.
    deployment.clock_start = -env.episode_step[0] * CONTROL_DT
    deployment.on_joint_state(
        0.0, 0.0, ROBOT.joint_names, env.measured_positions()[0], env.measured_velocities()[0]
    )
    assert deployment.tick(0.0) == (None, "no imu received yet")
    imu = env.measured_sensors()[0, env.sensors.blocks["imu"]]
    deployment.on_imu(0.0, 0.0, imu[:4], imu[4:7], imu[7:10])
    deployment.on_goal([0.4, 0.1, -0.3], 0.0)
    command, reason = deployment.tick(0.0)
    assert command is not None and reason == ""
    np.testing.assert_allclose(seen[0], env.observation(), rtol=1e-6, atol=1e-6)


def test_deployment_refuses_a_bad_imu_and_holds_when_it_goes_stale():
    safety = safety_filter(ROBOT, CONTROL_DT, velocity_limits=[20.0])
    task = make_task("locomotion", ROBOT, SETTINGS)
    policy = lambda observation: np.zeros((1, ROBOT.num_joints))  # noqa: E731
    deployment = Deployment(ROBOT, task, policy, safety, DeploySettings(CONTROL_DT, 0.1))
    deployment.on_joint_state(0.0, 0.0, ROBOT.joint_names, ROBOT.home, np.zeros(8))
    with pytest.raises(StateError, match="unit quaternion"):
        deployment.on_imu(0.0, 0.0, [0, 0, 0, 0], [0, 0, 0], [0, 0, 9.81])
    with pytest.raises(StateError, match="NaN"):
        deployment.on_imu(0.0, 0.0, [0, 0, 0, 1], [np.nan, 0, 0], [0, 0, 9.81])
    assert deployment.imu is None
    deployment.on_imu(0.0, 0.0, [0, 0, 0, 1], [0, 0, 0], [0, 0, 9.81])
    deployment.on_goal([0.2, 0.0, 0.0], 0.0)
    assert deployment.tick(0.0)[0] is not None
    deployment.on_joint_state(0.5, 0.0, ROBOT.joint_names, ROBOT.home, np.zeros(8))  # IMU now 0.5 s old
    command, reason = deployment.tick(0.5)
    assert command.hold and reason.startswith("imu older than")


def test_a_state_waits_for_the_imu_reading_of_its_instant():
    safety = safety_filter(ROBOT, CONTROL_DT, velocity_limits=[20.0])
    task = make_task("locomotion", ROBOT, SETTINGS)
    deployment = Deployment(ROBOT, task, lambda o: np.zeros((1, 8)), safety, DeploySettings(CONTROL_DT, 1.0))
    deployment.on_joint_state(1.0, 1.0, ROBOT.joint_names, ROBOT.home, np.zeros(8))
    deployment.on_imu(1.0, 1.0 - CONTROL_DT, [0, 0, 0, 1], [0, 0, 0], [0, 0, 9.81])  # a period old
    assert not deployment.due and deployment.idle_reason() == ""  # its reading is on its way
    deployment.on_imu(1.0, 1.0, [0, 0, 0, 1], [0, 0, 0], [0, 0, 9.81])
    assert deployment.due


def standing_policy() -> tuple[list[np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """A policy that always answers home, and the observations it saw."""
    seen: list[np.ndarray] = []

    def policy(observation: np.ndarray) -> np.ndarray:
        seen.append(observation[0])
        return np.zeros((1, ROBOT.num_joints))

    return seen, policy


def test_fast_drivers_are_paired_by_stamp_and_answered_every_period():
    """joint_states at 1 kHz and an IMU at 250 Hz whose readings arrive 32 ms late (a loaded
    queue): every period the policy answers the newest state that has an IMU reading of its
    instant, so commands keep the control rate instead of waiting for exact matches."""
    safety = safety_filter(ROBOT, CONTROL_DT, velocity_limits=[20.0])
    task = make_task("locomotion", ROBOT, SETTINGS)
    seen, policy = standing_policy()

    deployment = Deployment(ROBOT, task, policy, safety, DeploySettings(CONTROL_DT, 1.0))
    commands, lags = 0, []
    for k in range(1, 1001):  # one second
        t = k * 1e-3
        deployment.on_goal([0.4, 0.0, 0.0], t)
        # The joint velocities carry the state's stamp, so the observation tells which state it saw.
        deployment.on_joint_state(t, t, ROBOT.joint_names, ROBOT.home, np.full(8, t))
        late = t - 0.032
        if k % 4 == 0 and late > 0:
            deployment.on_imu(t, late, [0, 0, 0, 1], [0, 0, 0], [0, 0, 9.81])
        if deployment.due:
            command, reason = deployment.tick(t)
            assert command is not None and reason == ""
            commands += 1
            lags.append(t - seen[-1][8 + 6])  # how old the answered state was
    assert commands >= 48  # 50 periods in the second, less the first 32 ms without an IMU reading
    assert max(lags) == pytest.approx(0.032, abs=1.5e-3)


def test_an_imu_on_another_clock_is_said_not_waited_on_in_silence():
    safety = safety_filter(ROBOT, CONTROL_DT, velocity_limits=[20.0])
    task = make_task("locomotion", ROBOT, SETTINGS)
    deployment = Deployment(ROBOT, task, lambda o: np.zeros((1, 8)), safety, DeploySettings(CONTROL_DT, 10.0))
    for k in range(1, 30):
        t = 100.0 + k * CONTROL_DT
        deployment.on_joint_state(t, t, ROBOT.joint_names, ROBOT.home, np.zeros(8))
        deployment.on_imu(t, t - 3.0, [0, 0, 0, 1], [0, 0, 0], [0, 0, 9.81])  # 3 s behind
        assert not deployment.due
    assert deployment.idle_reason().startswith("no command for 10+ periods: the latest imu is 3000 ms older")


def test_the_deployed_clock_keeps_time_and_starts_again_when_re_enabled():
    """The gait clock is the state's time since the policy began commanding, so a missed state
    does not put it behind the robot; enabling after a hold starts afresh, as an episode does."""
    safety = safety_filter(ROBOT, CONTROL_DT, velocity_limits=[20.0])
    seen = []

    def policy(observation: np.ndarray) -> np.ndarray:
        seen.append(observation[0])
        return np.full((1, 8), 0.5)

    deployment = Deployment(
        ROBOT, make_task("locomotion", ROBOT, SETTINGS), policy, safety, DeploySettings(CONTROL_DT, 1.0)
    )
    deployment.on_goal([0.4, 0.0, 0.0], 0.0)

    def command_at(t: float) -> None:
        deployment.on_goal([0.4, 0.0, 0.0], t)
        deployment.on_joint_state(t, t, ROBOT.joint_names, ROBOT.home, np.zeros(8))
        deployment.on_imu(t, t, [0, 0, 0, 1], [0, 0, 0], [0, 0, 9.81])
        assert deployment.due and deployment.tick(t)[1] == ""

    def clock() -> float:
        return float(np.arctan2(seen[-1][-2], seen[-1][-1]) / (2 * np.pi * 2.0))  # seconds, 2 Hz gait

    for t in (10.0, 10.02, 10.06):  # the state of 10.04 never came
        command_at(t)
    assert clock() == pytest.approx(0.06)
    np.testing.assert_allclose(seen[-1][-10:-2], 0.5)  # the previous action
    deployment.set_enabled(False)
    deployment.set_enabled(True)
    command_at(11.0)
    assert clock() == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(seen[-1][-10:-2], 0.0)  # home again


def test_velocity_commands_are_clamped_to_what_was_trained():
    task = make_task("locomotion", ROBOT, SETTINGS)
    np.testing.assert_allclose(task.inputs_from_goal(np.array([5.0, -5.0, 0.1])), [0.8, -0.3, 0.1])
    forward_only = make_task("locomotion", ROBOT, {**SETTINGS, "command_low": [0.2, 0.0, 0.0]})
    np.testing.assert_allclose(forward_only.inputs_from_goal(np.array([0.1, 0.0, 0.0])), [0.2, 0.0, 0.0])
    np.testing.assert_allclose(forward_only.inputs_from_goal(np.zeros(3)), 0.0)  # stand: trained too


def test_feet_that_step_to_the_gait_clock_earn_the_gait_reward():
    """Standing when asked to walk keeps two of four feet off their schedule; asked to stand, all
    four are on it."""
    only_gait = {name: float(name == "gait") for name in LocomotionTask.default_reward_weights}
    env = locomotion_env(2, settings={**SETTINGS, "reward_weights": only_gait})
    env.inputs[:] = [[0.0, 0.0, 0.0], [0.6, 0.0, 0.0]]
    rewards = np.array([stand(env).reward for _ in range(20)])
    np.testing.assert_allclose(rewards[5:, 0], 1.0)
    np.testing.assert_allclose(rewards[5:, 1], 0.5)


def test_tracking_sigma_sets_the_width_of_the_tracking_reward():
    """The same worlds asked for 0.6 m/s forward while standing, rewarded with two widths: every
    step, sigma * -log(reward) is the same squared velocity error (near 0.36 once settled)."""
    only_tracking = {name: float(name == "track_linear") for name in LocomotionTask.default_reward_weights}
    rewards = {}
    for sigma in (0.25, 0.1):
        env = locomotion_env(
            1, settings={**SETTINGS, "reward_weights": only_tracking, "tracking_sigma": sigma}
        )
        env.inputs[:] = [[0.6, 0.0, 0.0]]
        rewards[sigma] = np.array([stand(env).reward[0] for _ in range(20)])
    squared_errors = [-sigma * np.log(r) for sigma, r in rewards.items()]
    np.testing.assert_allclose(squared_errors[0], squared_errors[1], rtol=1e-6)
    np.testing.assert_allclose(squared_errors[0][10:], 0.36, rtol=0.15)  # once it has settled


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"feet": []}, "tasks.locomotion.feet"),
        ({"feet": ["fl_foot", "paw"]}, "tasks.locomotion.feet"),
        ({**SETTINGS, "command_low": [1.0, 0.0, 0.0]}, "tasks.locomotion.command_low"),
        ({**SETTINGS, "gait_offsets": [0.0, 0.5]}, "tasks.locomotion.gait_offsets"),
    ],
)
def test_bad_locomotion_settings_name_the_key(settings, key):
    with pytest.raises(ConfigError, match=key):
        make_task("locomotion", ROBOT, settings)


def test_locomotion_needs_a_floating_base():
    with pytest.raises(ModelError, match="floating base"):
        make_task("locomotion", load_robot("arm7"), SETTINGS)


def test_the_simulator_takes_a_velocity_command_as_a_worlds_task_input():
    config = SimulatorConfig(
        model=MODEL,
        home="home",
        num_envs=2,
        task="locomotion",
        task_settings=yaml.safe_dump(SETTINGS),
        control_dt=CONTROL_DT,
    )
    sim = Simulator(config)
    before = sim.env.inputs.copy()
    sim.set_task_inputs(1, [0.5, 9.0, 0.0])
    np.testing.assert_allclose(sim.env.inputs[1], [0.5, 0.3, 0.0])
    np.testing.assert_allclose(sim.env.inputs[0], before[0])
    with pytest.raises(CommandError, match="NaN"):
        sim.set_task_inputs(0, [np.nan, 0.0, 0.0])
    np.testing.assert_allclose(sim.env.inputs[0], before[0])


def test_solver_options_come_from_the_robot_config():
    parameters = parse_model_parameters({"options": {"timestep": 0.002, "cone": "elliptic", "iterations": 4}})
    robot = load_robot(MODEL, home="home", parameters=parameters)
    assert robot.physics_dt == 0.002
    assert robot.model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    assert robot.model.opt.iterations == 4
    assert parse_model_parameters(parameters.to_mapping()) == parameters
    for options, key in (
        ({"substeps": 2}, "model_parameters.options.substeps"),
        ({"cone": "round"}, "model_parameters.options.cone"),
        ({"timestep": 0.0}, "model_parameters.options.timestep"),
        ({"iterations": 1.5}, "model_parameters.options.iterations"),
    ):
        with pytest.raises(ConfigError, match=key):
            parse_model_parameters({"options": options})


def robot_file(tmp_path: Path) -> str:
    path = tmp_path / "quadruped.yaml"
    path.write_text(yaml.safe_dump({"model": MODEL, "home": "home", "tasks": {"locomotion": SETTINGS}}))
    return str(path)


def test_training_takes_the_tasks_own_defaults_and_the_command_line_wins(tmp_path):
    robot = robot_file(tmp_path)
    reach = describe("training", {}, CONFIG).arguments
    walk = describe("training", {"robot": robot, "task": "locomotion"}, CONFIG).arguments
    assert (walk.num_envs, walk.episode_length_s, walk.command_interface) == (1024, 10.0, "position")
    assert (reach.num_envs, reach.episode_length_s) != (walk.num_envs, walk.episode_length_s)
    given = describe("training", {"robot": robot, "task": "locomotion", "num_envs": 8}, CONFIG).arguments
    assert given.num_envs == 8
    # eval's default transport (ros) cannot carry the IMU: locomotion evaluates fused unless told.
    assert describe("eval", {}, CONFIG).arguments.transport == "ros"
    assert describe("eval", {"robot": robot, "task": "locomotion"}, CONFIG).arguments.transport == "fused"
    deploy = describe("eval", {"robot": robot, "task": "locomotion", "transport": "deploy"}, CONFIG)
    assert deploy.arguments.transport == "deploy"


def test_locomotion_over_the_ros_transport_is_refused_at_start(tmp_path):
    arguments = {"robot": robot_file(tmp_path), "task": "locomotion", "transport": "ros"}
    with pytest.raises(ConfigError, match="transport: task locomotion observes the IMU"):
        describe("training", arguments, CONFIG)


def test_a_velocity_command_expires_to_stand():
    """The teleop dies: past cmd_vel_timeout_s the policy is told to stand (zero), as twist_mux and
    diff_drive_controller do; before any command it stands too."""
    safety = safety_filter(ROBOT, CONTROL_DT, velocity_limits=[20.0])
    task = make_task("locomotion", ROBOT, SETTINGS)
    seen, policy = standing_policy()

    deployment = Deployment(
        ROBOT, task, policy, safety, DeploySettings(CONTROL_DT, 1.0, cmd_vel_timeout_s=0.5)
    )
    commands = slice(2 * 8 + 6, 2 * 8 + 9)  # the command's columns: after gravity, gyro, joints

    def tick_at(t: float) -> str:
        deployment.on_joint_state(t, t, ROBOT.joint_names, ROBOT.home, np.zeros(8))
        deployment.on_imu(t, t, [0, 0, 0, 1], [0, 0, 0], [0, 0, 9.81])
        command, notice = deployment.tick(t)
        assert command is not None
        return notice

    assert tick_at(0.0).startswith("cmd_vel: none received yet; standing")
    np.testing.assert_allclose(seen[-1][commands], 0.0)
    deployment.on_goal([0.4, 0.0, 0.3], 0.0)
    assert tick_at(0.4) == ""
    np.testing.assert_allclose(seen[-1][commands], [0.4, 0.0, 0.3], atol=1e-6)
    assert "older than 0.5 s; standing" in tick_at(0.6)
    np.testing.assert_allclose(seen[-1][commands], 0.0)
