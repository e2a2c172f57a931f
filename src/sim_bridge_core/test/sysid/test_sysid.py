"""System identification's pieces: the excitation, reading bags, replaying commands, and refusing bad input.

The fit itself (known parameters recovered, the identified robot reproducing the recorded one)
is tested end to end through `bringup sysid` in test/test_sysid.py.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.deployment import safety_filter
from sim_bridge_core.jobs.sysid import run_sysid
from sim_bridge_core.models import load_robot, parse_model_parameters, robot_spec
from sim_bridge_core.recording.bag import (
    CLOCK_TOPIC,
    CLOCK_TYPE,
    JOINT_STATE_TYPE,
    STREAM_QOS,
    BagWriter,
    clock_bytes,
)
from sim_bridge_core.sim.trajectory import parse_goal
from sim_bridge_core.simulator.core import SimulatorConfig
from sim_bridge_core.simulator.wire import (
    JointStateEncoder,
    decode_joint_trajectory,
    decode_multi_array,
    encode_joint_trajectory,
)
from sim_bridge_core.sysid import identify as identify_module
from sim_bridge_core.sysid.bags import SysidInputError, read_run
from sim_bridge_core.sysid.config import ExcitationConfig, SysidConfig
from sim_bridge_core.sysid.excitation import TRAJECTORY_LEAD_S, Exciter, plan_excitation
from sim_bridge_core.sysid.identify import (
    NOISE_FLOOR,
    PRIOR_WEIGHT,
    Fit,
    Problem,
    Unknown,
    checked,
    confidence,
    make_unknowns,
    make_windows,
    split_windows,
)
from sim_bridge_core.sysid.selection import pinned, select
from sim_bridge_core.sysid.simulated import record_excitation

CONFIG = Path(__file__).resolve().parents[4] / "config"
ARM7 = str(CONFIG / "robots" / "arm7.yaml")
# A robot that is not the nominal arm7: every joint's parameters changed, commands 6 ms late.
PERTURBED = {
    "joints": {
        f"joint{i}": {
            "damping": 1.0 + 0.3 * i,
            "armature": 0.1 * (1 + 0.1 * i),
            "frictionloss": 0.2 * i / 7,
            "kp": kp * (0.8 + 0.05 * i),
            "kv": kv * (1.2 - 0.04 * i),
        }
        for i, (kp, kv) in enumerate(
            [(4500, 450), (4500, 450), (3500, 350), (3500, 350), (2000, 200), (2000, 200), (2000, 200)], 1
        )
    },
    "command_delay_s": 0.006,
}


def simulated_robot(interface: str = "trajectory", parameters: dict | None = None) -> SimulatorConfig:
    overrides = yaml.safe_dump(PERTURBED if parameters is None else parameters)
    return SimulatorConfig(
        model="arm7", control_dt=0.002, task="none", command_interface=interface, model_parameters=overrides
    )


def test_the_excitation_stays_inside_the_limits_and_rests_at_both_ends():
    robot = load_robot("arm7")
    config = ExcitationConfig(duration_s=12.0, max_acceleration=4.0, velocity_fraction=0.2)
    start = robot.home.copy()
    start[3] = robot.lower[3] + 0.3  # joint4 near its lower limit: the room decides its amplitude
    plan = plan_excitation(config, robot.joint_names, start, robot.lower, robot.upper, robot.velocity_limits)
    p, v, a = plan.sample(np.arange(0.0, config.duration_s, 1e-4))
    margin = config.position_margin_rad
    assert np.all(p >= robot.lower + margin - 1e-9) and np.all(p <= robot.upper - margin + 1e-9)
    assert np.all(np.abs(p - start) <= config.max_amplitude_rad + 1e-9)
    assert np.all(np.abs(v) <= config.velocity_fraction * robot.velocity_limits + 1e-9)
    assert np.all(np.abs(a) <= config.max_acceleration + 1e-9)
    assert np.all(np.ptp(p, axis=0) > 0.05)  # every joint moves
    assert abs(p[:, 3].min() - (robot.lower[3] + margin)) < 0.01  # joint4 uses the room it has
    for t in (0.0, config.rest_s, config.duration_s - config.rest_s, config.duration_s):
        at_t = plan.sample(np.array([t]))
        np.testing.assert_allclose(at_t[0][0], start, atol=1e-12)
        np.testing.assert_allclose(at_t[1][0], 0.0, atol=1e-12)
        np.testing.assert_allclose(at_t[2][0], 0.0, atol=1e-12)
    frequencies = plan.frequencies_hz.ravel()
    assert len(set(np.round(frequencies, 9))) == frequencies.size  # no two joints share one


def test_a_joint_at_its_limit_is_refused_by_name():
    robot = load_robot("arm7")
    start = robot.home.copy()
    start[5] = robot.upper[5] - 0.05
    with pytest.raises(ConfigError, match=r"joint 'joint6' .* within position_margin_rad") as error:
        plan_excitation(
            ExcitationConfig(), robot.joint_names, start, robot.lower, robot.upper, robot.velocity_limits
        )
    assert "\n" not in str(error.value)


def test_the_excitation_goes_out_as_one_trajectory_the_controller_accepts():
    robot = load_robot("arm7")
    config = ExcitationConfig(duration_s=6.0)
    exciter = Exciter(config, robot, "trajectory", safety_filter(robot, 0.02, section="exciter"))
    exciter.start(3.0, robot.home)
    (message,) = exciter.commands(3.0)
    assert exciter.commands(3.1) == []  # sent once
    decoded = decode_joint_trajectory(message)
    points = decoded.points
    assert decoded.stamp_ns == round((3.0 + TRAJECTORY_LEAD_S) * 1e9)  # it starts at a time the bag records
    # joint_trajectory_controller's rules: all joints, increasing times, at rest at the end.
    goal = parse_goal(
        decoded.joint_names,
        stamp_s=decoded.stamp_ns / 1e9,
        times_s=[p.time_from_start_ns / 1e9 for p in points],
        positions=[p.positions for p in points],
        velocities=[p.velocities for p in points],
        accelerations=[p.accelerations for p in points],
        robot_joints=robot.joint_names,
        lower=robot.lower,
        upper=robot.upper,
        allow_partial=False,
        now_s=3.0,
    )
    assert len(points) == math.ceil(config.duration_s * config.point_rate_hz) and not goal.clamped
    np.testing.assert_allclose(goal.positions[-1], robot.home, atol=1e-12)
    end = 3.0 + TRAJECTORY_LEAD_S + config.duration_s
    assert exciter.finished(end) and not exciter.finished(end - 0.1)
    position = Exciter(config, robot, "position", safety_filter(robot, 0.02, section="exciter"))
    position.start(0.0, robot.home)
    sent = [len(position.commands(t)) for t in np.arange(0.0, 1.0, 0.002)]
    assert sum(sent) == 50  # one per 1 / point_rate_hz


def test_the_excitation_keeps_within_the_robot_step_cap():
    robot = load_robot("arm7")
    config = ExcitationConfig(duration_s=8.0)
    free = Exciter(config, robot, "position", safety_filter(robot, 0.02, section="exciter"))
    capped = Exciter(
        config, robot, "position", safety_filter(robot, 0.02, max_position_step=0.002, section="exciter")
    )
    free.start(0.0, robot.home)
    capped.start(0.0, robot.home)
    period = 1.0 / config.point_rate_hz
    times = np.arange(0.0, config.duration_s, 1e-3)
    free_steps = np.abs(free.plan.sample(times)[1]) * period
    steps = np.abs(capped.plan.sample(times)[1]) * period
    assert free_steps.max() > 0.002  # the cap binds: without it the excitation steps further
    assert steps.max() <= config.velocity_fraction * 0.002 + 1e-12
    sent = [capped.commands(t) for t in np.arange(0.0, config.duration_s, period)]
    positions = np.array([decode_multi_array(m[0], np.float64)[1] for m in sent if m])
    assert len(positions) > 300
    assert np.abs(np.diff(positions, axis=0)).max() <= 0.002


@pytest.mark.parametrize("interface", ["position", "trajectory"])
def test_no_command_steps_past_the_cap_even_after_a_stall(interface):
    """The exciter's commands are answers to joint states: when the states stop for 0.45 s (an
    executor stall) the plan moves on meanwhile. No command may then jump to it: every position
    sent is within one step (the cap, 0.01 rad per 1 / point_rate_hz) of the one before, the first
    of the start pose; the position stream catches up at that speed and ends at the start pose, and
    a trajectory sent late is stamped to start after it is sent (not mid-way)."""
    robot = load_robot("arm7")
    config = ExcitationConfig(duration_s=8.0, ramp_s=1.0, velocity_fraction=1.0)
    cap = 0.01
    period = 1.0 / config.point_rate_hz
    # A filter made for another period (the simulator's): the exciter steps per its own period.
    exciter = Exciter(
        config, robot, interface, safety_filter(robot, 0.002, max_position_step=cap, section="exciter")
    )
    stall = 0.45
    # A trajectory goes out once, at the first state: its stall is between planning and sending.
    exciter.start(-(TRAJECTORY_LEAD_S + stall) if interface == "trajectory" else 0.0, robot.home)
    times = [k * period for k in range(int(3.0 / period))]  # states every period, then none for 0.45 s
    times += [times[-1] + stall + k * period for k in range(int(8.0 / period))]
    sent = []
    for now in times:
        for message in exciter.commands(now):
            sent.append((now, message))
        if exciter.finished(now):
            break
    assert exciter.finished(times[-1])
    if interface == "trajectory":
        ((now, message),) = sent
        decoded = decode_joint_trajectory(message)
        positions = np.array([p.positions for p in decoded.points])
        assert decoded.stamp_ns >= round(now * 1e9)  # never stamped in the past: it starts from the top
    else:
        positions = np.array([decode_multi_array(m, np.float64)[1] for _, m in sent])
        sent_s = np.array([t for t, _ in sent])
        planned, _, _ = exciter.plan.sample(sent_s + period)
        resumed = int(np.searchsorted(sent_s, 3.0))
        assert np.abs(planned[resumed] - positions[resumed - 1]).max() > 2 * cap  # the stall left it behind
        on_plan = np.all(np.abs(positions - planned) < 1e-12, axis=1)
        assert not on_plan[resumed] and on_plan[resumed:].any()
        assert sent_s[resumed + np.argmax(on_plan[resumed:])] < 3.0 + stall + 1.0  # back on it within 1 s
    steps = np.abs(np.diff(np.vstack([robot.home, positions]), axis=0))
    assert steps.max() <= cap + 1e-12, steps.max()
    np.testing.assert_allclose(positions[-1], robot.home, atol=1e-12)


def test_encode_joint_trajectory_matches_rclpy():
    from rclpy.serialization import deserialize_message
    from trajectory_msgs.msg import JointTrajectory

    names = ["a", "bc", "def"]
    positions = np.arange(6.0).reshape(2, 3)
    message = deserialize_message(
        encode_joint_trajectory(names, 1_500_000_001, [20_000_000, 3_000_000_000], positions, -positions),
        JointTrajectory,
    )
    assert list(message.joint_names) == names
    assert message.header.stamp.sec == 1 and message.header.stamp.nanosec == 500_000_001
    assert [list(p.positions) for p in message.points] == positions.tolist()
    assert [list(p.velocities) for p in message.points] == (-positions).tolist()
    assert [list(p.accelerations) for p in message.points] == [[], []]
    assert [(p.time_from_start.sec, p.time_from_start.nanosec) for p in message.points] == [
        (0, 20_000_000),
        (3, 0),
    ]


@pytest.mark.parametrize("interface", ["trajectory", "position"])
def test_replayed_commands_reproduce_the_simulator_exactly(tmp_path, interface):
    """The rollout sysid fits, at the true parameters, is the simulator's own run: the commands
    replayed from the bags (two, with different excitations) as the controller executed them,
    delay included."""
    robot = simulated_robot(interface)
    bags = [
        record_excitation(
            tmp_path / f"bag{seed}", robot, ExcitationConfig(duration_s=5.0, ramp_s=1.0, seed=seed), 0.2
        )
        for seed in (0, 1)
    ]
    nominal = load_robot("arm7")
    runs = [read_run(bag, nominal) for bag in bags]
    assert all(run.interface == interface and run.rejected == 0 for run in runs)
    history = 26
    windows = split_windows(make_windows(runs, nominal, 1.0, history), 4, 100.0, 1.0)
    assert len(windows) >= 8  # 1 s windows of both bags
    unknowns = make_unknowns(nominal, SysidConfig().fit, 0.05)
    problem = Problem(nominal, robot_spec("arm7"), unknowns, windows, history, 0.1, 1)
    truth = parse_model_parameters(PERTURBED)
    x_true = np.array(
        [(truth.joints[u.joint][u.kind] if u.joint else truth.command_delay_s) / u.unit for u in unknowns]
    )
    recorded = [np.hstack([w.positions, w.velocities]) for w in problem.windows["fit"]]
    for which, x, bound in (("true", x_true, 1e-8), ("nominal", problem.x_nominal, None)):
        errors = [np.abs(p - r).max() for p, r in zip(problem.predictions("fit", x), recorded, strict=True)]
        if bound is not None:
            assert max(errors) < bound, which
        else:
            assert max(errors) > 1e-3, which  # the data tells the robots apart


def write_bag(path: Path, names: list[str], positions: np.ndarray, command: bytes | None) -> Path:
    """States at 500 Hz with ``names``, and one trajectory command after the first state."""
    topics = [("/joint_states", JOINT_STATE_TYPE, STREAM_QOS), (CLOCK_TOPIC, CLOCK_TYPE, STREAM_QOS)]
    if command is not None:
        topics.append(("/joint_trajectory", "trajectory_msgs/msg/JointTrajectory", STREAM_QOS))
    encoder = JointStateEncoder(names)
    with BagWriter(path, topics) as bag:
        for k, row in enumerate(positions):
            time_ns = 2_000_000 * (k + 1)
            bag.write(CLOCK_TOPIC, time_ns, clock_bytes(time_ns))
            bag.write(
                "/joint_states", time_ns, encoder.encode(time_ns, row, np.zeros_like(row), np.zeros_like(row))
            )
            if k == 0 and command is not None:
                bag.write("/joint_trajectory", time_ns, command)
    return path


def corrupt_chunk(bag: Path) -> Path:
    """Damage ``bag`` as a torn write does: the first record in the first chunk of its largest MCAP
    file gets an absurd length (every byte 0xff)."""
    mcap = max(bag.glob("*.mcap"), key=lambda f: f.stat().st_size)
    data = bytearray(mcap.read_bytes())
    offset = 8  # past the magic: records of opcode (1 byte), length (u64), content
    while data[offset] != 0x06:  # a chunk
        offset += 9 + struct.unpack_from("<Q", data, offset + 1)[0]
    # Chunk content: start, end, uncompressed size (u64 each), crc (u32), compression (string),
    # then the records' length (u64) and the records, each again opcode and length.
    compression = struct.unpack_from("<I", data, offset + 9 + 28)[0]
    first = offset + 9 + 32 + compression + 8
    data[first + 1 : first + 9] = b"\xff" * 8
    mcap.write_bytes(bytes(data))
    return bag


def with_states(
    source: Path, bag: Path, states: Callable[[int, int, bytes], list[tuple[int, bytes]]]
) -> Path:
    """``source`` copied to ``bag``, its k-th joint state (at time_ns, bytes data) replaced by the
    (time_ns, bytes) list ``states(k, time_ns, data)`` returns."""
    with Reader(source) as reader:
        topics = [(c.topic, c.msgtype, STREAM_QOS) for c in reader.connections]
        messages = [(c.topic, t, bytes(data)) for c, t, data in reader.messages()]
    count = 0
    with BagWriter(bag, topics) as writer:
        for topic, time_ns, data in sorted(messages, key=lambda m: m[1]):
            if topic != "/joint_states":
                writer.write(topic, time_ns, data)
                continue
            for at_ns, message in states(count, time_ns, data):
                writer.write(topic, at_ns, message)
            count += 1
    return bag


def test_a_fit_skips_states_of_other_joints_and_bad_samples(tmp_path):
    """A bag as common robots record it: a gripper driver publishes its own joints on /joint_states
    too (between the arm's states), one arm state holds NaN, one has no positions, one an infinite
    velocity. The reader skips and counts those, keeps every other state as it was, and the fit
    runs on them: the command delay, the robot's only difference from nominal, comes out right."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState

    robot = load_robot("arm7")
    clean = record_excitation(
        tmp_path / "clean",
        simulated_robot(parameters={"command_delay_s": 0.006}),
        ExcitationConfig(duration_s=6.0, ramp_s=1.0),
        0.2,
    )
    gripper = JointStateEncoder(["gripper_left", "gripper_right"])
    nan, positionless, infinite = 500, 1000, 1500

    def states(k: int, time_ns: int, data: bytes) -> list[tuple[int, bytes]]:
        if k in (nan, infinite):
            position, velocity = robot.home.copy(), np.zeros(robot.num_joints)
            (position if k == nan else velocity)[2] = np.nan if k == nan else np.inf
            data = JointStateEncoder(robot.joint_names).encode(time_ns, position, velocity, velocity)
        elif k == positionless:
            message = JointState(name=list(robot.joint_names), velocity=[0.0] * robot.num_joints)
            message.header.stamp.sec, message.header.stamp.nanosec = divmod(time_ns, 1_000_000_000)
            data = serialize_message(message)
        half = time_ns + 1_000_000  # half a control period later
        return [(time_ns, data), (half, gripper.encode(half, [0.01, 0.01], [0.0, 0.0], [0.0, 0.0]))]

    bag = with_states(clean, tmp_path / "bag", states)
    expected = read_run(clean, robot)
    run = read_run(bag, robot)
    assert (run.foreign, run.invalid) == (len(expected.times), 3)
    kept = np.delete(np.arange(len(expected.times)), [nan, positionless, infinite])
    np.testing.assert_array_equal(run.times, expected.times[kept])
    np.testing.assert_array_equal(run.positions, expected.positions[kept])
    np.testing.assert_array_equal(run.velocities, expected.velocities[kept])

    lines: list[str] = []
    output = tmp_path / "out"
    config = SysidConfig(
        bags=[str(bag)],
        robot=ARM7,
        output_dir=str(output),
        fit=["command_delay_s"],
        window_s=0.5,
        max_iterations=5,
    )
    run_sysid(config, log=lines.append)
    assert (
        f"skipped {len(expected.times)} states without the robot's joints (another publisher on the "
        "topic), 3 states with missing or non-finite positions or velocities" in lines[0]
    ), lines
    summary = json.loads((output / "sysid.json").read_text())
    assert summary["bags"][0]["states_skipped"] == {"without_robot_joints": len(expected.times), "invalid": 3}
    delay = summary["parameters"]["command_delay_s"]["identified"]
    assert abs(delay - 0.006) < summary["physics_dt"] / 2, delay


def hold(positions: np.ndarray) -> bytes:
    robot = load_robot("arm7")
    return encode_joint_trajectory(robot.joint_names, 0, [100_000_000], [positions])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("a folder", r"bag .*not_a_bag is not a rosbag2 bag \(no metadata.yaml\)"),
        ("no bag", r"bag .*missing does not exist"),
        ("no commands", r"bag .* holds no commands \(no trajectory_msgs/msg/JointTrajectory or std_msgs"),
        ("no robot joints", r"bag .*: /joint_states lacks the robot's joints joint1, joint2"),
        ("no finite states", r"bag .*: none of the 6000 states on /joint_states with the robot's joints has"),
        ("a corrupt chunk", r"bag .*bag cannot be read: OverflowError: "),
        ("too short", r"the bags are too short: .* 36 parameters need 3600"),
        ("still", r"joints that never move: joint1, joint2, joint3, joint4, joint5, joint6, joint7"),
    ],
)
def test_bad_input_is_refused_in_one_line_and_writes_nothing(tmp_path, case, message):
    robot = load_robot("arm7")
    rest = np.tile(robot.home, (6000, 1))
    if case == "a folder":
        bag = tmp_path / "not_a_bag"
        bag.mkdir()
        (bag / "notes.txt").write_text("not a bag")
    elif case == "no bag":
        bag = tmp_path / "missing"
    elif case == "no commands":
        bag = write_bag(tmp_path / "bag", list(robot.joint_names), rest, None)
    elif case == "no robot joints":
        bag = write_bag(tmp_path / "bag", ["a", "b", "joint3"], rest[:, :3], hold(robot.home))
    elif case == "no finite states":
        rest[:, 4] = np.nan  # joint5's encoder is gone
        bag = write_bag(tmp_path / "bag", list(robot.joint_names), rest, hold(robot.home))
    elif case == "a corrupt chunk":
        bag = corrupt_chunk(write_bag(tmp_path / "bag", list(robot.joint_names), rest, hold(robot.home)))
    elif case == "too short":
        bag = record_excitation(
            tmp_path / "bag", simulated_robot(), ExcitationConfig(duration_s=4.0, ramp_s=0.5)
        )
    else:
        bag = write_bag(tmp_path / "bag", list(robot.joint_names), rest, hold(robot.home))
    output = tmp_path / "out"
    with pytest.raises((SysidInputError, ConfigError), match=message) as error:
        run_sysid(SysidConfig(bags=[str(bag)], robot=ARM7, output_dir=str(output)))
    assert "\n" not in str(error.value)
    assert not output.exists()


