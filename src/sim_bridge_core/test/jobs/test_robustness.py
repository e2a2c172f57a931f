"""The robustness sweep as its user runs it: ``bringup eval ... sweep:=...`` writes robustness.json and
robustness.png, its parameters move the physics (a reaching arm fails with a 200 ms command delay, a
standing quadruped falls under a payload or with weak motors), parameters a robot lacks are skipped
with a note, and a bad sweep file fails at start with one line naming the key.

The policies are real checkpoint files of controllers written down here instead of trained (a
linear network: training one that reaches would take minutes): the reach policy commands a
Jacobian step towards the goal every control period, the quadruped's stands at home.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sim_bridge_core.bringup.description import describe
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.policy import PolicyConfig
from sim_bridge_core.jobs.robustness import load_sweep, main, plan_sweep
from sim_bridge_core.jobs.training import evaluation_worlds, run_evaluation
from sim_bridge_core.learning import PpoConfig, save_checkpoint, training_metadata
from sim_bridge_core.learning.modules import ActorCritic
from sim_bridge_core.simulator.core import SimulatorConfig, simulated_robot

CONFIG = Path(__file__).resolve().parents[4] / "config"
QUADRUPED = str(Path(__file__).resolve().parents[1] / "models" / "quadruped.xml")
# Standing still is the command: a quadruped that keeps its base above half the nominal height,
# 0.17 m, succeeds (at home it stands at 0.21 m; a heavy load or weak motors sink it lower).
STAND = {"feet": ["fl_foot", "fr_foot", "rl_foot", "rr_foot"], "nominal_height": 0.34}
STAND.update(command_low=[0.0, 0.0, 0.0], command_high=[0.0, 0.0, 0.0])
# Goals around the arm's home hand position, where one Jacobian serves the whole box.
GOALS = {"goal_low": [0.27, -0.08, 0.52], "goal_high": [0.37, 0.08, 0.64]}
# A quick reach: 0.3 s (15 control periods) to bring the hand within 2 cm.
REACH = SimulatorConfig(task="reach", num_envs=32, episode_length_s=0.3, task_settings=yaml.safe_dump(GOALS))
WALK = SimulatorConfig(
    model=QUADRUPED,
    home="home",
    task="locomotion",
    num_envs=16,
    episode_length_s=2.0,
    command_interface="position",
    task_settings=yaml.safe_dump(STAND),
)


def linear_checkpoint(path: Path, sim: SimulatorConfig, weight: np.ndarray) -> Path:
    """A PPO checkpoint whose deterministic action is ``weight @ observation`` (no hidden layer,
    identity normalization)."""
    worlds = evaluation_worlds(sim, 1)
    model = ActorCritic(worlds.task.observation_size, worlds.task.robot.num_joints, [], [8])
    model.normalizer.var.fill_((1.0 - model.normalizer.epsilon) ** 2)  # (x - 0) / (0.99 + 0.01)
    with torch.no_grad():
        model.actor[-1].weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        model.actor[-1].bias.zero_()
    config = PpoConfig(actor_hidden=[], critic_hidden=[8])
    return save_checkpoint(path, model, config, training_metadata(worlds))


@pytest.fixture(scope="module")
def reach_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every period: target = joints + 1.2 * J+ (goal - hand), J the hand's Jacobian at home: it
    reaches within the 0.3 s an episode lasts here."""
    task = simulated_robot(REACH)[1]
    robot, kinematics = task.robot, task.kinematics
    step = 1e-5
    jacobian = np.stack(
        [
            (
                kinematics((robot.home + step * np.eye(robot.num_joints)[j])[None])
                - kinematics(robot.home[None])
            )[0]
            / step
            for j in range(robot.num_joints)
        ],
        axis=1,
    )
    inverse = jacobian.T @ np.linalg.inv(jacobian @ jacobian.T + 1e-4 * np.eye(3))
    columns = {name: size for name, size in task.observation_terms}
    offsets = np.cumsum([0, *columns.values()])
    start = dict(zip(columns, offsets[:-1], strict=True))
    weight = np.zeros((robot.num_joints, task.observation_size))
    position = start["joint_position_minus_home"]
    weight[:, position : position + robot.num_joints] = np.eye(robot.num_joints)
    error = start["goal_minus_end_effector"]
    weight[:, error : error + 3] = 1.2 * inverse
    path = tmp_path_factory.mktemp("reach") / "checkpoint.pt"
    return linear_checkpoint(path, REACH, weight / task.action_scale)


