"""The policy node in deploy mode, over real DDS: it brings the simulated arm to its goal through
each command interface, records what it did, and its safety filter holds under bad input.

The policies here are real checkpoints whose weights are set by hand rather than trained: a
linear map from the goal to joint targets (the arm's inverse kinematics linearized about one
pose), so each test knows which goals the policy can reach and runs in seconds.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosbags.highlevel import AnyReader
from sensor_msgs.msg import Image, JointState
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.contract import METADATA_KEY, PolicyContract, policy_metadata
from sim_bridge_core.deploy.deployment import safety_filter
from sim_bridge_core.deploy.policy import PolicyConfig, load_deployment
from sim_bridge_core.envs.batched import BatchedEnv
from sim_bridge_core.learning import PpoConfig, export_policy, load_checkpoint, save_checkpoint
from sim_bridge_core.learning.algorithms import make_policy
from sim_bridge_core.learning.modules import ActorCritic
from sim_bridge_core.learning.offpolicy_config import OffPolicyConfig
from sim_bridge_core.models import load_robot
from sim_bridge_core.sim.backends.cpu import CpuBackend
from sim_bridge_core.tasks import make_task
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
ARM = load_robot("arm7")
REACH = make_task("reach", ARM)
# The pose the IK is linearized at: the hand at (0.46, 0.0, 0.41), inside the goal box.
POSE = ARM.home + np.array([-0.11, 0.56, 0.1, -0.01, 0.0, 0.51, 0.36])
CENTER = REACH.kinematics(POSE[None])[0]
GOAL_COLUMNS = slice(14, 17)  # joint positions (7), velocities (7), then the goal
COMMANDS = {
    "trajectory": (JointTrajectory, "joint_trajectory"),
    "position": (Float64MultiArray, "joint_commands"),
}


def jacobian(q: np.ndarray, step: float = 1e-6) -> np.ndarray:
    columns = []
    for j in range(len(q)):
        dq = np.zeros_like(q)
        dq[j] = step
        columns.append(
            (REACH.kinematics((q + dq)[None])[0] - REACH.kinematics((q - dq)[None])[0]) / (2 * step)
        )
    return np.stack(columns, axis=1)


def ik_checkpoint(
    path: Path, interface: str = "trajectory", overflow: bool = False, algorithm: str = "ppo"
) -> Path:
    """A checkpoint whose deterministic policy puts the hand on goals near CENTER (linearized IK).

    ``overflow``: finite weights near float32's maximum, whose sum overflows to inf for any goal.
    ``algorithm`` sac or td3: their deployable module, whose actions tanh squashes; the IK is then
    linearized through atanh about the actions at CENTER.
    """
    env = BatchedEnv(CpuBackend(ARM, 1, 0.02), REACH, 3.0, command_interface=interface)
    pinv = np.linalg.pinv(jacobian(POSE))
    weight = np.zeros((7, REACH.observation_size))
    weight[:, GOAL_COLUMNS] = pinv / REACH.action_scale
    bias = (POSE - ARM.home - pinv @ CENTER) / REACH.action_scale
    if algorithm == "ppo":
        config = PpoConfig(actor_hidden=[], critic_hidden=[16])
    else:
        config = OffPolicyConfig(actor_hidden=[])
        center_actions = (POSE - ARM.home) / REACH.action_scale
        weight *= (1.0 / (1.0 - center_actions**2))[:, None]  # d atanh(a) / da
        bias = np.arctanh(center_actions) - weight[:, GOAL_COLUMNS] @ CENTER
    if overflow:
        weight[:, GOAL_COLUMNS.start], bias = 3e38, np.full(7, 3e38)
    model = make_policy(algorithm, REACH.observation_size, 7, config)
    layer = [module for module in model.actor.modules() if isinstance(module, torch.nn.Linear)][-1]
    with torch.no_grad():
        model.normalizer.var.fill_(0.99**2)  # (x - 0) / (0.99 + 0.01): the identity
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return save_checkpoint(path, model, config, policy_metadata(env))


def hand(state: JointState) -> np.ndarray:
    positions = dict(zip(state.name, state.position, strict=True))
    return REACH.kinematics(np.array([[positions[name] for name in ARM.joint_names]]))[0]


def send_goal(publisher, goal: np.ndarray) -> None:
    message = PointStamped()
    message.point.x, message.point.y, message.point.z = (float(v) for v in goal)
    publisher.publish(message)


@pytest.mark.parametrize(
    ("interface", "runtime", "algorithm"),
    [
        ("trajectory", "torch", "ppo"),
        ("position", "onnxruntime", "ppo"),
        ("trajectory", "torch", "td3"),
        ("position", "onnxruntime", "sac"),
    ],
)
def test_deployed_policy_brings_the_arm_to_its_goals(
    tmp_path, start_node, ros_client, interface, runtime, algorithm
):
    """Whichever algorithm trained it, a policy deploys the same way and reaches."""
    checkpoint = ik_checkpoint(tmp_path / "checkpoint.pt", interface, algorithm=algorithm)
    policy_file = checkpoint
    if runtime == "onnxruntime":
        loaded = load_checkpoint(checkpoint)
        contract = PolicyContract.of_checkpoint(loaded)
        policy_file = export_policy(loaded.build_model(), tmp_path / "export", contract)["onnx"]
    start_node("sim_bridge_sim", "simulator", model="arm7", mode="realtime", command_interface=interface)
    policy = start_node(
        "sim_bridge_policy",
        "policy",
        checkpoint=str(policy_file),
        record=True,
        output_dir=str(tmp_path / "run"),
        use_sim_time=True,  # the simulator stamps its states with sim time
        start_enabled=True,  # a simulated robot: no ~/enable to wait for
    )
    command_type, command_topic = COMMANDS[interface]
    commands = ros_client.collect(command_type, command_topic, RELIABLE)
    states = ros_client.collect(JointState, "joint_states", RELIABLE)
    goals = ros_client.node.create_publisher(PointStamped, "goal", RELIABLE)
    ros_client.wait_until(lambda: goals.get_subscription_count() > 0 and states, timeout=30, what="policy")
    policy.wait_for_output(runtime)
    assert not commands, "commands before any goal"

    for offset in ([0.03, -0.03, 0.02], [-0.04, 0.03, -0.03]):
        goal = CENTER + np.array(offset)
        send_goal(goals, goal)
        ros_client.wait_until(
            lambda goal=goal: np.linalg.norm(hand(states[-1]) - goal) < 0.02,
            timeout=15,
            what=f"the hand within 2 cm of {goal.round(3)} (now {hand(states[-1]).round(3)})",
        )
    if interface == "trajectory":
        command = commands[-1]
        assert command.header.stamp.sec == 0 and command.header.stamp.nanosec == 0
        assert command.points[0].time_from_start.nanosec == 20_000_000  # one control period ahead

    assert policy.stop() == 0
    with AnyReader([next((tmp_path / "run").glob("rollouts*"))]) as bag:
        counts = {c.topic: c.msgcount for c in bag.connections}
        types = {c.topic: c.msgtype for c in bag.connections}
    assert (
        types[f"/{command_topic}"] == f"{command_type.__module__.split('.')[0]}/msg/{command_type.__name__}"
    )
    assert counts["/goal"] == 2 and counts[f"/{command_topic}"] >= 20 and counts["/joint_states"] >= 20
    assert counts["/clock"] >= 20


def policy_alone(start_node, checkpoint: Path, *extra: str, **parameters):
    """The policy node with no robot, enabled from the start: the test publishes the joint states."""
    parameters = {"start_enabled": True, "home_ramp_s": 0.0, **parameters}
    return start_node("sim_bridge_policy", "policy", *extra, checkpoint=str(checkpoint), **parameters)


def joint_state(positions, stamp_s: float = 0.0, velocities=True) -> JointState:
    message = JointState(name=list(ARM.joint_names), position=[float(v) for v in positions])
    if velocities:
        message.velocity = [0.0] * len(positions)
    message.header.stamp = Time(sec=int(stamp_s), nanosec=round((stamp_s % 1) * 1e9))
    return message


def feed(ros_client, policy, states, goal=CENTER, period: float = 0.02, count: int = 50, stamp=None):
    """Publish ``count`` states at ``period`` (stamped now, or by ``stamp(k)``) after a goal."""
    publisher = ros_client.node.create_publisher(JointState, "joint_states", RELIABLE)
    goals = ros_client.node.create_publisher(PointStamped, "goal", RELIABLE)
    ros_client.wait_until(lambda: publisher.get_subscription_count() > 0, timeout=30, what="policy")
    policy.wait_for_output("deploying")
    send_goal(goals, goal)
    time.sleep(0.2)
    for k in range(count):
        now = ros_client.node.get_clock().now().nanoseconds / 1e9
        publisher.publish(joint_state(states, now if stamp is None else stamp(k), velocities=True))
        time.sleep(period)


def test_the_step_limit_wins_over_limits_that_exclude_the_pose(tmp_path, start_node, ros_client):
    """Limits 0.5 rad away from where the arm is: each command moves at most one period at the
    velocity limit from the measured position, toward the limits."""
    limits = np.column_stack([ARM.home + 0.5, ARM.home + 0.6]).ravel()
    policy = policy_alone(
        start_node,
        ik_checkpoint(tmp_path / "c.pt"),
        position_limits=list(limits),
        velocity_limits=[1.0],
        state_timeout_s=1.0,  # a hiccup of the feeding test on a loaded machine is not a stale robot
    )
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    feed(ros_client, policy, ARM.home, count=20)
    ros_client.wait_until(lambda: len(commands) >= 5, what="commands")
    steps = np.array([c.points[0].positions for c in commands]) - ARM.home
    np.testing.assert_allclose(steps, 1.0 * 0.02, atol=1e-9)


def test_a_non_finite_policy_output_holds_once_and_commands_nothing(tmp_path, start_node, ros_client):
    """Finite but absurd weights overflow float32 to inf: one hold at the measured pose, then silence."""
    policy = policy_alone(start_node, ik_checkpoint(tmp_path / "c.pt", overflow=True))
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    feed(ros_client, policy, ARM.home + 0.05, count=20)
    ros_client.wait_until(lambda: commands, what="the hold command")
    time.sleep(0.3)
    assert len(commands) == 1
    np.testing.assert_allclose(commands[0].points[0].positions, ARM.home + 0.05)
    policy.wait_for_output("the policy output NaN or inf")


def test_stale_stamps_hold_once(tmp_path, start_node, ros_client):
    """States stamped a second ago are stale on arrival (judged by the stamp, not the arrival)."""
    policy = policy_alone(start_node, ik_checkpoint(tmp_path / "c.pt"))
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    clock = ros_client.node.get_clock()
    feed(ros_client, policy, ARM.home, count=20, stamp=lambda k: clock.now().nanoseconds / 1e9 - 1.0)
    ros_client.wait_until(lambda: commands, what="the hold command")
    time.sleep(0.3)
    assert len(commands) == 1
    np.testing.assert_allclose(commands[0].points[0].positions, ARM.home)
    policy.wait_for_output("older than")


def test_states_without_velocities_are_refused(tmp_path, start_node, ros_client):
    policy = policy_alone(start_node, ik_checkpoint(tmp_path / "c.pt"))
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    publisher = ros_client.node.create_publisher(JointState, "joint_states", RELIABLE)
    goals = ros_client.node.create_publisher(PointStamped, "goal", RELIABLE)
    ros_client.wait_until(lambda: publisher.get_subscription_count() > 0, timeout=30, what="policy")
    send_goal(goals, CENTER)
    for _ in range(20):
        publisher.publish(joint_state(ARM.home, velocities=False))
        time.sleep(0.02)
    policy.wait_for_output("no velocities")
    assert not commands


def test_enable_false_holds_the_measured_position_then_silence(tmp_path, start_node, ros_client):
    policy = policy_alone(start_node, ik_checkpoint(tmp_path / "c.pt"))
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    feed(ros_client, policy, ARM.home + 0.02, count=10)
    ros_client.wait_until(lambda: commands, what="commands")
    assert ros_client.call(SetBool, "/policy/enable", SetBool.Request(data=False)).success
    ros_client.wait_until(
        lambda: np.allclose(commands[-1].points[0].positions, ARM.home + 0.02), what="the hold command"
    )
    count = len(commands)
    feed(ros_client, policy, ARM.home + 0.02, count=10)
    assert len(commands) == count, "commands kept coming while disabled"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"position_limits": [1.0, 0.0] * 7},
            "policy.position_limits: lower 1.0 > upper 0.0 for joint 'joint1'",
        ),
        ({"control_rate_hz": 100.0}, "policy.control_rate_hz: 100.0 Hz, but the policy was trained at 50 Hz"),
        ({"command_interface": "position"}, "policy.command_interface: position, but the policy was trained"),
        ({"model": "pendulum"}, "policy.checkpoint"),
        ({"checkpoint": "/no/such/checkpoint.pt"}, "does not exist"),
    ],
)
def test_bad_settings_fail_at_start_with_one_line(tmp_path, start_node, parameters, message):
    process = start_node(
        "sim_bridge_policy", "policy", **{"checkpoint": str(ik_checkpoint(tmp_path / "c.pt")), **parameters}
    )
    process.proc.wait(timeout=30)
    lines = [line for line in process.output().splitlines() if line.strip()]
    assert process.proc.returncode == 2 and len(lines) == 1 and message in lines[0], lines


def test_a_rate_mismatch_runs_when_allowed_and_warns(tmp_path, start_node):
    policy = start_node(
        "sim_bridge_policy",
        "policy",
        checkpoint=str(ik_checkpoint(tmp_path / "c.pt")),
        control_rate_hz=100.0,
        allow_contract_mismatch=True,
    )
    policy.wait_for_output("deploying")
    assert "trained at 50 Hz" in policy.output() and policy.alive()


# The robot deploy binds to ---------------------------------------------------------------------


def robot_file(path: Path, **config) -> Path:
    path.write_text(yaml.safe_dump({"model": "arm7", **config}))
    return path


def onnx_policy(path: Path, contract, body: str = "flat") -> Path:
    """A policy.onnx carrying ``contract`` whose network is not what the contract says:
    ``flat`` returns (7,) actions, ``one`` (1, 1), ``narrow`` takes 3 observations fewer, and
    ``fails_fast`` raises at run time once an observation exceeds 100 (a joint velocity, say)."""
    size, joints = REACH.observation_size, 7
    inputs = size - 3 if body == "narrow" else size
    weight = onnx.numpy_helper.from_array(np.zeros((inputs, 1 if body == "one" else joints), np.float32), "w")
    nodes = [onnx.helper.make_node("MatMul", ["observations", "w"], ["product"])]
    initializers = [weight]
    output = "product"
    if body == "flat":
        initializers.append(onnx.numpy_helper.from_array(np.array([joints], np.int64), "flat"))
        nodes.append(onnx.helper.make_node("Reshape", ["product", "flat"], ["actions"]))
        output = "actions"
    elif body == "fails_fast":  # reshape to (1, 7 + [max > 100]): impossible once it is
        initializers += [
            onnx.numpy_helper.from_array(np.array(100.0, np.float32), "threshold"),
            onnx.numpy_helper.from_array(np.array([1, joints], np.int64), "shape"),
            onnx.numpy_helper.from_array(np.array([0, 1], np.int64), "second"),
        ]
        nodes += [
            onnx.helper.make_node("ReduceMax", ["observations"], ["largest"], keepdims=0),
            onnx.helper.make_node("Greater", ["largest", "threshold"], ["fast"]),
            onnx.helper.make_node("Cast", ["fast"], ["extra"], to=onnx.TensorProto.INT64),
            onnx.helper.make_node("Mul", ["second", "extra"], ["grow"]),
            onnx.helper.make_node("Add", ["shape", "grow"], ["target"]),
            onnx.helper.make_node("Reshape", ["product", "target"], ["actions"]),
        ]
        output = "actions"
    graph = onnx.helper.make_graph(
        nodes,
        "policy",
        [onnx.helper.make_tensor_value_info("observations", onnx.TensorProto.FLOAT, [1, inputs])],
        [onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        initializers,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    onnx.helper.set_model_props(model, {METADATA_KEY: contract.to_json()})
    onnx.save(model, str(path))
    return path


def deploy_config(checkpoint: Path, **parameters) -> PolicyConfig:
    return PolicyConfig(checkpoint=str(checkpoint), **parameters)


def test_the_robot_configs_limits_tighten_the_policys(tmp_path):
    checkpoint = ik_checkpoint(tmp_path / "c.pt")
    limits = np.column_stack([ARM.lower, ARM.upper])
    limits[0] = [ARM.home[0] - 0.3, ARM.home[0] + 0.3]
    robot = robot_file(tmp_path / "arm.yaml", position_limits=limits.ravel().tolist(), velocity_limits=[1.0])
    plan = load_deployment(deploy_config(checkpoint, robot=str(robot), velocity_limits=[100.0]))
    safety = plan.deployment.safety
    np.testing.assert_allclose(safety.max_step, 1.0 * 0.02)  # neither the node's 100 nor the model's 5
    assert safety.lower[0] == pytest.approx(ARM.home[0] - 0.3) and safety.upper[0] == pytest.approx(
        ARM.home[0] + 0.3
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"joint_names": [f"joint{i}" for i in (2, 1, 3, 4, 5, 6, 7)]}, "was trained for joints"),
        ({"model": "other_home.xml"}, "was trained about another home pose"),
        ({"joint_prefix": "fr3_", "joint_name_map": {"a": "joint1"}}, "give one of them"),
    ],
)
def test_a_policy_that_does_not_fit_the_robot_is_refused(tmp_path, config, message):
    """Another robot whose joints happen to share the names (here arm7 with another home pose), or
    the same joints in another order, is not the robot the policy was trained for."""
    checkpoint = ik_checkpoint(tmp_path / "c.pt")
    arm7 = Path(ARM.path).read_text()
    (tmp_path / "other_home.xml").write_text(arm7.replace('qpos="0 -0.785', 'qpos="0.3 -0.785'))
    with pytest.raises(ConfigError, match=f"^policy.robot: .*{message}"):
        load_deployment(deploy_config(checkpoint, robot=str(robot_file(tmp_path / "arm.yaml", **config))))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("flat", r"maps a \(1, 23\) observation to shape \(7,\), not \(1, 7\) actions"),
        ("one", r"to shape \(1, 1\), not \(1, 7\)"),
        ("narrow", r"the network fails on a \(1, 23\) observation"),
    ],
)
def test_an_onnx_network_that_breaks_its_contract_is_refused_at_load(tmp_path, body, message):
    contract = PolicyContract.of_checkpoint(load_checkpoint(ik_checkpoint(tmp_path / "c.pt")))
    with pytest.raises(ConfigError, match=f"^policy.checkpoint: .*{message}"):
        load_deployment(deploy_config(onnx_policy(tmp_path / "policy.onnx", contract, body)))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("action_scale", 0.0, "action_scale 0.0 is not positive"),
        ("control_dt", -0.02, "control_dt -0.02 s is not in"),
        ("command_interface", "effort", "command_interface 'effort' is not one of"),
    ],
)
def test_a_contract_no_runtime_can_act_on_is_refused(tmp_path, field, value, message):
    contract = PolicyContract.of_checkpoint(load_checkpoint(ik_checkpoint(tmp_path / "c.pt")))
    damaged = dataclasses.replace(contract, **{field: value})
    with pytest.raises(ConfigError, match=message):
        load_deployment(deploy_config(onnx_policy(tmp_path / "policy.onnx", damaged, "one")))


def test_a_failure_in_the_deploy_path_holds_and_the_node_answers_enable(tmp_path, start_node, ros_client):
    """A network that raises at run time (here: on a joint velocity above 100): one hold at the
    measured pose, one error line, the node stays up, and ~/enable brings it back."""
    contract = PolicyContract.of_checkpoint(load_checkpoint(ik_checkpoint(tmp_path / "c.pt")))
    policy = policy_alone(start_node, onnx_policy(tmp_path / "policy.onnx", contract, "fails_fast"))
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    # 1 s of states: the first commands can go out before this test's subscription is matched
    feed(ros_client, policy, ARM.home + 0.02, count=50)
    ros_client.wait_until(lambda: len(commands) >= 5, what="commands")
    publisher = ros_client.node.create_publisher(JointState, "joint_states", RELIABLE)
    ros_client.wait_until(lambda: publisher.get_subscription_count() > 0, timeout=30, what="policy")

    def fast() -> JointState:
        message = joint_state(ARM.home + 0.04, ros_client.node.get_clock().now().nanoseconds / 1e9)
        message.velocity = [150.0] * 7
        return message

    # once the node has failed and disabled itself, the repeats change nothing
    ros_client.publish_until(
        publisher,
        fast,
        lambda: commands[-1].points[0].positions == pytest.approx(ARM.home + 0.04),
        what="the hold",
    )
    policy.wait_for_output("deploy failed")
    count = len(commands)  # a command answering an earlier state may still have been in flight
    feed(ros_client, policy, ARM.home + 0.02, count=10)
    assert len(commands) == count and policy.alive(), "commands while disabled after the failure"
    assert ros_client.call(SetBool, "/policy/enable", SetBool.Request(data=True)).success
    feed(ros_client, policy, ARM.home + 0.02, count=10)
    assert len(commands) > count


def test_a_future_stamped_state_gives_a_hold_and_a_line(tmp_path, start_node, ros_client):
    policy = policy_alone(start_node, ik_checkpoint(tmp_path / "c.pt"))
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    feed(ros_client, policy, ARM.home + 0.03, count=10)
    ros_client.wait_until(lambda: commands, what="commands")
    clock = ros_client.node.get_clock()
    feed(ros_client, policy, ARM.home, count=20, stamp=lambda k: clock.now().nanoseconds / 1e9 + 1000.0)
    ros_client.wait_until(
        lambda: commands[-1].points[0].positions == pytest.approx(ARM.home + 0.03), what="hold"
    )
    policy.wait_for_output("ahead of this node's clock")


def test_leaving_dry_run_disarms_instead_of_commanding_from_where_the_robot_is(
    tmp_path, start_node, ros_client
):
    """Armed in a dry run, the robot never moved while the policy 'ran' in the log: switching dry_run
    off holds and disarms, so commands start only after ~/enable (and its ramp)."""
    policy = policy_alone(start_node, ik_checkpoint(tmp_path / "c.pt"), dry_run=True)
    commands = ros_client.collect(JointTrajectory, "joint_trajectory", RELIABLE)
    feed(ros_client, policy, ARM.home + 0.02, count=10)
    policy.wait_for_output("[dry run] command")
    assert not commands
    value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=False)
    request = SetParameters.Request(parameters=[Parameter(name="dry_run", value=value)])
    assert ros_client.call(SetParameters, "/policy/set_parameters", request).results[0].successful
    ros_client.wait_until(lambda: commands, what="the hold")
    assert len(commands) == 1 and policy.alive()
    feed(ros_client, policy, ARM.home + 0.02, count=10)
    assert len(commands) == 1, "commands went out without ~/enable"
    policy.wait_for_output("dry_run changed: disabled")


def test_looser_limits_replace_only_what_the_node_gives(tmp_path):
    """allow_looser_limits with only a step cap given: the contract's velocity and position limits
    still hold (they fell back to the model's before)."""
    limits = np.column_stack([ARM.lower, ARM.upper])
    limits[0] = [ARM.home[0] - 0.2, ARM.home[0] + 0.2]
    env = BatchedEnv(CpuBackend(ARM, 1, 0.02), REACH, 3.0)
    narrow = safety_filter(ARM, 0.02, limits.ravel(), [1.0], 0.01)
    checkpoint = tmp_path / "c.pt"
    model = ActorCritic(REACH.observation_size, 7, [], [16], PpoConfig().init_log_std)
    save_checkpoint(
        checkpoint, model, PpoConfig(actor_hidden=[], critic_hidden=[16]), policy_metadata(env, limits=narrow)
    )
    safety = load_deployment(
        deploy_config(checkpoint, allow_looser_limits=True, max_position_step=0.03)
    ).deployment.safety
    np.testing.assert_allclose(safety.max_step, 0.02)  # the contract's 1 rad/s; its 0.01 cap replaced by 0.03
    assert safety.upper[0] == pytest.approx(ARM.home[0] + 0.2)


def test_a_name_map_that_gives_two_joints_one_name_is_refused(tmp_path):
    robot = robot_file(tmp_path / "arm.yaml", joint_name_map={"joint2": "joint1"})
    with pytest.raises(ConfigError, match="two joints would be named 'joint2' on the wire"):
        load_deployment(deploy_config(ik_checkpoint(tmp_path / "c.pt"), robot=str(robot)))


def test_deploy_records_the_cameras_the_robot_file_lists(tmp_path, start_node, ros_client, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")  # the simulated robot renders its camera with EGL
    camera = {"name": "overhead", "body": "world", "pos": [0.0, 0.0, 2.5], "width": 64, "height": 48}
    camera |= {"rate_hz": 10.0}
    robot = tmp_path / "seeing.yaml"
    robot.write_text(yaml.safe_dump({"model": "arm7", "cameras": [camera]}))
    cameras = tmp_path / "cameras.yaml"
    text = yaml.safe_dump([camera])
    cameras.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"cameras": text}}}))
    start_node("sim_bridge_sim", "simulator", "--params-file", str(cameras), model="arm7", mode="realtime")
    policy = start_node(
        "sim_bridge_policy",
        "policy",
        checkpoint=str(ik_checkpoint(tmp_path / "checkpoint.pt")),
        robot=str(robot),
        record=True,
        output_dir=str(tmp_path / "run"),
        use_sim_time=True,
        start_enabled=True,
    )
    goals = ros_client.node.create_publisher(PointStamped, "goal", RELIABLE)
    ros_client.wait_until(lambda: goals.get_subscription_count() > 0, timeout=30, what="policy")
    policy.wait_for_output("deploying")
    send_goal(goals, CENTER)
    # The policy's recorder subscribed (beside this test's reader), then frames flowing (the
    # simulator's first EGL context can take a while on a loaded host), then a second more of them.
    # 20 frames: the graph shows the recorder before its best-effort reader has matched the camera's
    # writer, and on a loaded host that took long enough to miss half of the first 5 (CI: 3 recorded).
    seen = ros_client.collect(Image, "/overhead/image_raw", qos_profile_sensor_data)
    topic = "/overhead/image_raw"
    ros_client.wait_until(lambda: ros_client.node.count_subscribers(topic) >= 2, timeout=30, what="recorder")
    heard = len(seen)
    ros_client.wait_until(lambda: len(seen) >= heard + 20, timeout=60, what="camera frames")
    time.sleep(1.0)
    assert policy.stop() == 0

    with AnyReader([tmp_path / "run" / "rollouts"]) as bag:
        types = {c.topic: c.msgtype for c in bag.connections}
        streams = [c for c in bag.connections if c.topic.startswith("/overhead/")]
        recorded: dict[str, list] = {c.topic: [] for c in streams}
        for connection, _, raw in bag.messages(connections=streams):
            recorded[connection.topic].append(bag.deserialize(raw, connection.msgtype))
    assert types["/overhead/image_raw"] == "sensor_msgs/msg/Image"
    assert types["/overhead/camera_info"] == "sensor_msgs/msg/CameraInfo"
    assert "/overhead/depth/image_raw" not in types  # the camera has no depth
    images, infos = recorded["/overhead/image_raw"], recorded["/overhead/camera_info"]
    assert len(images) >= 5 and len(infos) >= 5
    image = images[-1]
    assert (image.width, image.height, image.encoding) == (64, 48, "rgb8")
    pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(48, 64, 3)
    assert pixels.std() > 0  # a picture, not a blank
    assert (infos[-1].width, infos[-1].height) == (64, 48)
