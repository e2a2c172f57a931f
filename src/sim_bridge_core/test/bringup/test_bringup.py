"""Config + arguments -> node descriptions: what launch files and the bringup runner both start."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from sim_bridge_core.bringup.description import JOBS, BringupArguments, describe, parse_overrides
from sim_bridge_core.config import ConfigError, setting_specs
from sim_bridge_core.models.parameters import CONES
from sim_bridge_core.simulator.core import Simulator, SimulatorConfig

CONFIG = Path(__file__).resolve().parents[4] / "config"


def nodes(job: str, **overrides) -> dict:
    return {node.name: node for node in describe(job, overrides, CONFIG).nodes}


@pytest.mark.parametrize("job", JOBS)
def test_every_shipped_config_describes_valid_nodes(job):
    described = describe(job, {"checkpoint": "runs/x/checkpoint.pt"}, CONFIG)
    assert described.nodes, job
    for node in described.nodes:
        assert (node.package, node.executable) in {
            ("sim_bridge_sim", "simulator"),
            ("sim_bridge_policy", "policy"),
            ("sim_bridge_policy", "evaluator"),
            ("sim_bridge_policy", "excite"),
            ("sim_bridge_policy", "sysid"),
            ("sim_bridge_randomization", "randomization"),
        }
        # ROS cannot type an empty list: defaults that are empty lists are left to the node.
        assert [] not in node.parameters.values(), node.name


def test_transport_decides_which_nodes_run():
    assert set(nodes("training", transport="fused")) == {"policy"}
    ros = nodes("training", transport="ros", randomization="default")
    assert set(ros) == {"simulator", "randomization", "policy"}
    assert ros["simulator"].parameters["mode"] == "lockstep"
    assert set(nodes("training", transport="ros", randomization="none")) == {"simulator", "policy"}
    assert set(nodes("deploy", simulate=False)) == {"policy"}


def test_eval_over_the_deploy_path_drives_one_simulated_robot():
    """transport:=deploy: the policy node in deploy mode, the simulator as the robot, and the evaluator."""
    described = nodes("eval", transport="deploy", num_envs=64, command_interface="position")
    assert set(described) == {"simulator", "policy", "evaluator"}
    simulator, policy, evaluator = described["simulator"], described["policy"], described["evaluator"]
    assert simulator.parameters["mode"] == "lockstep" and simulator.parameters["num_envs"] == 1
    assert simulator.parameters["randomization"] == ""  # measured against nominal fused worlds
    assert simulator.parameters["command_interface"] == "position"
    assert policy.parameters["mode"] == "deploy" and "transport" not in policy.parameters
    assert policy.parameters["use_sim_time"] is True
    assert evaluator.parameters["sim.num_envs"] == 64 and evaluator.parameters["episodes"] == 100
    assert dict(policy.remappings) == {}  # the robot's topics in the node's namespace


def test_arguments_reach_every_node_that_has_the_setting():
    ros = nodes("training", transport="ros", num_envs=96, seed=7, randomization="wide", control_dt=0.01)
    simulator, policy, randomization = ros["simulator"], ros["policy"], ros["randomization"]
    assert simulator.parameters["num_envs"] == policy.parameters["sim.num_envs"] == 96
    assert (
        simulator.parameters["seed"] == policy.parameters["ppo.seed"] == randomization.parameters["seed"] == 7
    )
    spec = str((CONFIG / "randomization" / "wide.yaml").resolve())
    assert simulator.parameters["randomization"] == randomization.parameters["config"] == spec
    assert simulator.parameters["control_dt"] == policy.parameters["sim.control_dt"] == 0.01
    assert policy.parameters["mode"] == "train" and policy.parameters["transport"] == "ros"
    assert policy.parameters["algorithm"] == "ppo" and policy.parameters["off_policy.seed"] == 7
    assert nodes("training", algorithm="sac")["policy"].parameters["algorithm"] == "sac"
    # File values are converted by the schema: YAML ints for float settings become floats.
    assert isinstance(policy.parameters["ppo.learning_rate"], float)


def test_deploy_remaps_the_policy_onto_a_robot_driver():
    policy = nodes(
        "deploy",
        simulate=False,
        state_topic="/joint_states",
        command_topic="/arm_controller/joint_trajectory",
    )["policy"]
    assert dict(policy.remappings) == {
        "joint_states": "/joint_states",
        "joint_trajectory": "/arm_controller/joint_trajectory",
    }
    forward = nodes(
        "deploy",
        simulate=False,
        command_interface="position",
        command_topic="/forward_position_controller/commands",
    )["policy"]
    assert dict(forward.remappings)["joint_commands"] == "/forward_position_controller/commands"
    assert forward.parameters["command_interface"] == "position"


def test_excite_drives_the_simulator_or_a_robot_driver_by_remapping_only():
    simulated = nodes("excite", robot="pendulum", duration_s=12.0, dry_run=True)
    assert set(simulated) == {"simulator", "exciter"}
    exciter = simulated["exciter"]
    assert exciter.parameters["model"] == simulated["simulator"].parameters["model"] == "pendulum"
    assert exciter.parameters["excitation.duration_s"] == 12.0 and exciter.parameters["dry_run"] is True
    assert exciter.parameters["command_interface"] == simulated["simulator"].parameters["command_interface"]
    assert exciter.parameters["joint_names"] == ["hinge"]  # the robot config's joints, as the simulator's
    real = nodes(
        "excite",
        simulate=False,
        state_topic="/joint_states",
        command_interface="position",
        command_topic="/forward_position_controller/commands",
    )
    assert set(real) == {"exciter"}
    assert real["exciter"].parameters["use_sim_time"] is False  # follows simulate
    assert dict(real["exciter"].remappings) == {
        "joint_states": "/joint_states",
        "joint_commands": "/forward_position_controller/commands",
    }


def test_deploy_dry_run_reaches_the_policy_and_a_simulated_robot_takes_the_given_topics():
    deploy = nodes("deploy", dry_run=True, state_topic="/robot/joint_states", command_topic="/robot/command")
    assert deploy["policy"].parameters["dry_run"] is True
    assert not nodes("deploy")["policy"].parameters["dry_run"]
    for node in ("policy", "simulator"):  # the simulator stands in for the robot on its topics
        assert dict(deploy[node].remappings) == {
            "joint_states": "/robot/joint_states",
            "joint_trajectory": "/robot/command",
        }


def test_sim_time_and_arming_follow_simulate_unless_given():
    """A real robot is on its system clock and waits for ~/enable; a simulated one is on /clock and
    is commanded at once (bringup excite simulate:=false on sim time spun silently for 10 minutes)."""
    simulated, real = nodes("deploy")["policy"], nodes("deploy", simulate=False)["policy"]
    assert simulated.parameters["use_sim_time"] is True and simulated.parameters["start_enabled"] is True
    assert real.parameters["use_sim_time"] is False and real.parameters["start_enabled"] is False
    given = nodes("deploy", simulate=False, start_enabled=True, use_sim_time=True)["policy"]
    assert given.parameters["use_sim_time"] is True and given.parameters["start_enabled"] is True
    assert nodes("training")["policy"].parameters["use_sim_time"] is False  # no robot: no simulate


def test_deploy_binds_the_policy_to_the_robot_file_and_its_topics(tmp_path):
    robot = tmp_path / "quadruped.yaml"
    feet = ["fl_foot", "fr_foot", "rl_foot", "rr_foot"]
    robot.write_text(
        yaml.safe_dump(
            {
                "model": str(Path(__file__).resolve().parents[1] / "models" / "quadruped.xml"),
                "home": "home",
                "tasks": {"locomotion": {"feet": feet, "nominal_height": 0.21}},
            }
        )
    )
    policy = nodes(
        "deploy",
        simulate=False,
        robot=str(robot),
        task="locomotion",
        imu_topic="/imu/data",
        cmd_vel_topic="/teleop/cmd_vel",
        cmd_vel_stamped=True,
        home_ramp_s=4.0,
    )["policy"]
    assert policy.parameters["robot"] == str(robot.resolve())
    assert dict(policy.remappings) == {"imu": "/imu/data", "cmd_vel": "/teleop/cmd_vel"}
    assert policy.parameters["cmd_vel_stamped"] is True and policy.parameters["home_ramp_s"] == 4.0


def test_a_namespace_holds_every_node_and_a_simulated_robots_clock():
    deploy = nodes("deploy", namespace="robot1")
    for node in deploy.values():
        assert node.namespace == "robot1"
        assert dict(node.remappings) == {"/clock": "clock"}
    assert nodes("deploy", namespace="robot1", simulate=False)["policy"].remappings == []
    with pytest.raises(ConfigError, match="namespace: 'robot 1' is not a ROS namespace"):
        nodes("deploy", namespace="robot 1")


def test_num_shards_splits_the_worlds_over_seeded_simulators_each_in_its_namespace():
    described = describe(
        "training",
        {"transport": "ros", "num_shards": 3, "num_envs": 10, "seed": 7, "randomization": "default"},
        CONFIG,
    ).nodes
    simulators = [node for node in described if node.name == "simulator"]
    assert [node.namespace for node in simulators] == ["shard_0", "shard_1", "shard_2"]
    assert [node.parameters["num_envs"] for node in simulators] == [4, 3, 3]
    assert [node.parameters["seed"] for node in simulators] == [7, 8, 9]
    assert all(("/clock", "clock") in node.remappings for node in simulators)  # each its own sim time
    randomizers = [node for node in described if node.name == "randomization"]
    assert [
        (node.namespace, node.parameters["simulator"], node.parameters["seed"]) for node in randomizers
    ] == [(f"shard_{k}", f"shard_{k}/simulator", 7 + k) for k in range(3)]
    (policy,) = [node for node in described if node.name == "policy"]
    assert policy.namespace == "" and policy.parameters["simulators"] == ["shard_0", "shard_1", "shard_2"]
    assert policy.parameters["sim.num_envs"] == 10
    inside = describe("training", {"transport": "ros", "num_shards": 2, "namespace": "lab"}, CONFIG).nodes
    assert {node.namespace for node in inside if node.name == "simulator"} == {"lab/shard_0", "lab/shard_1"}


def test_simulators_elsewhere_start_no_simulator_here():
    described = nodes("training", transport="ros", simulators=["hostA", "/lab/hostB"], num_envs=64)
    assert set(described) == {"policy"}
    assert described["policy"].parameters["simulators"] == ["hostA", "/lab/hostB"]


def test_excite_takes_the_drivers_joint_names(tmp_path):
    robot = tmp_path / "fr3.yaml"
    robot.write_text(yaml.safe_dump({"model": "arm7", "joint_prefix": "fr3_"}))
    exciter = nodes("excite", robot=str(robot), simulate=False)["exciter"]
    assert exciter.parameters["driver_joint_names"] == [f"fr3_joint{i}" for i in range(1, 8)]
    mapped = tmp_path / "mapped.yaml"
    mapped.write_text(yaml.safe_dump({"model": "arm7", "joint_name_map": {"a1": "joint1", "a2": "nojoint"}}))
    with pytest.raises(
        ConfigError, match=r"mapped\.yaml: joint_name_map: 'nojoint' is not a controlled joint"
    ):
        nodes("excite", robot=str(mapped))


def test_excite_keeps_to_the_robot_safety_limits(tmp_path):
    robot = tmp_path / "capped.yaml"
    robot.write_text(
        "model: arm7\njoint_names: [joint2, joint4]\nvelocity_limits: [1.5]\nmax_position_step: 0.01\n"
    )
    exciter = nodes("excite", robot=str(robot))["exciter"].parameters
    assert exciter["joint_names"] == ["joint2", "joint4"]
    assert exciter["velocity_limits"] == [1.5] and exciter["max_position_step"] == 0.01


def test_sysid_takes_every_bag_given_and_the_robot_file():
    described = describe(
        "sysid",
        parse_overrides(
            [
                "bag:=/data/a",
                "validation_bag:=/data/v",
                "bag:=/data/b",
                "validation_bag:=/data/w",
                "output_dir:=/tmp/s",
            ]
        ),
        CONFIG,
    )
    (sysid,) = described.nodes
    assert sysid.parameters["bags"] == ["/data/a", "/data/b"]
    assert sysid.parameters["validation_bags"] == ["/data/v", "/data/w"]
    assert sysid.parameters["robot"] == str((CONFIG / "robots" / "arm7.yaml").resolve())
    assert sysid.parameters["output_dir"] == "/tmp/s"
    assert nodes("sysid", bag="/data/one")["sysid"].parameters["bags"] == ["/data/one"]  # a launch argument
    assert nodes("sysid", bag=["/data/a", "/data/b"])["sysid"].parameters["bags"] == ["/data/a", "/data/b"]


def test_eval_names_the_robot_to_compare_with(tmp_path):
    identified = tmp_path / "robot.yaml"
    identified.write_text("model: arm7\nmodel_parameters: {command_delay_s: 0.004}\n")
    policy = nodes("eval", compare_robot=str(identified))["policy"]
    assert policy.parameters["compare_robot"] == str(identified.resolve())
    with pytest.raises(ConfigError, match="robot: no robot file"):
        describe("eval", {"compare_robot": str(tmp_path / "missing.yaml")}, CONFIG)


def test_eval_robot_is_the_robot_the_simulator_steps(tmp_path):
    """eval_robot:= (transport:=deploy): the simulator stands in for the other robot file (its
    solver options, parameters, command delay and sensor noise), the policy stays bound to robot:=."""
    other = tmp_path / "other.yaml"
    other.write_text(
        "model: arm7\n"
        "model_parameters:\n"
        "  joints: {joint2: {damping: 7.5}}\n"
        "  command_delay_s: 0.01\n"
        "  options: {timestep: 0.001, cone: elliptic}\n"
        "sensor_noise: {joint_position: 0.02}\n"
    )
    described = nodes("eval", transport="deploy", eval_robot=str(other), checkpoint="x.pt")
    assert described["policy"].parameters["robot"] == str((CONFIG / "robots" / "arm7.yaml").resolve())
    fields = {field.name for field in dataclasses.fields(SimulatorConfig)}
    simulated = {k: v for k, v in described["simulator"].parameters.items() if k in fields}
    simulator = Simulator(SimulatorConfig(**simulated))
    model = simulator.robot.model
    assert model.opt.timestep == 0.001 and model.opt.cone == CONES["elliptic"]
    assert model.dof_damping[model.jnt_dofadr[model.joint("joint2").id]] == 7.5
    assert simulator.robot.parameters.command_delay_s == 0.01
    # The sensor noise reaches what the simulated robot reports, and only that.
    simulator.step()
    error = simulator.env.measured_positions() - simulator.env.backend.joint_positions()
    assert 0.0 < np.max(np.abs(error)) <= 0.02
    evaluator = described["evaluator"].parameters
    assert evaluator["sim.model_parameters"] == described["simulator"].parameters["model_parameters"]
    # The fused evaluation beside it runs on the same robot; without eval_robot, nothing of this.
    assert "options" in described["policy"].parameters["sim.model_parameters"]
    assert nodes("eval", transport="deploy")["simulator"].parameters["model_parameters"] == ""


def test_eval_robot_must_have_the_policys_joints(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("model: arm7\njoint_prefix: fr3_\n")
    with pytest.raises(ConfigError, match=r"eval_robot: other\.yaml has joints .*fr3_joint1"):
        describe("eval", {"eval_robot": str(other)}, CONFIG)
    other.write_text("model: arm7\nsensor_noise: {joint_torque: 0.1}\n")
    with pytest.raises(ConfigError, match=r"other\.yaml: sensor_noise\.joint_torque: unknown reading"):
        describe("eval", {"eval_robot": str(other)}, CONFIG)


def test_overrides_parse_like_ros_arguments():
    assert parse_overrides(["num_envs:=64", "record:=true", "robot:=arm7", "mirror_envs:=[0, 3]"]) == {
        "num_envs": 64,
        "record": True,
        "robot": "arm7",
        "mirror_envs": [0, 3],
    }
    with pytest.raises(ConfigError, match="expected key:=value"):
        parse_overrides(["num_envs=64"])
    # A repeatable argument collects its values; any other keeps the last.
    assert parse_overrides(["bag:=a", "seed:=1", "bag:=[b, c]", "seed:=2"]) == {
        "bag": ["a", "b", "c"],
        "seed": 2,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_env": 4}, "num_env: unknown argument"),
        ({"num_envs": "many"}, "arguments.num_envs: must be int"),
        ({"num_envs": 0}, "arguments.num_envs: must be >= 1"),
        ({"robot": "ur5"}, "robot: no robot file"),
        ({"randomization": "extreme"}, "randomization: 'extreme' is neither a preset"),
        ({"transport": "zmq"}, "arguments.transport: must be one of fused, ros, deploy"),
        ({"command_interface": "effort"}, "arguments.command_interface: must be one of"),
        ({"algorithm": "ddpg"}, "arguments.algorithm: must be one of ppo, sac, td3"),
        ({"mirror_envs": [5], "num_envs": 2, "transport": "ros"}, "simulator.mirror_envs"),
        ({"num_shards": 2}, "num_shards: simulator shards serve a learner over transport:=ros"),
        ({"num_shards": 3, "num_envs": 2, "transport": "ros"}, "num_shards: 2 worlds cannot be split over 3"),
        ({"num_shards": 2, "simulators": ["a"], "transport": "ros"}, "num_shards: give num_shards"),
        ({"num_shards": 0}, "arguments.num_shards: must be >= 1"),
    ],
)
def test_bad_arguments_fail_with_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        describe("training", overrides, CONFIG)
    assert "\n" not in str(error.value)


def edited_config(tmp_path: Path, job: str, edit) -> Path:
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    data = yaml.safe_load((config / f"{job}.yaml").read_text())
    edit(data)
    (config / f"{job}.yaml").write_text(yaml.safe_dump(data))
    return config


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["nodes"]["policy"]["parameters"].update(mdoe="train"), "nodes.policy.parameters.mdoe"),
        (
            lambda d: d["nodes"]["policy"]["parameters"]["ppo"].update(num_steps=-1),
            "parameters.ppo.num_steps",
        ),
        (lambda d: d["nodes"]["policy"]["parameters"].update(max_wall_s=5), "set by the arguments"),
        (lambda d: d["nodes"].update(recorder={}), "nodes.recorder: unknown node"),
        (lambda d: d["nodes"]["simulator"].update(when={"transprt": "ros"}), "when.transprt: unknown"),
        (lambda d: d.update(extra=1), "extra: unknown section"),
        (lambda d: d["arguments"].update(num_envs=-3), "arguments.num_envs"),
    ],
)
def test_bad_config_files_fail_naming_the_key(tmp_path, edit, message):
    config = edited_config(tmp_path, "training", edit)
    with pytest.raises(ConfigError, match=message):
        describe("training", {"transport": "ros"}, config)


def test_robot_file_is_checked_against_its_model(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    (config / "robots" / "arm7.yaml").write_text("model: arm7\njoint_names: [shoulder, elbow]\n")
    with pytest.raises(
        ConfigError, match=r"arm7\.yaml: joint_names: 'shoulder' is not a joint an actuator drives"
    ):
        describe("training", {}, config)


def test_the_arguments_are_the_documented_launch_keys():
    keys = {spec.name for spec in setting_specs(BringupArguments)}
    required = {"robot", "task", "num_envs", "backend", "transport", "randomization", "record", "output_dir"}
    required |= {"seed", "max_env_steps", "max_wall_s", "use_sim_time"}
    assert required <= keys
    for job in JOBS:  # every config file's argument defaults are arguments
        defaults = yaml.safe_load((CONFIG / f"{job}.yaml").read_text())["arguments"]
        assert set(defaults) <= keys, job


def test_a_simulated_robot_takes_the_position_array_in_its_own_order():
    reordered = ["joint2", "joint1", *(f"joint{i}" for i in range(3, 8))]
    with pytest.raises(ConfigError, match="command_joint_names: the simulated robot takes the array"):
        nodes("deploy", command_joint_names=reordered)
    real = nodes("deploy", simulate=False, command_joint_names=reordered)["policy"]
    assert real.parameters["command_joint_names"] == reordered


def test_record_in_sim_has_the_simulator_record_its_cameras(tmp_path):
    robot = tmp_path / "seeing.yaml"
    camera = {"name": "overhead", "body": "world", "pos": [0.0, 0.0, 2.5], "width": 64, "height": 48}
    robot.write_text(yaml.safe_dump({"model": "arm7", "cameras": [camera]}))
    simulator = nodes("sim", robot=str(robot), record=True, output_dir="/tmp/run")["simulator"].parameters
    assert simulator["record_cameras"] is True and simulator["output_dir"] == "/tmp/run"
    assert "record_cameras" not in nodes("sim", robot=str(robot))["simulator"].parameters
    # a deployed policy writes the run's bag (and the cameras into it): the simulator does not
    deployed = nodes("deploy", robot=str(robot), record=True, checkpoint="runs/x/checkpoint.pt")
    assert "record_cameras" not in deployed["simulator"].parameters
    with pytest.raises(ConfigError, match=r"^record: arm7\.yaml lists no cameras"):
        nodes("sim", record=True)