@pytest.fixture(scope="module")
def stand_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Zero actions: hold home. Trained, as its summary.json says, under a payload range of 0-1 kg."""
    folder = tmp_path_factory.mktemp("stand")
    spec = folder / "payload.yaml"
    spec.write_text(
        yaml.safe_dump({"body_mass": {"targets": ["trunk"], "operation": "add", "low": 0, "high": 1}})
    )
    (folder / "summary.json").write_text(json.dumps({"iterations": 1, "randomization": str(spec)}))
    task = simulated_robot(WALK)[1]
    return linear_checkpoint(
        folder / "checkpoint.pt", WALK, np.zeros((task.robot.num_joints, task.observation_size))
    )


def sweep_file(path: Path, parameters: dict) -> str:
    path.write_text(yaml.safe_dump({"sweep": {"episodes": 32, "parameters": parameters}}))
    return str(path)


def evaluate_with_sweep(checkpoint: Path, sim: SimulatorConfig, sweep: str, output_dir: Path) -> dict:
    policy = PolicyConfig(
        mode="eval", checkpoint=str(checkpoint), sweep=sweep, output_dir=str(output_dir), eval_episodes=16
    )
    summary = run_evaluation(policy, sim)
    assert summary == json.loads((output_dir / "summary.json").read_text())
    assert summary["robustness"] == str(output_dir / "robustness.json")
    png = Path(summary["robustness_plot"])
    assert png == output_dir / "robustness.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads(Path(summary["robustness"]).read_text())


def test_a_reaching_arm_fails_with_a_200_ms_command_delay(reach_checkpoint, tmp_path, capsys):
    sweep = sweep_file(
        tmp_path / "sweep.yaml",
        {
            "delay": {"randomization": "action_delay_steps", "unit": "control periods", "values": [0, 10]},
            "payload": {
                "randomization": "body_mass",
                "targets": ["@base"],
                "operation": "add",
                "values": [1],
            },
            "gyro": {"randomization": "imu_angular_velocity_noise", "spread": "symmetric", "values": [0.1]},
            "timestep": {"model_parameter": "options.timestep", "values": [0.002]},
        },
    )
    # The evaluation's own randomization, which no point may inherit: a 200 ms delay everywhere.
    late = tmp_path / "late.yaml"
    late.write_text(yaml.safe_dump({"action_delay_steps": {"low": 10, "high": 10}}))
    sim = dataclasses.replace(REACH, randomization=str(late))
    result = evaluate_with_sweep(reach_checkpoint, sim, sweep, tmp_path / "eval")
    assert (result["model"], result["task"], result["episodes_per_point"]) == ("arm7", "reach", 32)
    delay = result["parameters"]["delay"]
    assert delay["values"] == [0, 10] and delay["episodes"] == 32
    assert delay["success_rate"][0] >= 0.9  # 0 ms: reaches
    assert delay["success_rate"][1] <= 0.25  # 200 ms at 50 Hz: the hand is still on its way at the end
    # At its nominal value every parameter meets the same episodes, nothing else randomized.
    assert result["parameters"]["timestep"]["success_rate"] == delay["success_rate"][:1]
    # The training range: the evaluation's randomization (no training summary beside the checkpoint).
    assert delay["training_range"] == [10, 10] and delay["nominal"] == 0
    payload, gyro = result["parameters"]["payload"], result["parameters"]["gyro"]
    assert payload["skipped"] == "the robot has no floating base" and payload["success_rate"] == []
    assert gyro["skipped"] == "the robot has no IMU"
    out = capsys.readouterr().out
    assert "sweep: payload skipped: the robot has no floating base" in out
    assert "sweep 2/3: delay = 10.0 control periods: success" in out and "points/s" in out


def test_payload_and_weak_motors_fell_a_standing_quadruped(stand_checkpoint, tmp_path):
    sweep = sweep_file(
        tmp_path / "sweep.yaml",
        {
            "payload": {
                "randomization": "body_mass",
                "targets": ["@base"],
                "operation": "add",
                "values": [0, 40],
            },
            "strength": {"randomization": "actuator_strength", "values": [1.0, 0.05]},
            "hand": {"randomization": "body_mass", "targets": ["@end_effector"], "values": [1.0]},
            "timestep": {"model_parameter": "options.timestep", "values": [0.002, 0.004]},
        },
    )
    result = evaluate_with_sweep(stand_checkpoint, WALK, sweep, tmp_path / "eval")
    payload, strength = result["parameters"]["payload"], result["parameters"]["strength"]
    assert payload["success_rate"][0] >= 0.9 and payload["success_rate"][1] <= 0.1
    assert strength["success_rate"][0] >= 0.9 and strength["success_rate"][1] <= 0.1
    # The training range comes from the training run's summary beside the checkpoint.
    assert payload["training_range"] == [0, 1] and strength["training_range"] is None
    assert result["parameters"]["hand"]["skipped"] == "task locomotion has no end effector"
    timestep = result["parameters"]["timestep"]
    assert timestep["nominal"] == 0.004 and len(timestep["success_rate"]) == 2
    # Two sweeps side by side in one figure (here the same one twice).
    both = tmp_path / "both.png"
    sweep_json = str(tmp_path / "eval" / "robustness.json")
    assert main(["--out", str(both), f"a={sweep_json}", f"b={sweep_json}"]) == 0
    assert both.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_presets_fit_an_arm_and_a_quadruped():
    sweep = load_sweep(CONFIG / "sweeps" / "default.yaml")
    skipped = {}
    for sim in (REACH, WALK):
        plans = plan_sweep(sweep, sim, simulated_robot(sim)[1], None)
        skipped[sim.task] = {plan.parameter.name for plan in plans if plan.skipped}
    assert skipped == {
        "reach": {"friction", "payload_base", "imu_gyro_noise"},
        "locomotion": {"payload_end_effector"},
    }
    assert max(next(p for p in sweep.parameters if p.name == "command_delay").values) * 0.02 >= 0.2
    go1 = load_sweep(CONFIG / "sweeps" / "go1.yaml")
    assert not [
        plan.parameter.name for plan in plan_sweep(go1, WALK, simulated_robot(WALK)[1], None) if plan.skipped
    ]


def test_bringup_hands_the_preset_to_the_policy_node(tmp_path):
    policy = next(
        node for node in describe("eval", {"sweep": "default"}, CONFIG).nodes if node.name == "policy"
    )
    assert policy.parameters["sweep"] == str((CONFIG / "sweeps" / "default.yaml").resolve())


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"randomization": "geom_friction", "valus": [1.0]}, "sweep.parameters.bad.valus: unknown key"),
        ({"randomization": "geom_friction", "values": [-1.0]}, "sweep.parameters.bad.values: -1.0: "),
        (
            {"randomization": "geom_fiction", "values": [1.0]},
            "sweep.parameters.bad.randomization: must be one",
        ),
        ({"values": [1.0]}, "sweep.parameters.bad: give one of randomization (a term) or model_parameter"),
        ({"model_parameter": "options.cone", "values": ["round"]}, "sweep.parameters.bad.values: 'round': "),
        ({"randomization": "action_delay_steps", "values": [0.5]}, "sweep.parameters.bad.values: 0.5: "),
    ],
)
def test_a_bad_sweep_file_fails_at_start_naming_the_key(tmp_path, entry, message):
    path = sweep_file(tmp_path / "bad.yaml", {"bad": entry})
    with pytest.raises(ConfigError) as raised:
        describe("eval", {"sweep": path}, CONFIG)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_point_the_robot_cannot_take_fails_before_anything_runs(reach_checkpoint, tmp_path):
    sweep = sweep_file(
        tmp_path / "sweep.yaml",
        {"mass": {"randomization": "body_mass", "targets": ["no_such_link"], "values": [1]}},
    )
    with pytest.raises(
        ConfigError, match=r"^sweep\.parameters\.mass\.values: 1\.0: randomization\.body_mass"
    ):
        run_evaluation(
            PolicyConfig(
                mode="eval", checkpoint=str(reach_checkpoint), sweep=sweep, output_dir=str(tmp_path / "o")
            ),
            REACH,
        )
    assert not (tmp_path / "o" / "summary.json").exists()
    with pytest.raises(ConfigError, match=r"^sweep: 'nope' is neither a preset"):
        describe("eval", {"sweep": "nope"}, CONFIG)