def test_without_the_sysid_extra_the_job_says_how_to_install_it(tmp_path, monkeypatch):
    import mujoco.sysid

    monkeypatch.delattr(mujoco.sysid, "Parameter")  # what `from mujoco import sysid` gives without its deps
    bag = record_excitation(tmp_path / "bag", simulated_robot(), ExcitationConfig(duration_s=4.0, ramp_s=0.5))
    output = tmp_path / "out"
    with pytest.raises(SysidInputError) as error:
        run_sysid(SysidConfig(bags=[str(bag)], robot=ARM7, output_dir=str(output)))
    assert str(error.value) == "the sysid extra is not installed: pip install 'mujoco[sysid]'"
    assert identify_module.SYSID_MISSING == str(error.value)
    assert not output.exists()


def test_a_bag_in_the_drivers_joint_names_is_read_through_the_robot_files_map(tmp_path):
    """A robot whose drivers prefix its joints (fr3_joint1 ...) is excited and recorded in those
    names; the reader takes them back to the model's joints."""
    robot = load_robot("arm7")
    names = [f"fr3_{name}" for name in robot.joint_names]
    positions = np.tile(robot.home, (50, 1)) + np.linspace(0, 0.1, 50)[:, None]
    command = encode_joint_trajectory(names, 0, [100_000_000], [robot.home])
    bag = write_bag(tmp_path / "bag", names, positions, command)
    run = read_run(bag, robot, driver_names=names)
    np.testing.assert_allclose(run.positions, positions)
    assert len(run.commands) == 1
    with pytest.raises(SysidInputError, match="lacks the robot's joints"):
        read_run(bag, robot)


