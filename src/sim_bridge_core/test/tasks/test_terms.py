"""Tasks declared once from named terms: the contract's observation layout is where the observation's
values lie, reward weights come from a robot file, and the weighted terms sum to the reward."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml
from sim_bridge_core.bringup.description import check_robot_tasks
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.contract import PolicyContract
from sim_bridge_core.deploy.deployment import safety_filter
from sim_bridge_core.envs.batched import BatchedEnv, StepResult
from sim_bridge_core.models import load_robot, load_robot_config
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.tasks import TASKS, ControlHistory, Task, make_task

QUADRUPED = str(Path(__file__).resolve().parents[1] / "models" / "quadruped.xml")
CONFIG = Path(__file__).resolve().parents[4] / "config"
LOCOMOTION = {"feet": ["fl_foot", "fr_foot", "rl_foot", "rr_foot"], "nominal_height": 0.21}
CONTROL_DT = 0.02
# Every registered task on a model it fits, with the settings it needs.
CASES = {
    "none": ("arm7", {}),
    "reach": ("arm7", {}),
    "pendulum": ("pendulum", {}),
    "locomotion": (QUADRUPED, LOCOMOTION),
}


def build(name: str, settings: dict | None = None) -> Task:
    model, defaults = CASES[name]
    robot = load_robot(model, home="home") if model == QUADRUPED else load_robot(model)
    return make_task(name, robot, {**defaults, **(settings or {})})


def env_for(task: Task, num_envs: int = 4) -> BatchedEnv:
    return BatchedEnv(CpuBackend(task.robot, num_envs, CONTROL_DT), task, episode_length_s=1.0, seed=2)


def test_every_registered_task_is_covered():
    assert set(CASES) == set(TASKS)


def expected_terms(task: Task, positions, velocities, inputs, imu, history) -> dict[str, np.ndarray]:
    """What each named term means, worked out here from the sources rather than by the task."""
    robot = task.robot
    turn = 2 * np.arctan2(imu[:, 0], imu[:, 3])  # the IMU turned about its x axis by this much
    expected = {
        "joint_position_minus_home": positions - robot.home,
        "joint_velocity": velocities,
        **{name: inputs[:, [i]] for i, name in enumerate(task.input_names)},
        "imu_gravity": np.column_stack([0 * turn, -np.sin(turn), -np.cos(turn)]),
        "imu_angular_velocity": imu[:, 4:7],
        "previous_action": (history.previous_targets - robot.home) / task.action_scale,
    }
    if task.name == "locomotion":
        phase = 2 * np.pi * task.settings.gait_frequency_hz * history.elapsed_s
        expected["gait_clock"] = np.stack([np.sin(phase), np.cos(phase)], axis=1)
    if task.name == "reach":
        data = mujoco.MjData(robot.model)
        ee = []
        for row in positions:
            data.qpos[robot.qpos_adr] = row
            mujoco.mj_kinematics(robot.model, data)
            ee.append(data.site_xpos[task.ee_site].copy())
        expected["end_effector_position"] = np.array(ee)
        expected["goal_minus_end_effector"] = inputs - np.array(ee)
    return expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_contracts_layout_is_where_the_observation_puts_each_term(name):
    """Sources whose every value is distinct: each term found at its contract offset holds what its
    name says, so the published layout and the concatenation cannot drift apart."""
    task = build(name)
    robot, n, joints = task.robot, 3, task.robot.num_joints
    positions = robot.clamp(robot.home + 0.01 * np.arange(1, n * joints + 1).reshape(n, joints))
    velocities = 10.0 + np.arange(n * joints).reshape(n, joints)
    inputs = 0.4 + 0.01 * np.arange(n * len(task.input_names)).reshape(n, len(task.input_names))
    angle = np.array([0.1, 0.2, 0.3])  # the IMU turned about its x axis: orientation x, y, z, w first
    imu = np.column_stack(
        [np.sin(angle / 2), 0 * angle, 0 * angle, np.cos(angle / 2), 100.0 + np.arange(6 * n).reshape(n, 6)]
    )
    history = ControlHistory(
        robot.home + 0.02 * np.arange(n * joints).reshape(n, joints), np.array([0.1, 0.3, 0.7])
    )

    observation = task.observation(positions, velocities, inputs, imu=imu, history=history)
    contract = PolicyContract.describe(task, safety_filter(robot, CONTROL_DT), CONTROL_DT, "position")

    assert contract.observation == task.observation_terms
    assert (
        observation.shape == (n, task.observation_size) == (n, sum(size for _, size in contract.observation))
    )
    assert len({term for term, _ in contract.observation}) == len(contract.observation)
    expected = expected_terms(task, positions, velocities, inputs, imu, history)
    offset = 0
    for term, size in contract.observation:
        np.testing.assert_allclose(
            observation[:, offset : offset + size], expected[term], atol=1e-5, err_msg=term
        )
        offset += size


def write_robot(tmp_path: Path, name: str, task_settings: dict) -> Path:
    model, defaults = CASES[name]
    robot = {"model": model, "tasks": {name: {**defaults, **task_settings}}}
    if model == QUADRUPED:
        robot["home"] = "home"
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(robot))
    return path


def task_from_robot_file(path: Path, name: str) -> Task:
    """The task as a job builds it: the robot file read and checked, then its ``tasks.<name>``."""
    config, _, model = load_robot_config(str(path), CONFIG, check_robot_tasks)
    return make_task(name, model, config.tasks[name])


def test_reward_weights_from_the_robot_file_change_the_reward(tmp_path):
    tuned = task_from_robot_file(
        write_robot(tmp_path, "reach", {"reward_weights": {"goal_distance": -2.0, "goal_bonus": 0.0}}),
        "reach",
    )
    assert tuned.reward_weights == {"goal_distance": -2.0, "goal_bonus": 0.0}
    default, changed = env_for(build("reach")), env_for(tuned)
    rng = np.random.default_rng(0)
    for _ in range(5):
        targets = default.task.action_to_targets(rng.uniform(-1, 1, (4, default.task.robot.num_joints)))
        before, after = default.step(targets), changed.step(targets)
    distance = -before.reward_terms["goal_distance"]
    np.testing.assert_allclose(after.reward, -2.0 * distance)
    np.testing.assert_allclose(before.reward, -distance + np.exp(-distance / 0.02))  # the defaults' reward
    assert not np.allclose(after.reward, before.reward)


@pytest.mark.parametrize(
    ("name", "weights", "message"),
    [
        (
            "reach",
            {"goal_bonus": 1.0, "bogus": 1.0},
            r"tasks\.reach\.reward_weights\.bogus: unknown reward term",
        ),
        ("locomotion", {"speed": -1.0}, r"tasks\.locomotion\.reward_weights\.speed: unknown reward term"),
        (
            "pendulum",
            {"joint_speed": "fast"},
            r"tasks\.pendulum\.reward_weights\.joint_speed: must be a finite",
        ),
        ("none", {"pose": 1.0}, r"tasks\.none\.reward_weights\.pose: unknown reward term \(known: none\)"),
    ],
)
def test_a_bad_reward_weight_is_refused_naming_the_key(tmp_path, name, weights, message):
    path = write_robot(tmp_path, name, {"reward_weights": weights})
    with pytest.raises(ConfigError, match=message) as error:
        load_robot_config(str(path), CONFIG, check_robot_tasks)
    assert "\n" not in str(error.value) and str(error.value).startswith("robot.yaml: ")


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_weighted_terms_sum_to_the_reward(name):
    task = build(name)
    env = env_for(task)
    rng = np.random.default_rng(1)
    for _ in range(30):
        step = env.step(task.action_to_targets(rng.uniform(-1, 1, (4, task.robot.num_joints))))
        assert set(step.reward_terms) == set(task.default_reward_weights) | (
            {"clip_at_zero"} if name == "locomotion" else set()
        )
        total = sum(step.reward_terms.values(), np.zeros(4))
        np.testing.assert_allclose(total, step.reward, rtol=1e-12, atol=1e-12)


def test_what_the_clip_at_zero_adds_is_a_term_of_its_own():
    """Penalties alone: the locomotion reward is clipped to zero, and the clip term makes up the sum."""
    penalties_only = {"track_linear": 0.0, "track_yaw": 0.0, "feet_air_time": 0.0, "gait": 0.0}
    env = env_for(build("locomotion", {"reward_weights": penalties_only}))
    for _ in range(5):
        step = env.step(env.task.action_to_targets(np.ones((4, env.task.robot.num_joints))))
    clip = step.reward_terms.pop("clip_at_zero")
    np.testing.assert_array_equal(step.reward, 0.0)
    assert (clip > 0.0).all()
    np.testing.assert_allclose(clip, -sum(step.reward_terms.values()))


def test_a_step_result_without_terms_has_none():
    """Worlds that do not report the reward's terms (the simulator's topics) give an empty dict."""
    result = StepResult(
        reward=np.zeros(2),
        terminated=np.zeros(2, bool),
        truncated=np.zeros(2, bool),
        success=np.zeros(2, bool),
        final_observations=np.zeros((0, 3), np.float32),
    )
    assert result.reward_terms == {}
