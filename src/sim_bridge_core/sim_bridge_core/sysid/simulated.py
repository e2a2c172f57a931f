"""A robot run recorded from the simulator in this process: ``bringup excite`` against ``bringup sim``
without the transport, for tests and benchmarks that need bags of a robot with known parameters.

Each control period: the state is recorded (with /clock), the exciter answers it, its command
goes to the simulator exactly as the simulator node would apply it (``apply_world_command`` at
the current sim time) and is recorded at that time, then the simulator steps. A bag made so is
what the nodes record, less the DDS latency.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from sim_bridge_core.deploy.deployment import safety_filter
from sim_bridge_core.recording.bag import (
    CLOCK_TOPIC,
    CLOCK_TYPE,
    COMMAND_TYPES,
    JOINT_STATE_TYPE,
    STREAM_QOS,
    BagWriter,
    clock_bytes,
)
from sim_bridge_core.sim.control import COMMAND_TOPIC_NAMES
from sim_bridge_core.simulator.core import Simulator, SimulatorConfig
from sim_bridge_core.sysid.config import ExcitationConfig
from sim_bridge_core.sysid.excitation import Exciter

STATE_TOPIC = "/joint_states"


def record_excitation(
    bag: str | Path, sim: SimulatorConfig, excitation: ExcitationConfig, start_s: float = 0.0
) -> Path:
    """Excite the simulated robot ``sim`` (one world) and record it to the bag directory ``bag``.

    The simulator rests for ``start_s`` first (the robot settles under gravity), as a robot would
    before ``bringup excite`` starts.
    """
    simulator = Simulator(sim)
    robot = simulator.robot
    interface = sim.command_interface
    exciter = Exciter(excitation, robot, interface, safety_filter(robot, sim.control_dt, section="exciter"))
    command_topic = "/" + COMMAND_TOPIC_NAMES[interface]
    topics = [
        (STATE_TOPIC, JOINT_STATE_TYPE, STREAM_QOS),
        (command_topic, COMMAND_TYPES[interface], STREAM_QOS),
        (CLOCK_TOPIC, CLOCK_TYPE, STREAM_QOS),
    ]
    for _ in range(round(start_s / sim.control_dt)):
        simulator.step()
    with BagWriter(bag, topics) as writer:
        while not exciter.finished(simulator.time_ns / 1e9):
            now_ns = simulator.time_ns
            (state,) = simulator.joint_states()
            writer.write_group([(CLOCK_TOPIC, now_ns, clock_bytes(now_ns)), (STATE_TOPIC, now_ns, state)])
            if exciter.plan is None:
                exciter.start(now_ns / 1e9, np.array(simulator.env.measured_positions()[0]))
            for command in exciter.commands(now_ns / 1e9):
                simulator.apply_world_command(0, command)
                writer.write(command_topic, now_ns, command)
            simulator.step()
    return Path(bag)


def replay_bag(sim: SimulatorConfig, bag: str | Path) -> np.ndarray:
    """(T, J) joint positions of the simulated robot ``sim`` (one world) fed a bag's commands at their
    recorded times, at the bag's joint-state times: how closely a robot config reproduces a recording
    (the bag's times must fall on the simulator's control steps, as ``record_excitation``'s do)."""
    simulator = Simulator(sim)
    command_topic = "/" + COMMAND_TOPIC_NAMES[sim.command_interface]
    commands, states = {}, set()
    with Reader(bag) as reader:
        for connection, time_ns, data in reader.messages():
            if connection.topic == command_topic:
                commands[time_ns] = bytes(data)
            elif connection.topic == STATE_TOPIC:
                states.add(time_ns)
    positions, last = [], max(states)
    while simulator.time_ns <= last:
        if simulator.time_ns in commands:
            simulator.apply_world_command(0, commands[simulator.time_ns])
        if simulator.time_ns in states:
            positions.append(simulator.env.measured_positions()[0].copy())
        simulator.step()
    return np.array(positions)
