"""The simulator node as its own process, driven over real DDS by a test client."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Duration, Time
from nav_msgs.msg import Odometry
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState
from sim_bridge_core.models import load_robot
from std_msgs.msg import Float32MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

ARM = load_robot("arm7")
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def trajectory(names, points, stamp: Time | None = None):
    """points: [(seconds, positions, velocities or None)]"""
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp = stamp or Time()
    for seconds, positions, velocities in points:
        point = JointTrajectoryPoint(positions=list(positions), velocities=list(velocities or []))
        point.time_from_start = Duration(sec=int(seconds), nanosec=round(seconds % 1 * 1e9))
        msg.points.append(point)
    return msg


def positions_by_name(msg: JointState) -> dict[str, float]:
    return dict(zip(msg.name, msg.position, strict=True))


def wait_at(client, states, names, target, tolerance, timeout=15.0):
    def reached():
        current = positions_by_name(states[-1]) if states else None
        return current and all(abs(current[n] - t) < tolerance for n, t in zip(names, target, strict=True))

    try:
        client.wait_until(reached, timeout, f"joints at {target}")
    except AssertionError as exc:
        last = positions_by_name(states[-1]) if states else None
        raise AssertionError(f"{exc}; last joint_states {last}") from None


def test_single_world_is_a_joint_trajectory_controller(start_node, ros_client):
    """A ros2_control-style client drives the single world by topic alone."""
    sim = start_node("sim_bridge_sim", "simulator", model="arm7", mode="realtime", real_time_factor=4.0)
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    clock = ros_client.collect(Clock, "/clock", QoSProfile(depth=100))
    ros_client.wait_until(lambda: states, what="joint_states")
    assert list(states[-1].name) == list(ARM.joint_names)
    assert len(states[-1].position) == len(states[-1].velocity) == len(states[-1].effort) == 7

    # Names in another order than the model's; two points, linear interpolation.
    order = list(reversed(ARM.joint_names))
    goal = ARM.home[::-1] + np.linspace(-0.3, 0.3, 7)
    via = (ARM.home[::-1] + goal) / 2
    publisher = ros_client.node.create_publisher(JointTrajectory, "joint_trajectory", RELIABLE)
    ros_client.wait_until(lambda: publisher.get_subscription_count() > 0, what="simulator subscription")
    publisher.publish(trajectory(order, [(0.5, via, None), (1.0, goal, None)]))
    wait_at(ros_client, states, order, goal, tolerance=0.03)

    ros_client.wait_until(lambda: len(clock) > 20, what="/clock")
    stamps = [c.clock.sec * 10**9 + c.clock.nanosec for c in clock]
    assert np.all(np.diff(stamps) >= 0), "sim time went backwards"
    assert sim.alive()


def test_malformed_trajectories_change_nothing(start_node, ros_client):
    sim = start_node("sim_bridge_sim", "simulator", model="arm7", mode="realtime", real_time_factor=4.0)
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    publisher = ros_client.node.create_publisher(JointTrajectory, "joint_trajectory", RELIABLE)
    ros_client.wait_until(lambda: states and publisher.get_subscription_count() > 0, what="simulator")
    names = list(ARM.joint_names)
    hold = ARM.home + 0.2
    publisher.publish(trajectory(names, [(0.2, hold, None)]))
    wait_at(ros_client, states, names, hold, tolerance=0.03)  # position servos sag a little under gravity
    # Settled: the servos hold still (a loaded host can publish slowly, so wait on motion, not on a count).
    ros_client.wait_until(lambda: np.max(np.abs(states[-1].velocity)) < 1e-3, timeout=30.0, what="settling")
    held = [positions_by_name(states[-1])[n] for n in names]

    far = ARM.home - 0.4
    bad = [
        trajectory(names, [(0.2, far[:6], None)]),  # length mismatch
        trajectory([*names[:6], "elbow_of_someone_else"], [(0.2, far, None)]),  # unknown joint
        trajectory([*names[:6], names[0]], [(0.2, far, None)]),  # duplicate joint
        trajectory(names, [(0.2, [*far[:6], float("nan")], None)]),  # NaN
        trajectory(names, [(0.2, [*far[:6], float("inf")], None)]),  # inf
        trajectory(names, []),  # no points
        trajectory(names, [(0.4, far, None), (0.2, far, None)]),  # time_from_start not increasing
        trajectory(names[:3], [(0.2, far[:3], None)]),  # partial goal while not allowed
    ]
    for message in bad:
        publisher.publish(message)
    sim.wait_for_output("rejected joint_trajectory")
    count_before = len(states)
    ros_client.wait_until(lambda: len(states) > count_before + 50, timeout=30.0, what="more joint_states")
    assert np.allclose([positions_by_name(states[-1])[n] for n in names], held, atol=1e-3)
    assert sim.alive()
    # Throttled: one line per second at most, not one per bad message.
    assert sim.output().count("rejected joint_trajectory") < len(bad)

    # Out of limits: clamped to the limit, with a warning.
    beyond = ARM.upper + 1.0
    publisher.publish(trajectory(names, [(0.3, beyond, None)]))
    wait_at(ros_client, states, names, ARM.upper, tolerance=0.03)
    sim.wait_for_output("clamped")


def test_lockstep_batch_protocol(start_node, ros_client):
    """Every batch/joint_states is answered by a batch/joint_trajectory echoing its stamp."""
    num_envs, control_dt = 4, 0.02
    sim = start_node(
        "sim_bridge_sim",
        "simulator",
        model="arm7",
        task="reach",
        num_envs=num_envs,
        mode="lockstep",
        control_dt=control_dt,
        mirror_envs=[1, 3],
        lockstep_resend_s=0.2,
    )
    states = ros_client.collect(JointState, "batch/joint_states", QoSProfile(depth=100))
    tasks = ros_client.collect(Float32MultiArray, "batch/task", QoSProfile(depth=100))
    mirror = ros_client.collect(JointState, "env_3/joint_states", RELIABLE)
    commands = ros_client.node.create_publisher(
        JointTrajectory, "batch/joint_trajectory", QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    )
    ros_client.wait_until(lambda: states and tasks, what="first batch state")
    first = states[-1]
    assert len(first.name) == num_envs * 7
    assert first.name[:2] == ["env_0/joint1", "env_0/joint2"] and first.name[-1] == "env_3/joint7"

    # Unanswered, the simulator holds the state (resending the same stamp).
    ros_client.wait_until(lambda: len(states) >= 3, what="resent states")
    assert {(s.header.stamp.sec, s.header.stamp.nanosec) for s in states} == {(0, 0)}

    names = list(first.name)
    target = np.tile(ARM.home + 0.1, num_envs)
    answered = []
    for _ in range(10):
        state = states[-1]
        stamp = state.header.stamp
        if answered and (stamp.sec, stamp.nanosec) == answered[-1]:
            ros_client.wait_until(lambda s=stamp: states[-1].header.stamp != s, what="next state")
            continue
        commands.publish(trajectory(names, [(0.0, target, None)], stamp=stamp))
        answered.append((stamp.sec, stamp.nanosec))
        ros_client.wait_until(lambda s=stamp: states[-1].header.stamp != s, what="next state")
    times = sorted({s.header.stamp.sec + s.header.stamp.nanosec * 1e-9 for s in states})
    assert np.allclose(np.diff(times), control_dt), times
    assert len(times) >= 10

    # ``step`` names the state the signals belong to: its stamp in control periods.
    last = states[-1].header.stamp
    last_step = round((last.sec + last.nanosec * 1e-9) / control_dt)
    ros_client.wait_until(lambda: tasks[-1].data[-1] == last_step, what="batch/task of the last state")
    layout = tasks[-1].layout.dim
    assert [d.label for d in layout] == [
        "env",
        "reward,terminated,truncated,goal_x,goal_y,goal_z,success,step",
    ]
    assert [d.size for d in layout] == [num_envs, 8]
    signals = np.array(tasks[-1].data).reshape(num_envs, 8)
    assert np.all(signals[:, 0] < 1.0) and np.all((signals[:, 3:6] > -1) & (signals[:, 3:6] < 1))
    assert set(signals[:, 6]) <= {0.0, 1.0} and set(signals[:, 7]) == {last_step}
    assert {t.data[-1] for t in tasks} == {round(t / control_dt) for t in times}
    ros_client.wait_until(lambda: mirror, what="env_3/joint_states")
    assert list(mirror[-1].name) == list(ARM.joint_names)
    topics = dict(ros_client.node.get_topic_names_and_types())
    assert "/env_1/joint_trajectory" in topics and "/env_2/joint_states" not in topics
    assert sim.alive()


def test_pause_step_reset(start_node, ros_client):
    control_dt = 0.01
    start_node(
        "sim_bridge_sim",
        "simulator",
        model="pendulum",
        task="pendulum",
        mode="realtime",
        control_dt=control_dt,
    )
    clock = ros_client.collect(Clock, "/clock", QoSProfile(depth=1000))
    ros_client.wait_until(lambda: len(clock) > 5, what="/clock")

    def now():
        return clock[-1].clock.sec + clock[-1].clock.nanosec * 1e-9

    refused = ros_client.call(Trigger, "/simulator/step", Trigger.Request())
    assert not refused.success and "not paused" in refused.message
    assert ros_client.call(SetBool, "/simulator/pause", SetBool.Request(data=True)).success
    # Messages published just before the pause may still be in flight: wait for quiet.
    count = 0
    while len(clock) != count:
        count = len(clock)
        time.sleep(0.3)
    paused_at = now()
    assert ros_client.call(Trigger, "/simulator/step", Trigger.Request()).success
    ros_client.wait_until(lambda: len(clock) > count, what="stepped clock")
    assert now() == pytest.approx(paused_at + control_dt, abs=1e-9)

    before_reset = now()
    assert ros_client.call(Trigger, "/simulator/reset", Trigger.Request()).success
    assert ros_client.call(SetBool, "/simulator/pause", SetBool.Request(data=False)).success
    ros_client.wait_until(lambda: now() > before_reset + 0.1, what="clock running again")
    stamps = [c.clock.sec + c.clock.nanosec * 1e-9 for c in clock]
    assert np.all(np.diff(stamps) >= 0), "sim time went backwards across reset"


def test_in_lockstep_a_step_while_paused_waits_for_its_own_answer(start_node, ros_client):
    """An answer to the state before a ``~/step`` does not answer the stepped one: after the
    pause, the simulator waits for it instead of stepping on with old targets."""
    control_dt = 0.02
    start_node("sim_bridge_sim", "simulator", model="arm7", mode="lockstep", control_dt=control_dt)
    states = ros_client.collect(JointState, "batch/joint_states", QoSProfile(depth=100))
    commands = ros_client.node.create_publisher(JointTrajectory, "batch/joint_trajectory", RELIABLE)
    ros_client.wait_until(lambda: states and commands.get_subscription_count() > 0, what="first batch state")
    assert ros_client.call(SetBool, "/simulator/pause", SetBool.Request(data=True)).success
    first = states[-1]
    commands.publish(trajectory(list(first.name), [(0.0, ARM.home, None)], stamp=first.header.stamp))
    time.sleep(0.5)  # the answer is in while paused
    assert ros_client.call(Trigger, "/simulator/step", Trigger.Request()).success
    assert ros_client.call(SetBool, "/simulator/pause", SetBool.Request(data=False)).success
    time.sleep(1.0)

    def stamp_s(state: JointState) -> float:
        return state.header.stamp.sec + state.header.stamp.nanosec * 1e-9

    assert max(stamp_s(s) for s in states) == pytest.approx(stamp_s(first) + control_dt, abs=1e-9)


def test_any_mjcf_by_path(tmp_path, start_node, ros_client):
    """A user model with a torque-driven slide joint takes position targets through PD."""
    model = tmp_path / "cart.xml"
    model.write_text(
        """<mujoco model="cart"><worldbody><body name="cart">
             <joint name="rail" type="slide" axis="1 0 0" range="-1 1"/>
             <geom type="box" size="0.1 0.1 0.05" mass="2"/></body></worldbody>
           <actuator><motor joint="rail" ctrlrange="-50 50"/></actuator></mujoco>"""
    )
    start_node("sim_bridge_sim", "simulator", model=str(model), mode="realtime", real_time_factor=4.0)
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    publisher = ros_client.node.create_publisher(JointTrajectory, "joint_trajectory", RELIABLE)
    ros_client.wait_until(lambda: states and publisher.get_subscription_count() > 0, what="simulator")
    assert list(states[-1].name) == ["rail"]
    publisher.publish(trajectory(["rail"], [(1.0, [0.5], None)]))
    wait_at(ros_client, states, ["rail"], [0.5], tolerance=0.01)


BAD_STARTS = {
    "num_envs": {"num_envs": 0},
    "model": {"model": "/no/such/robot.xml"},
    "task": {"task": "juggle"},
    "backend": {"backend": "quantum"},
    "control_dt": {"control_dt": 0.003},
    "mirror_envs": {"num_envs": 2, "mirror_envs": [5]},
    "mode": {"mode": "slow"},
}


@pytest.mark.parametrize("key", BAD_STARTS)
def test_bad_start_fails_with_one_line(key, start_node):
    process = start_node("sim_bridge_sim", "simulator", **BAD_STARTS[key])
    try:
        process.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"simulator kept running with bad {key}")
    lines = [line for line in process.output().splitlines() if line.strip()]
    assert process.proc.returncode == 2
    assert len(lines) == 1 and f"simulator.{key}" in lines[0], lines


def test_unloadable_mjcf_fails_with_one_line(tmp_path, start_node):
    broken = tmp_path / "broken.xml"
    broken.write_text("<mujoco><worldbody><body><geom type='sphere'/></bodyy></worldbody></mujoco>")
    process = start_node("sim_bridge_sim", "simulator", model=str(broken))
    process.proc.wait(timeout=30)
    lines = [line for line in process.output().splitlines() if line.strip()]
    assert process.proc.returncode == 2
    assert len(lines) == 1 and "simulator.model" in lines[0] and "broken.xml" in lines[0], lines


def test_parameters_have_descriptors_and_validated_runtime_changes(start_node, ros_client):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, SetParameters

    sim = start_node("sim_bridge_sim", "simulator", model="arm7", mode="realtime", real_time_factor=4.0)
    described = ros_client.call(
        DescribeParameters,
        "/simulator/describe_parameters",
        DescribeParameters.Request(names=["num_envs", "mode", "allow_partial_joints_goal"]),
    ).descriptors
    num_envs, mode, partial = described
    assert num_envs.read_only and num_envs.integer_range[0].from_value == 1 and num_envs.description
    assert "lockstep" in mode.additional_constraints
    assert not partial.read_only

    def set_parameter(name, value):
        request = SetParameters.Request(
            parameters=[
                Parameter(
                    name=name,
                    value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
                    if isinstance(value, bool)
                    else ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value),
                )
            ]
        )
        return ros_client.call(SetParameters, "/simulator/set_parameters", request).results[0]

    assert not set_parameter("num_envs", 8).successful  # read-only after start-up
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    publisher = ros_client.node.create_publisher(JointTrajectory, "joint_trajectory", RELIABLE)
    ros_client.wait_until(lambda: states and publisher.get_subscription_count() > 0, what="simulator")
    start = positions_by_name(states[-1])["joint1"]
    publisher.publish(trajectory(["joint1"], [(0.3, [start + 0.4], None)]))  # partial: refused
    count = len(states)
    ros_client.wait_until(lambda: len(states) > count + 100, timeout=30.0, what="joint_states")
    assert abs(positions_by_name(states[-1])["joint1"] - start) < 0.01
    sim.wait_for_output("allow_partial_joints_goal is false")
    assert set_parameter("allow_partial_joints_goal", True).successful
    time.sleep(1.1)  # past the log throttle, so a rejection of the next goal would show
    publisher.publish(trajectory(["joint1"], [(0.3, [start + 0.4], None)]))
    try:
        wait_at(ros_client, states, ["joint1"], [start + 0.4], tolerance=0.02)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nsimulator log:\n{sim.output()}") from None


def test_randomization_applied_is_latched_and_bad_specs_are_refused(start_node, ros_client):
    from pathlib import Path

    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.qos import DurabilityPolicy
    from std_msgs.msg import Float64MultiArray

    spec = Path(__file__).resolve().parents[3] / "config" / "randomization" / "default.yaml"
    start_node(
        "sim_bridge_sim",
        "simulator",
        model="arm7",
        task="reach",
        num_envs=3,
        mode="fast",
        randomization=str(spec),
    )
    ros_client.wait_until(
        lambda: "/simulator/set_parameters" in dict(ros_client.node.get_service_names_and_types()),
        what="simulator services",
    )
    # A late subscriber still gets the values in effect (transient local).
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    applied = ros_client.collect(Float64MultiArray, "randomization/applied", latched)
    ros_client.wait_until(lambda: applied, what="randomization/applied")
    names = applied[-1].layout.dim[1].label.split(",")
    assert applied[-1].layout.dim[0].label == "env" and "body_mass/link3" in names
    before = np.array(applied[-1].data).reshape(3, len(names))

    assert ros_client.call(Trigger, "/simulator/randomize", Trigger.Request()).success
    ros_client.wait_until(
        lambda: not np.array_equal(np.array(applied[-1].data).reshape(3, -1), before), what="resampled values"
    )

    def set_spec(text):
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=text)
        request = SetParameters.Request(parameters=[Parameter(name="randomization", value=value)])
        return ros_client.call(SetParameters, "/simulator/set_parameters", request).results[0]

    refused = set_spec("body_mass: {targets: [no_such_link], low: 0.9, high: 1.1}\n")
    assert not refused.successful and "randomization.body_mass" in refused.reason
    count = len(applied)
    assert set_spec("").successful  # randomization off: nominal physics, no columns
    ros_client.wait_until(lambda: len(applied) > count, what="applied after switching off")
    assert applied[-1].layout.dim[1].label == "" and len(applied[-1].data) == 0


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],  # the last: Ctrl-C under ros2 launch
    ids=["SIGINT", "SIGTERM", "SIGINT-twice"],
)
def test_a_signal_stops_stepping_before_the_node_goes(signals, start_node, ros_client):
    states = ros_client.collect(JointState, "/env_63/joint_states")
    simulator = start_node(  # publishing as fast as it steps, on 66 topics
        "sim_bridge_sim", "simulator", num_envs=64, mirror_envs=list(range(64)), mode="fast"
    )
    ros_client.wait_until(lambda: len(states) > 10, timeout=30, what="joint_states")
    for sig in signals:
        simulator.proc.send_signal(sig)
        time.sleep(0.05)
    assert simulator.wait_exit(20) == 0, simulator.output()
    for trouble in ("Traceback", "Failed to publish", "context is invalid"):
        assert trouble not in simulator.output()


TEST_MODELS = Path(__file__).resolve().parents[2] / "sim_bridge_core" / "test" / "models"


def test_a_floating_base_publishes_odometry_and_an_imu(start_node, ros_client):
    """Mirrored worlds of a robot on a floating base: odom, imu and batch/sensors, as a real one reads."""
    start_node(
        "sim_bridge_sim",
        "simulator",
        model=str(TEST_MODELS / "floating_imu.xml"),
        num_envs=2,
        mirror_envs=[1],
        mode="realtime",
    )
    odom = ros_client.collect(Odometry, "env_1/odom", RELIABLE)
    imu = ros_client.collect(Imu, "env_1/imu", RELIABLE)
    tail_imu = ros_client.collect(Imu, "env_1/tail_imu/imu", RELIABLE)
    sensors = ros_client.collect(Float32MultiArray, "batch/sensors", RELIABLE)
    states = ros_client.collect(JointState, "env_1/joint_states", RELIABLE)
    ros_client.wait_until(
        lambda: len(odom) > 60 and len(imu) > 60 and tail_imu and sensors and states, timeout=30
    )
    last_odom, last_imu = odom[-1], imu[-1]
    assert last_odom.header.frame_id == "world" and last_odom.child_frame_id == "trunk"
    assert last_odom.pose.pose.position.z == pytest.approx(0.05, abs=3e-3)  # resting on the floor
    assert last_imu.header.frame_id == "imu"
    assert last_imu.linear_acceleration.z == pytest.approx(9.81, abs=0.05)  # gravity, as an accelerometer
    assert last_imu.orientation.w == pytest.approx(1.0, abs=1e-3)
    assert tail_imu[-1].header.frame_id == "tail_imu"  # a further IMU site, on <site>/imu
    assert tail_imu[-1].linear_acceleration.z == pytest.approx(9.81, abs=0.1)
    assert list(states[-1].name) == ["tail"]
    labels = [dim.label for dim in sensors[-1].layout.dim]
    assert labels[0] == "env" and "imu/linear_acceleration_z" in labels[1].split(",")
    assert sensors[-1].layout.dim[0].size == 2


def test_the_gripper_opens_by_a_ros_command_naming_its_actuator(start_node, ros_client):
    start_node("sim_bridge_sim", "simulator", model=str(TEST_MODELS / "gripper_arm.xml"), mode="realtime")
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    commands = ros_client.node.create_publisher(JointTrajectory, "joint_trajectory", RELIABLE)
    ros_client.wait_until(lambda: commands.get_subscription_count() > 0 and states, timeout=30)
    assert list(states[-1].name) == ["shoulder", "elbow", "left_finger", "right_finger"]
    commands.publish(trajectory(["shoulder", "elbow", "gripper"], [(0.3, [0.0, 0.5, 255.0], None)]))
    wait_at(ros_client, states, ["left_finger", "right_finger"], [0.03, 0.03], 0.003)
    commands.publish(trajectory(["gripper"], [(0.3, [0.0], None)]))  # the gripper alone
    wait_at(ros_client, states, ["left_finger", "right_finger"], [0.0, 0.0], 0.003)


def test_cmd_vel_sets_a_worlds_velocity_command(start_node, ros_client):
    """Locomotion: a Twist on env_1/cmd_vel becomes world 1's task inputs (clamped into the range the
    task trains on); world 0 keeps its own."""
    from geometry_msgs.msg import Twist

    settings = "'{feet: [fl_foot, fr_foot, rl_foot, rr_foot], nominal_height: 0.21}'"  # YAML text
    start_node(
        "sim_bridge_sim",
        "simulator",
        model=str(TEST_MODELS / "quadruped.xml"),
        home="home",
        task="locomotion",
        task_settings=settings,
        num_envs=2,
        mirror_envs=[1],
        episode_length_s=1000.0,
        mode="realtime",
    )
    tasks = ros_client.collect(Float32MultiArray, "batch/task", QoSProfile(depth=100))
    command = ros_client.node.create_publisher(Twist, "env_1/cmd_vel", RELIABLE)
    ros_client.wait_until(lambda: tasks, what="batch/task")
    fields = [dim.label for dim in tasks[-1].layout.dim][1].split(",")
    columns = [fields.index(name) for name in ("cmd_linear_x", "cmd_linear_y", "cmd_angular_z")]

    def commands() -> np.ndarray:
        return np.array(tasks[-1].data).reshape(2, len(fields))[:, columns]

    drawn = commands()
    twist = Twist()
    twist.linear.x, twist.linear.y, twist.angular.z = 0.4, -2.0, 0.3

    def taken() -> bool:
        command.publish(twist)  # until discovery matched
        return np.allclose(commands()[1], [0.4, -0.3, 0.3], atol=1e-6)

    ros_client.wait_until(taken, timeout=30, what="the command in batch/task")
    np.testing.assert_allclose(commands()[0], drawn[0], atol=1e-6)
