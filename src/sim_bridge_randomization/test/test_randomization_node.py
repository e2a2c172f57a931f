"""The randomization node and the simulator as separate processes over real DDS."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

SPEC = Path(__file__).resolve().parents[3] / "config" / "randomization" / "default.yaml"
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


def column(message: Float64MultiArray, name: str) -> np.ndarray:
    names = message.layout.dim[1].label.split(",")
    return np.array(message.data).reshape(len(message.data) // len(names), len(names))[:, names.index(name)]


def set_range(client, name: str, value: float):
    value_msg = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    request = SetParameters.Request(parameters=[Parameter(name=name, value=value_msg)])
    return client.call(SetParameters, "/randomization/set_parameters", request).results[0]


def test_randomization_service_drives_the_simulator(start_node, ros_client):
    sim = start_node("sim_bridge_sim", "simulator", model="arm7", task="reach", num_envs=8, mode="fast")
    randomizer = start_node("sim_bridge_randomization", "randomization", config=str(SPEC), seed=3)
    applied = ros_client.collect(Float64MultiArray, "randomization/applied", LATCHED)
    ros_client.wait_until(
        lambda: applied and "body_mass/link3" in applied[-1].layout.dim[1].label,
        timeout=30,
        what="randomized values on randomization/applied",
    )
    nominal_mass = 3.0  # link3 of arm7
    masses = column(applied[-1], "body_mass/link3")
    assert np.all((masses >= 0.9 * nominal_mass) & (masses <= 1.1 * nominal_mass)) and np.ptp(masses) > 0

    refused = set_range(ros_client, "body_mass.low", 2.0)  # low above high
    assert not refused.successful and "body_mass" in refused.reason
    assert set_range(ros_client, "body_mass.low", 0.5).successful
    assert set_range(ros_client, "body_mass.high", 0.6).successful
    ros_client.wait_until(
        lambda: np.all(column(applied[-1], "body_mass/link3") <= 0.6 * nominal_mass + 1e-9),
        what="narrowed mass range in effect",
    )

    before = column(applied[-1], "body_mass/link3")
    assert ros_client.call(Trigger, "/randomization/randomize", Trigger.Request()).success
    ros_client.wait_until(
        lambda: not np.array_equal(column(applied[-1], "body_mass/link3"), before), what="resampled masses"
    )

    assert ros_client.call(SetBool, "/randomization/set_enabled", SetBool.Request(data=False)).success
    ros_client.wait_until(
        lambda: np.allclose(column(applied[-1], "body_mass/link3"), nominal_mass), what="nominal masses"
    )
    assert sim.alive() and randomizer.alive()


def randomized(message: Float64MultiArray) -> bool:
    return "body_mass/link3" in message.layout.dim[1].label.split(",")


def test_a_range_the_simulator_refuses_is_refused_and_changes_nothing(start_node, ros_client, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("seed: 0\nbody_mass: {targets: [link3], operation: add, low: -0.1, high: 0.1}\n")
    sim = start_node("sim_bridge_sim", "simulator", model="arm7", task="reach", num_envs=8, mode="fast")
    randomizer = start_node("sim_bridge_randomization", "randomization", config=str(spec))
    applied = ros_client.collect(Float64MultiArray, "randomization/applied", LATCHED)
    ros_client.wait_until(
        lambda: applied and randomized(applied[-1]),
        timeout=30,
        what="randomized values on randomization/applied",
    )

    # The spec is valid on its own, but a mass of 3 - 10 kg is not: the simulator's refusal is the answer.
    refused = set_range(ros_client, "body_mass.low", -10.0)
    assert not refused.successful
    assert "simulator refused" in refused.reason and "randomization.body_mass.low" in refused.reason
    bounds = ros_client.call(
        GetParameters,
        "/randomization/get_parameters",
        GetParameters.Request(names=["body_mass.low", "body_mass.high"]),
    )
    assert [value.double_value for value in bounds.values] == [-0.1, 0.1]
    # (the simulator's first message, before the spec reached it, holds no randomized value)
    masses = np.concatenate(
        [column(message, "body_mass/link3") for message in applied if randomized(message)]
    )
    assert np.all(np.abs(masses - 3.0) <= 0.1 + 1e-9)  # the simulator kept what it had

    # The next change starts from the ranges in effect, not from the refused one.
    assert set_range(ros_client, "body_mass.high", 1.0).successful
    ros_client.wait_until(
        lambda: column(applied[-1], "body_mass/link3").max() > 3.1, what="the widened range in effect"
    )
    masses = column(applied[-1], "body_mass/link3")
    assert np.all((masses >= 2.9 - 1e-9) & (masses <= 4.0 + 1e-9))
    assert sim.alive() and randomizer.alive()


def test_missing_spec_fails_at_start_with_one_line(start_node):
    process = start_node("sim_bridge_randomization", "randomization", config="/no/such/spec.yaml")
    process.proc.wait(timeout=30)
    lines = [line for line in process.output().splitlines() if line.strip()]
    assert process.proc.returncode == 2 and len(lines) == 1 and "randomization.config" in lines[0], lines


def test_a_stop_while_it_waits_for_the_simulator_ends_it_at_once(start_node, ros_client):
    """The node hands its spec to the simulator before serving. Stopped while it still waits (a launch
    that ends before the simulator answered), it ends cleanly at once, not after its 30 s wait:
    ros2 launch escalates to SIGTERM after 5 s and to SIGKILL after 15."""
    process = start_node("sim_bridge_randomization", "randomization", config=str(SPEC), simulator="nowhere")
    ros_client.wait_until(
        lambda: "randomization" in ros_client.node.get_node_names(), timeout=30, what="the node in the graph"
    )
    time.sleep(0.5)  # well into its wait for /nowhere/set_parameters
    process.interrupt()
    assert process.wait_exit(5) == 0, process.output()
