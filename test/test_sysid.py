"""The way back from the robot, end to end: excite a robot whose parameters sysid is not told, identify
it from the bag with `bringup sysid`, and check the identified robot against the real one.

The "real" robot is the simulator running a robot config with changed joint parameters and a
command delay (tests/test_sysid.py's PERTURBED); sysid only gets the nominal arm7.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import JointState
from sim_bridge_core.bringup import describe
from sim_bridge_core.config import from_mapping
from sim_bridge_core.models import load_robot, parse_model_parameters
from sim_bridge_core.randomization import bind, load_spec
from sim_bridge_core.simulator import Simulator, SimulatorConfig
from sim_bridge_core.sysid.bags import read_run
from sim_bridge_core.sysid.config import ExcitationConfig
from sim_bridge_core.sysid.simulated import record_excitation

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
sys.path.insert(0, str(ROOT / "src" / "sim_bridge_core" / "test"))
from test_sysid import PERTURBED, simulated_robot  # noqa: E402

# Stated tolerances on what the data identifies (sysid.json: identified_by_data), and what must be
# identified from an arm7 excitation: the gravity-loaded joints' gains, every joint's friction, the delay.
TOLERANCE = {"kp": 0.03, "armature": 0.1, "frictionloss": 0.1, "damping+kv": 0.03}
MUST_IDENTIFY = ["joint2.kp", "joint4.kp", "joint6.kp", "joint2.frictionloss", "joint4.frictionloss"]


def truth(name: str) -> float:
    joint, _, kind = name.partition(".")
    if name == "command_delay_s":
        return PERTURBED["command_delay_s"]
    values = PERTURBED["joints"][joint]
    return values["damping"] + values["kv"] if kind == "damping+kv" else values[kind]


def replay(sim_parameters: dict, bag: Path) -> tuple[np.ndarray, np.ndarray]:
    """Run a bag's commands through a Simulator built from a bringup node description, at their times;
    its joint positions at the bag's joint-state times."""
    config = from_mapping(
        SimulatorConfig, {k: v for k, v in sim_parameters.items() if k != "use_sim_time"}, "sim"
    )
    simulator = Simulator(config)
    commands, states = {}, {}
    with Reader(bag) as reader:
        for connection, time_ns, data in reader.messages():
            if connection.topic == "/joint_trajectory":
                commands[time_ns] = bytes(data)
            elif connection.topic == "/joint_states":
                states[time_ns] = None
    times, positions = sorted(states), []
    while simulator.time_ns <= times[-1]:
        if simulator.time_ns in commands:
            simulator.apply_world_command(0, commands[simulator.time_ns])
        if simulator.time_ns in states:
            positions.append(simulator.env.measured_positions()[0].copy())
        simulator.step()
    return np.array(times), np.array(positions)


def rms_error(sim_parameters: dict, bag: Path) -> float:
    recorded = read_run(bag, load_robot("arm7")).positions
    _, replayed = replay(sim_parameters, bag)
    return float(np.sqrt(np.mean((replayed - recorded) ** 2)))


