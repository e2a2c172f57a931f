"""The way back from the robot, end to end: excite a robot whose parameters sysid is not told, identify
it from the bag with `bringup sysid`, and check the identified robot against the real one.

The "real" robot is the simulator running a robot config with changed joint parameters and a
command delay (src/sim_bridge_core/test/sysid/test_sysid.py's PERTURBED); sysid only gets the nominal arm7.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import JointState
from sim_bridge_core.bringup.description import describe
from sim_bridge_core.config import from_mapping
from sim_bridge_core.models import load_robot, parse_model_parameters
from sim_bridge_core.randomization import bind, load_spec
from sim_bridge_core.simulator.core import SimulatorConfig
from sim_bridge_core.sysid.bags import read_run
from sim_bridge_core.sysid.config import ExcitationConfig
from sim_bridge_core.sysid.simulated import record_excitation, replay_bag

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
sys.path.insert(0, str(ROOT / "src" / "sim_bridge_core" / "test" / "sysid"))
from test_sysid import PERTURBED, corrupt_chunk, hold, simulated_robot, write_bag  # noqa: E402

# What an arm7 excitation identifies for sure (sysid.json: identified_by_data), within 3 %: the servo
# stiffness and velocity damping (damping + kv) of the gravity-loaded joints. Anything else the fit
# marks identified must lie within twice its 95 % half-width (+10 %) of the truth; the delay within
# one physics step.
MUST_IDENTIFY = [
    "joint2.kp",
    "joint4.kp",
    "joint6.kp",
    "joint2.damping+kv",
    "joint4.damping+kv",
    "joint6.damping+kv",
]


def truth(name: str) -> float:
    if name == "command_delay_s":
        return PERTURBED["command_delay_s"]
    joint, _, kind = name.partition(".")
    values = PERTURBED["joints"][joint]
    return values["damping"] + values["kv"] if kind == "damping+kv" else values[kind]


def replay(sim_parameters: dict, bag: Path) -> np.ndarray:
    """A bag's commands run through a Simulator built from a bringup node description, at their
    times; its joint positions at the bag's joint-state times."""
    values = {k: v for k, v in sim_parameters.items() if k != "use_sim_time"}
    return replay_bag(from_mapping(SimulatorConfig, values, "simulator"), bag)


def rms_error(sim_parameters: dict, bag: Path) -> float:
    recorded = read_run(bag, load_robot("arm7")).positions
    return float(np.sqrt(np.mean((replay(sim_parameters, bag) - recorded) ** 2)))