def test_what_the_data_does_not_pin_stays_nominal_unless_the_data_rules_nominal_out():
    """Three unknowns of a fit: one pinned (written, re-adjusted for what is fixed), one the data barely
    sees (fixed at nominal, with the reason) and one not pinned to 10 % whose nominal value the data
    still rules out (written as fitted)."""
    unknowns = [
        Unknown("a.kp", "a", "kp", 1.0, 0.1, 10.0, 1.0),
        Unknown("a.armature", "a", "armature", 1.0, 0.0, 10.0, 1.0),
        Unknown("a.frictionloss", "a", "frictionloss", 1.0, 0.0, 10.0, 1.0),
    ]
    values = {"a.kp": 2.0, "a.armature": 1.5, "a.frictionloss": 3.0}
    half_widths = {"a.kp": 0.05, "a.armature": 1.0, "a.frictionloss": 0.5}
    moved = dict.fromkeys(values, 0.0)
    sigma = 1e-3
    # J'J: kp well seen and coupled to armature, armature barely, frictionloss seen 4x the noise.
    hessian = np.array([[4.0, 2e-7, 0.0], [2e-7, 1e-7, 0.0], [0.0, 0.0, 16 * sigma**2]])
    chosen = select(unknowns, values, half_widths, {}, moved, hessian, sigma)
    assert chosen.reasons["a.kp"] is None and chosen.reasons["a.frictionloss"] is None
    assert "does not pin it (95 % interval ±67 %)" in chosen.reasons["a.armature"]
    assert chosen.values["a.armature"] == 1.0
    assert chosen.values["a.frictionloss"] == 3.0
    # fixing armature 0.5 lower moves kp by -H_ka / H_kk * (-0.5)
    assert chosen.values["a.kp"] == pytest.approx(2.0 + 0.5 * 2e-7 / 4.0)