def test_sysid_recovers_a_simulated_robot_and_its_robot_yaml_reproduces_it(tmp_path, start_executable):
    """Known parameters back from a bag of the project's simulator (changed parameters, 6 ms delay),
    through `bringup sysid`; then the written robot.yaml, loaded by `bringup sim`'s description,
    reproduces that robot on a run the fit never saw with a fraction of the nominal model's error."""
    bag = record_excitation(tmp_path / "bag", simulated_robot(), ExcitationConfig(duration_s=16.0), 0.5)
    out = tmp_path / "sysid"
    process = start_executable("sim_bridge", "bringup", "sysid", f"bag:={bag}", f"output_dir:={out}")
    assert process.wait_exit(300) == 0, process.output()
    assert sorted(p.name for p in out.iterdir()) == [
        "randomization.yaml",
        "robot.yaml",
        "sysid.json",
        "sysid_report.png",
    ]
    summary = json.loads((out / "sysid.json").read_text())
    parameters = summary["parameters"]
    identified = {name: p for name, p in parameters.items() if p["identified_by_data"]}
    identified |= {
        f"{j}.damping+kv": p for j, p in summary["damping_plus_kv"].items() if p["identified_by_data"]
    }
    assert set(MUST_IDENTIFY) <= set(identified)
    for name, entry in identified.items():
        kind = name.partition(".")[2]
        if name == "command_delay_s":  # within one physics step, and applied as the true whole steps
            assert abs(entry["identified"] - truth(name)) < summary["physics_dt"], name
            assert entry["applied"] == pytest.approx(truth(name), abs=1e-12)
        elif kind in TOLERANCE:
            error = abs(entry["identified"] - truth(name))
            assert error <= TOLERANCE[kind] * truth(name) + 0.005, (name, entry["identified"], truth(name))
    for part in ("fit", "held_out"):
        assert summary["errors"][part]["ratio"] < 0.1, summary["errors"][part]

    # robot.yaml: a robot config every job takes; bringup sim runs it (the delay in whole steps).
    robot_yaml = out / "robot.yaml"
    sim = {n.name: n for n in describe("sim", {"robot": str(robot_yaml)}, CONFIG).nodes}["simulator"]
    applied = parse_model_parameters(yaml.safe_load(sim.parameters["model_parameters"]))
    assert applied.command_delay_s == pytest.approx(0.006)
    nominal = {n.name: n for n in describe("sim", {}, CONFIG).nodes}["simulator"]
    unseen = record_excitation(
        tmp_path / "unseen", simulated_robot(), ExcitationConfig(duration_s=8.0, seed=7, ramp_s=1.5), 0.5
    )
    before, after = rms_error(nominal.parameters, unseen), rms_error(sim.parameters, unseen)
    assert after <= 0.5 * before, (before, after)

    # randomization.yaml: a spec centred on the identified robot, for training on it.
    training = describe(
        "training", {"robot": str(robot_yaml), "randomization": str(out / "randomization.yaml")}, CONFIG
    )
    policy = training.nodes[0].parameters
    spec = load_spec(policy["sim.randomization"])
    bind(spec, load_robot("arm7", parameters=applied))
    assert {p.name for p in spec.parameters} == {
        "dof_damping",
        "dof_armature",
        "dof_frictionloss",
        "actuator_kp",
        "actuator_kd",
    }
    for parameter in spec.parameters:
        assert parameter.operation == "scale" and parameter.low < 1.0 < parameter.high


def test_the_loop_against_a_robot_driver(tmp_path, start_executable, ros_client):
    """`bringup excite simulate:=false` drives a separate robot (the simulator with a robot file sysid
    is not given) by remapping only; `bringup sysid` identifies it from that bag with at most half
    the nominal model's held-out error; `bringup sim robot:=S/robot.yaml` then runs the result."""
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
        "use_sim_time:=true",  # the simulated robot stamps its states with sim time
        "state_topic:=/joint_states",
        "command_topic:=/joint_trajectory",
        "duration_s:=14",
        f"output_dir:={run}",
    )
    assert excite.wait_exit(120) == 0, excite.output()
    assert "excitation done" in excite.output()
    out = tmp_path / "sysid"
    sysid = start_executable(
        "sim_bridge", "bringup", "sysid", f"bag:={run / 'rollouts'}", f"output_dir:={out}"
    )
    assert sysid.wait_exit(300) == 0, sysid.output()
    held_out = json.loads((out / "sysid.json").read_text())["errors"]["held_out"]
    assert held_out["ratio"] <= 0.5, held_out
    robot.stop()
    states = ros_client.collect(JointState, "/joint_states")
    identified = start_executable("sim_bridge", "bringup", "sim", f"robot:={out / 'robot.yaml'}")
    ros_client.wait_until(lambda: len(states) > 20, timeout=30, what="joint_states of the identified robot")
    assert identified.alive(), identified.output()