def test_the_loop_identifies_a_robot_it_is_not_told_about(tmp_path, start_executable, ros_client):
    """The loop against a robot driver: `bringup excite simulate:=false` drives a separate robot (the
    simulator running a robot file sysid never sees: every joint changed, commands 6 ms late) by
    remapping only and records it; `bringup sysid` recovers the identifiable parameters from that
    bag; its robot.yaml, run by `bringup sim`, reproduces the robot on a run the fit never saw with
    at most half the nominal model's error; its randomization.yaml trains on it."""
    secret = tmp_path / "secret.yaml"
    secret.write_text(yaml.safe_dump({"model": "arm7", "model_parameters": PERTURBED}))
    robot = start_executable("sim_bridge", "bringup", "sim", f"robot:={secret}")
    robot.wait_for_output("[simulator]", timeout=30)
    run = tmp_path / "excite"
    excite = start_executable(
        "sim_bridge",
        "bringup",
        "excite",
        "simulate:=false",
        "use_sim_time:=true",  # the simulated robot's clock, on which it stamps its states
        "state_topic:=/joint_states",
        "command_topic:=/joint_trajectory",
        "duration_s:=22",  # margin for states a loaded machine drops before the recorder sees them
        f"output_dir:={run}",
    )
    assert excite.wait_exit(120) == 0, excite.output()
    assert "excitation done" in excite.output()
    robot.stop()

    out = tmp_path / "sysid"
    sysid = start_executable(
        "sim_bridge", "bringup", "sysid", f"bag:={run / 'rollouts'}", f"output_dir:={out}"
    )
    assert sysid.wait_exit(300) == 0, sysid.output()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["randomization.yaml", "robot.yaml", "sysid.json", "sysid_report.png"]
    summary = json.loads((out / "sysid.json").read_text())
    identified = {name: p for name, p in summary["parameters"].items() if p["identified_by_data"]}
    sums = summary["damping_plus_kv"]
    identified |= {f"{j}.damping+kv": p for j, p in sums.items() if p["identified_by_data"]}
    assert set(MUST_IDENTIFY) <= set(identified), sorted(identified)
    for name in MUST_IDENTIFY:
        assert identified[name]["identified"] == pytest.approx(truth(name), rel=0.03), name
    for name, entry in identified.items():
        # The intervals assume white noise; a loaded host's bag carries timing errors they do not
        # model (one CI run: joint5.kv 183 +- 0.9 against 200), hence 10 % more.
        error = abs(entry["identified"] - truth(name))
        assert error <= 2 * entry["uncertainty_95"] + 0.1 * truth(name), (name, entry, truth(name))
    delay = summary["parameters"]["command_delay_s"]
    assert abs(delay["identified"] - truth("command_delay_s")) < summary["physics_dt"], delay
    held_out = summary["errors"]["held_out"]
    assert held_out["ratio"] <= 0.5, held_out

    # robot.yaml runs in bringup sim and reproduces the robot on an excitation the fit never saw.
    robot_yaml = out / "robot.yaml"
    identified_sim = {n.name: n for n in describe("sim", {"robot": str(robot_yaml)}, CONFIG).nodes}[
        "simulator"
    ]
    nominal_sim = {n.name: n for n in describe("sim", {}, CONFIG).nodes}["simulator"]
    unseen = record_excitation(
        tmp_path / "unseen", simulated_robot(), ExcitationConfig(duration_s=8.0, ramp_s=1.5, seed=7), 0.5
    )
    before, after = rms_error(nominal_sim.parameters, unseen), rms_error(identified_sim.parameters, unseen)
    assert after <= 0.5 * before, (before, after)
    states = ros_client.collect(JointState, "/joint_states")
    process = start_executable("sim_bridge", "bringup", "sim", f"robot:={robot_yaml}")
    ros_client.wait_until(lambda: len(states) > 20, timeout=30, what="joint_states of the identified robot")
    assert process.alive(), process.output()

    # randomization.yaml: ranges about the identified values, for bringup training on robot.yaml.
    training = describe(
        "training", {"robot": str(robot_yaml), "randomization": str(out / "randomization.yaml")}, CONFIG
    )
    policy = training.nodes[0].parameters
    applied = parse_model_parameters(yaml.safe_load(policy["sim.model_parameters"]))
    spec = load_spec(policy["sim.randomization"])
    bind(spec, load_robot("arm7", parameters=applied))
    kinds = {p.name for p in spec.parameters}
    assert kinds == {"dof_damping", "dof_armature", "dof_frictionloss", "actuator_kp", "actuator_kd"}
    for parameter in spec.parameters:
        assert parameter.operation == "scale" and parameter.low < 1.0 < parameter.high


def test_excite_dry_run_prints_the_motion_and_moves_nothing(tmp_path, start_executable, ros_client):
    from trajectory_msgs.msg import JointTrajectory

    sent = ros_client.collect(JointTrajectory, "/joint_trajectory")
    run = tmp_path / "excite"
    process = start_executable("sim_bridge", "bringup", "excite", "dry_run:=true", f"output_dir:={run}")
    assert process.wait_exit(60) == 0, process.output()
    output = process.output()
    assert "dry run: nothing was sent" in output
    for joint in [f"joint{i}" for i in range(1, 8)]:  # its extent against its limits, per joint
        assert f"]:   {joint} " in output, output
    assert not run.exists() and sent == []


def test_sysid_refuses_a_corrupt_bag_in_one_line(tmp_path, start_executable):
    """A bag whose MCAP chunk is damaged (a torn write) ends `bringup sysid` with exit 2 and one line
    naming the bag, whatever the reader raised; nothing is written."""
    robot = load_robot("arm7")
    rest = np.tile(robot.home, (600, 1))
    bag = corrupt_chunk(write_bag(tmp_path / "bag", list(robot.joint_names), rest, hold(robot.home)))
    out = tmp_path / "sysid"
    sysid = start_executable("sim_bridge", "bringup", "sysid", f"bag:={bag}", f"output_dir:={out}")
    assert sysid.wait_exit(60) == 2, sysid.output()
    errors = [line for line in sysid.output().splitlines() if "error" in line.lower()]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"[sysid] error: bag {bag} cannot be read: OverflowError: "), errors
    assert "Traceback" not in sysid.output() and not out.exists()