def test_an_interval_the_rolled_out_cost_does_not_bear_out_pins_nothing(tmp_path):
    """A Jacobian can claim curvature the cost does not have (one CI bag claimed the wrist joint7's kp
    within 1.6 % at half its true value). Every interval that pins an unknown is checked by rolling
    out the step it says the data would see: the data's own intervals stand, a claimed one that
    the rolled-out cost does not bear out becomes unbounded, and the unknown is not pinned."""
    nominal = load_robot("arm7")
    excitation = ExcitationConfig(duration_s=5.0, ramp_s=1.0)
    bag = record_excitation(tmp_path / "bag", simulated_robot(), excitation, 0.2)
    history = 26
    windows = split_windows(make_windows([read_run(bag, nominal)], nominal, 1.0, history), 4, 100.0, 1.0)
    unknowns = make_unknowns(nominal, SysidConfig().fit, 0.05)
    problem = Problem(nominal, robot_spec("arm7"), unknowns, windows, history, 0.1, 1)
    truth = parse_model_parameters(PERTURBED)
    x = np.array(
        [(truth.joints[u.joint][u.kind] if u.joint else truth.command_delay_s) / u.unit for u in unknowns]
    )
    step = 1e-5  # the data's Jacobian at the truth, by finite differences
    residuals, _, _ = problem.residual_fn("fit", prior=False)(
        np.hstack([x[:, None], x[:, None] + step * np.eye(len(x))]), problem.params.copy()
    )
    rows = np.concatenate(residuals)
    jacobian = (rows[:, 1:] - rows[:, :1]) / step
    half_widths, sums = confidence(unknowns, rows[:, 0], jacobian)
    values = {u.name: float(v) * u.unit for u, v in zip(unknowns, x, strict=True)}
    names = [u.name for u in unknowns]
    claim = names.index("joint7.kp")
    hessian = jacobian.T @ jacobian + PRIOR_WEIGHT**2 * np.eye(len(x))
    hessian[claim, claim] += 1e3  # curvature the cost does not have
    claimed = dict(half_widths)
    unit = unknowns[claim].unit
    claimed["joint7.kp"] = 1.96 * NOISE_FLOOR * np.sqrt(np.linalg.inv(hessian)[claim, claim]) * unit
    fit = Fit(
        values=values,
        half_widths=claimed,
        sum_half_widths=sums,
        moved=dict.fromkeys(names, 0.0),
        hessian=hessian,
        sigma=NOISE_FLOOR,
        iterations=0,
        log="",
    )
    assert pinned(unknowns[claim], values, claimed, fit.moved)
    result = checked(problem, fit)
    assert result.half_widths["joint7.kp"] == math.inf
    assert not pinned(unknowns[claim], values, result.half_widths, fit.moved)
    stood = [u.name for u in unknowns if u.name != "joint7.kp" and pinned(u, values, claimed, fit.moved)]
    assert {"joint2.kp", "joint4.kp", "command_delay_s"} <= set(stood), stood
    assert all(result.half_widths[name] == claimed[name] for name in stood)


def test_validation_bags_are_never_fitted_and_are_reported(tmp_path):
    """A faster run of another kind, given as a validation bag: its windows are only predicted, and
    sysid.json, the report and the log line give nominal against identified on them."""
    robot = simulated_robot()
    bag = record_excitation(tmp_path / "bag", robot, ExcitationConfig(duration_s=10.0, ramp_s=1.0), 0.2)
    faster = ExcitationConfig(duration_s=6.0, ramp_s=1.0, seed=3, max_frequency_hz=4.0, max_acceleration=20.0)
    other = record_excitation(tmp_path / "other", robot, faster, 0.2)
    lines: list[str] = []
    config = SysidConfig(
        bags=[str(bag)],
        validation_bags=[str(other)],
        robot=ARM7,
        output_dir=str(tmp_path / "out"),
        fit=["kp", "command_delay_s"],
        window_s=1.0,
        max_iterations=10,
    )
    result = run_sysid(config, log=lines.append)["result"]
    validation = [w for w in result.windows if w.part == "validation"]
    assert validation and all(w.start_s < read_run(other, load_robot("arm7")).times[-1] for w in validation)
    assert any("to validate on" in line for line in lines), lines
    summary = json.loads((tmp_path / "out" / "sysid.json").read_text())
    errors = summary["errors"]["validation"]
    assert errors["nominal"]["windows"] == len(validation)
    assert errors["ratio"] < 0.5, errors
    assert [b["path"] for b in summary["validation_bags"]] == [str(other)]
    assert [b["path"] for b in summary["bags"]] == [str(bag)]
    assert "validation joint position error" in (tmp_path / "out" / "robot.yaml").read_text()
