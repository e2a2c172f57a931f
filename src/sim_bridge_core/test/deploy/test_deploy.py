"""Deployment logic: name mapping, refusal of bad states, the safety filter, hold and schedule."""

from __future__ import annotations

import numpy as np
import pytest
from sim_bridge_core.config import ConfigError
from sim_bridge_core.deploy.deployment import (
    Deployment,
    DeploySettings,
    StateError,
    require_bounded,
    safety_filter,
    tightest,
)
from sim_bridge_core.models import load_robot
from sim_bridge_core.tasks import make_task

ARM = load_robot("arm7")
PERIOD = 0.02
ZERO = [0.0] * 7


def deployment(
    action: float = 1.0, velocity=(2.5,), timeout: float = 0.5, limits=(), policy=None
) -> Deployment:
    task = make_task("reach", ARM)
    safety = safety_filter(ARM, PERIOD, limits, velocity)
    policy = policy or (lambda obs: np.full((len(obs), 7), action))
    return Deployment(ARM, task, policy, safety, DeploySettings(PERIOD, timeout))


def commanding(d: Deployment, positions=ARM.home, time_s: float = 0.0) -> None:
    d.on_joint_state(time_s, 0.0, ARM.joint_names, positions, ZERO)
    d.on_goal([0.5, 0.0, 0.4], 0.0)


def test_names_in_any_order_with_extra_joints():
    d = deployment()
    names = ["gripper", *reversed(ARM.joint_names)]
    positions = [0.5, *reversed(ARM.home)]
    d.on_joint_state(0.0, 0.0, names, positions, [0.0] * 8)
    np.testing.assert_array_equal(d.positions, ARM.home)


@pytest.mark.parametrize(
    ("names", "positions", "velocities", "message"),
    [
        (list(ARM.joint_names[:6]), list(ARM.home[:6]), [0.0] * 6, "lacks required joints joint7"),
        (list(ARM.joint_names), list(ARM.home[:6]), ZERO, "7 names, 6 positions"),
        (list(ARM.joint_names), [*ARM.home[:6], np.nan], ZERO, "NaN or inf"),
        (list(ARM.joint_names), list(ARM.home), [0.0] * 3, "3 velocities"),
        (list(ARM.joint_names), list(ARM.home), [], "no velocities"),
        ([*ARM.joint_names[:6], "joint1"], list(ARM.home), ZERO, "twice"),
        (list(ARM.joint_names), [1e39, *ARM.home[1:]], ZERO, "'joint1' at 1e\\+39, more than 0.5 outside"),
    ],
)
def test_bad_states_are_refused_and_change_nothing(names, positions, velocities, message):
    d = deployment()
    d.on_joint_state(0.0, 0.0, ARM.joint_names, ARM.home, ZERO)
    with pytest.raises(StateError, match=message):
        d.on_joint_state(1.0, 0.0, names, positions, velocities)
    np.testing.assert_array_equal(d.positions, ARM.home)
    assert d.state_time == 0.0


def test_no_command_without_state_or_goal():
    d = deployment()
    assert d.tick(0.0) == (None, "no joint_states received yet")
    d.on_joint_state(0.0, 0.0, ARM.joint_names, ARM.home, ZERO)
    assert d.tick(0.01) == (None, "no goal received yet")


def test_velocity_limit_bounds_the_step_and_limits_the_range():
    d = deployment(action=1.0, velocity=(2.5,))
    commanding(d)
    command, reason = d.tick(0.01)
    assert reason == "" and not command.hold
    np.testing.assert_allclose(command.positions - ARM.home, np.minimum(2.5 * PERIOD, ARM.upper - ARM.home))
    near_limit = ARM.upper - 0.01
    d.on_joint_state(0.02, 0.0, ARM.joint_names, near_limit, ZERO)
    command, _ = d.tick(0.03)
    assert np.all(command.positions <= ARM.upper)
    assert np.all(np.abs(command.positions - near_limit) <= 2.5 * PERIOD + 1e-12)


def test_the_step_limit_wins_when_the_limits_exclude_the_current_pose():
    """Limits 0.5 rad away from the measured pose: the command moves one step toward them, no more;
    and a hold is the measured position itself, not clipped into the limits."""
    limits = np.column_stack([ARM.home + 0.5, ARM.home + 0.6]).ravel()
    d = deployment(action=0.0, limits=limits, velocity=(2.5,))
    commanding(d)
    command, _ = d.tick(0.01)
    np.testing.assert_allclose(np.abs(command.positions - ARM.home), 2.5 * PERIOD)
    hold = d.set_enabled(False)
    np.testing.assert_array_equal(hold.positions, ARM.home)


def test_per_joint_velocity_limits_from_the_model():
    safety = safety_filter(ARM, PERIOD)
    np.testing.assert_allclose(safety.max_step, ARM.velocity_limits * PERIOD)
    assert safety_filter(ARM, PERIOD, max_position_step=0.01).max_step.max() == 0.01


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"position_limits": [0.0, 1.0] * 6}, r"position_limits: needs lower, upper for each of the 7"),
        ({"position_limits": [1.0, 0.0] * 7}, r"position_limits: lower 1.0 > upper 0.0 for joint 'joint1'"),
        ({"position_limits": [5.0, 6.0] * 7}, r"joint 'joint1' has no position left"),
        ({"velocity_limits": [1.0, 2.0]}, r"velocity_limits: needs one value or one per joint"),
        ({"velocity_limits": [0.0]}, r"velocity_limits: must be positive"),
    ],
)
def test_bad_limits_fail_naming_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        safety_filter(ARM, PERIOD, **kwargs)


def test_a_model_without_velocity_limits_needs_them_from_the_config():
    pendulum = load_robot("pendulum")
    unlimited = type(pendulum)(**{**pendulum.__dict__, "velocity_limits": np.array([np.inf])})
    with pytest.raises(ConfigError, match=r"policy\.velocity_limits: no velocity limit for joint 'hinge'"):
        require_bounded(safety_filter(unlimited, PERIOD), unlimited)
    require_bounded(safety_filter(unlimited, PERIOD, velocity_limits=[3.0]), unlimited)


def test_non_finite_policy_output_holds_once_and_commands_nothing():
    d = deployment(policy=lambda obs: np.full((len(obs), 7), np.nan))
    commanding(d, ARM.home + 0.05)
    hold, reason = d.tick(0.01)
    assert hold.hold and "NaN" in reason
    np.testing.assert_array_equal(hold.positions, ARM.home + 0.05)
    assert d.tick(0.03) == (None, "the policy output NaN or inf")


def test_staleness_comes_from_the_stamp_when_the_robot_stamps():
    d = deployment(timeout=0.1)
    d.on_goal([0.5, 0.0, 0.4], 0.0)
    d.on_joint_state(10.0, 9.5, ARM.joint_names, ARM.home, ZERO)  # arrived now, measured 0.5 s ago
    hold, reason = d.tick(10.0)
    assert hold.hold and "older than" in reason
    d.on_joint_state(10.0, 0.0, ARM.joint_names, ARM.home, ZERO)  # unstamped: arrival counts
    assert not d.stale(10.05)


def test_stale_state_holds_once_then_stays_silent():
    d = deployment(timeout=0.1)
    commanding(d, ARM.home + 0.1)
    hold, reason = d.tick(0.5)
    assert hold.hold and "older than" in reason
    np.testing.assert_allclose(hold.positions, ARM.home + 0.1)
    assert d.tick(0.6)[0] is None
    d.on_joint_state(0.7, 0.0, ARM.joint_names, ARM.home, ZERO)
    command, _ = d.tick(0.71)
    assert command is not None and not command.hold


def answered(d: Deployment, times) -> list[bool]:
    """Feed states stamped ``times``; whether each was answered with a command."""
    answers = []
    for t in times:
        d.on_joint_state(t, t, ARM.joint_names, ARM.home, ZERO)
        answers.append(d.due and d.tick(t)[0] is not None)
    return answers


def test_commands_are_due_once_per_period_on_the_state_schedule():
    d = deployment()
    d.on_goal([0.5, 0.0, 0.4], 0.0)
    # States at 500 Hz for 0.4 s: 20 commands, about every tenth state (the schedule keeps the rate).
    due = answered(d, np.arange(1, 201) * 0.002)
    assert sum(due) == 20 and set(np.diff(np.flatnonzero(due))) <= {9, 10, 11}
    # States at the control rate, exactly on time (sim time): every one is answered.
    d = deployment()
    d.on_goal([0.5, 0.0, 0.4], 0.0)
    assert all(answered(d, np.arange(1, 50) * PERIOD))


def test_a_state_without_a_command_keeps_the_schedule():
    """No goal yet: the state is due but unanswered, so it stays due (a lockstep simulator resends it)."""
    d = deployment()
    assert answered(d, [0.0]) == [False] and d.due
    d.on_goal([0.5, 0.0, 0.4], 0.0)
    assert answered(d, [0.0]) == [True] and not d.due


def test_disable_holds_once_and_enable_resumes():
    d = deployment()
    commanding(d)
    hold = d.set_enabled(False)
    assert hold.hold
    assert d.tick(0.01) == (None, "disabled")
    assert d.set_enabled(True) is None
    assert d.tick(0.02)[0] is not None


def test_goal_outside_the_workspace_is_clamped_and_nan_refused():
    d = deployment()
    inputs = d.on_goal([5.0, -5.0, 0.4], 0.0)
    assert np.all(np.abs(inputs) < 1.0)
    with pytest.raises(StateError, match="NaN"):
        d.on_goal([np.nan, 0, 0], 0.0)
    np.testing.assert_array_equal(d.inputs, inputs)


def test_limits_from_a_config_or_contract_never_loosen_the_model():
    """A contract that says 100 rad/s must not give 2 rad per 20 ms period on a 5 rad/s arm."""
    loose = safety_filter(ARM, PERIOD, velocity_limits=[100.0])
    np.testing.assert_allclose(loose.max_step, ARM.velocity_limits * PERIOD)
    tight = safety_filter(ARM, PERIOD, np.column_stack([ARM.home - 0.3, ARM.home + 0.3]).ravel(), [1.0])
    both = tightest(ARM, [loose, tight, safety_filter(ARM, PERIOD, max_position_step=0.01)], PERIOD)
    np.testing.assert_allclose(both.lower, np.maximum(ARM.lower, ARM.home - 0.3))
    np.testing.assert_allclose(both.max_step, 0.01)
    with pytest.raises(ConfigError, match="leave joint 'joint1' no position"):
        apart = safety_filter(ARM, PERIOD, np.column_stack([ARM.home + 0.5, ARM.home + 0.6]).ravel())
        tightest(ARM, [tight, apart], PERIOD)


def test_a_state_stamped_in_the_future_is_refused_and_the_robot_holds():
    """One state stamped 1000 s ahead used to stop every command for 1000 s, silently."""
    d = deployment(timeout=0.1)
    commanding(d)
    assert d.tick(0.0)[0] is not None
    with pytest.raises(StateError, match=r"stamped 1000\.000 s ahead of this node's clock"):
        d.on_joint_state(0.02, 1000.02, ARM.joint_names, ARM.home + 0.1, ZERO)
    np.testing.assert_array_equal(d.positions, ARM.home)
    hold, reason = d.tick(0.2)  # nothing fresh came: a hold at the last good pose, and why
    assert hold.hold and "older than" in reason
    d.on_joint_state(0.3, 0.3, ARM.joint_names, ARM.home, ZERO)
    assert d.due and d.tick(0.3)[0] is not None


def test_a_clock_that_jumps_back_restarts_the_schedule():
    """Stamps 10 s back (a robot computer's clock stepped by NTP): commands resume at once instead
    of waiting 10 s for the old schedule."""
    d = deployment()
    d.on_goal([0.5, 0.0, 0.4], 0.0)
    assert all(answered(d, 20.0 + np.arange(5) * PERIOD))
    assert all(answered(d, 10.0 + np.arange(1, 6) * PERIOD))


def test_this_nodes_clock_jumping_back_holds_until_fresh_states():
    d = deployment()
    commanding(d, time_s=50.0)
    assert d.tick(50.0)[0] is not None
    d.on_clock_jump()
    hold, _ = d.tick(1.0)
    assert hold.hold
    assert answered(d, [1.0]) == [True]


def test_a_policy_output_of_the_wrong_shape_holds():
    d = deployment(policy=lambda obs: np.zeros((1, 6)))
    commanding(d, ARM.home + 0.05)
    hold, reason = d.tick(0.0)
    assert hold.hold and "shape (1, 6), not (1, 7)" in reason
    np.testing.assert_array_equal(hold.positions, ARM.home + 0.05)


def test_a_failure_holds_once_and_disables_until_enabled():
    d = deployment()
    commanding(d, ARM.home + 0.05)
    hold = d.fail()
    assert hold.hold and not d.enabled and d.tick(0.02) == (None, "disabled")
    d.set_enabled(True)
    assert answered(d, [0.04]) == [True]


@pytest.mark.parametrize("stop", ["fail", "disable"])
def test_a_stop_after_a_stale_hold_holds_again_where_the_robot_is_now(stop):
    """States stop (a hold at the last pose), resume a little elsewhere, and then the network fails
    or the operator disables: the hold is at the new pose, once."""
    d = deployment()
    commanding(d, ARM.home + 0.05)
    assert d.tick(0.02)[0] is not None
    stale_hold, reason = d.tick(0.6)
    assert stale_hold.hold and "older than" in reason
    d.on_joint_state(0.7, 0.7, ARM.joint_names, ARM.home + 0.08, ZERO)
    hold = d.fail() if stop == "fail" else d.set_enabled(False)
    assert hold.hold
    np.testing.assert_array_equal(hold.positions, ARM.home + 0.08)
    assert d.fail() is None and d.set_enabled(False) is None and d.tick(0.72) == (None, "disabled")


def test_enable_ramps_to_home_within_the_velocity_limit_then_hands_over():
    """Started disabled, away from home: enable drives the arm home at most one step per period,
    over at least home_ramp_s, before the policy's first command."""
    task = make_task("reach", ARM)
    settings = DeploySettings(PERIOD, 0.5, home_ramp_s=0.5)
    d = Deployment(
        ARM, task, lambda obs: np.ones((1, 7)), safety_filter(ARM, PERIOD, (), [2.5]), settings, enabled=False
    )
    start = ARM.home + np.array([0.6, -0.3, 0, 0, 0, 0, 0.1])
    d.on_goal([0.5, 0.0, 0.4], 0.0)
    d.on_joint_state(0.0, 0.0, ARM.joint_names, start, ZERO)
    assert d.tick(0.0) == (None, "disabled")
    d.set_enabled(True)
    pose, targets, t = start.copy(), [], 0.0
    while d.ramp is not None or not targets:
        d.on_joint_state(t, t, ARM.joint_names, pose, ZERO)
        assert d.due
        command, _ = d.tick(t)
        assert np.all(np.abs(command.positions - pose) <= 2.5 * PERIOD + 1e-12)
        targets.append(command.positions)
        pose, t = command.positions, t + PERIOD
    np.testing.assert_allclose(targets[-1], ARM.home)
    assert t >= 0.5 - 1e-9  # the ramp took at least home_ramp_s (0.6 rad at 2.5 rad/s would take 0.24 s)
    d.on_joint_state(t, t, ARM.joint_names, pose, ZERO)
    command, _ = d.tick(t)  # the policy's own action now: home + action_scale toward +1
    assert np.all(command.positions > ARM.home)


def test_a_driver_that_prefixes_joint_names_is_understood():
    task = make_task("reach", ARM)
    names = [f"fr3_{name}" for name in ARM.joint_names]
    d = Deployment(
        ARM,
        task,
        lambda obs: np.zeros((1, 7)),
        safety_filter(ARM, PERIOD),
        DeploySettings(PERIOD, 0.5),
        names,
    )
    d.on_joint_state(0.0, 0.0, list(reversed(names)), list(reversed(ARM.home + 0.01)), ZERO)
    np.testing.assert_allclose(d.positions, ARM.home + 0.01)
    with pytest.raises(StateError, match="lacks required joints fr3_joint1"):
        d.on_joint_state(0.0, 0.0, ARM.joint_names, ARM.home, ZERO)


def test_this_nodes_system_clock_stepped_back_is_not_taken_for_fresh_states():
    """A system clock stepped back (no jump callback reports it): the last state now looks like one
    from the future; it must go stale (one hold), not stay fresh until the clock catches up."""
    d = deployment(timeout=0.1)
    commanding(d, time_s=100.0)
    assert d.tick(100.0)[0] is not None
    hold, _ = d.tick(40.0)
    assert hold.hold


def test_the_ramp_hands_over_once_the_robot_is_home_or_at_rest():
    """Servos that trail their targets: the ramp's time has run, but the policy takes over only
    once the robot is home, or at rest where its servos hold it (a leg sagging under load), as
    its episodes started in training; not while it is still on its way."""
    task = make_task("reach", ARM)
    settings = DeploySettings(PERIOD, 0.5, home_ramp_s=0.1)
    d = Deployment(ARM, task, lambda obs: np.ones((1, 7)), safety_filter(ARM, PERIOD), settings)
    d.on_goal([0.5, 0.0, 0.4], 0.0)
    for k in range(30):  # 0.6 s, far past the ramp's time: still closing in, 0.01 rad a period
        t = k * PERIOD
        d.on_joint_state(t, t, ARM.joint_names, ARM.home + 0.5 - 0.01 * k, ZERO)
        _, notice = d.tick(t)
        assert d.ramp is not None
    assert "still 0.210 rad away; holding home" in notice
    d.on_joint_state(0.6, 0.6, ARM.joint_names, ARM.home + 0.01, ZERO)
    d.tick(0.6)
    assert d.ramp is None
    d.set_enabled(False)
    d.set_enabled(True)
    for k in range(40):  # sagging 0.08 rad under load, and no nearer for 0.5 s: at rest
        t = 1.0 + k * PERIOD
        d.on_joint_state(t, t, ARM.joint_names, ARM.home + 0.08, ZERO)
        d.tick(t)
        assert (d.ramp is None) == (t > 1.0 + 0.5 + 1e-9)


def test_a_robot_that_does_not_move_at_all_is_never_handed_to_the_policy():
    """Motors unpowered, or nobody listening on the command topic: at rest 0.5 rad from home is not
    'settled near home', so the ramp keeps commanding home and says so."""
    task = make_task("reach", ARM)
    settings = DeploySettings(PERIOD, 0.5, home_ramp_s=0.1)
    d = Deployment(ARM, task, lambda obs: np.ones((1, 7)), safety_filter(ARM, PERIOD), settings)
    d.on_goal([0.5, 0.0, 0.4], 0.0)
    for k in range(100):  # 2 s
        t = k * PERIOD
        d.on_joint_state(t, t, ARM.joint_names, ARM.home + 0.5, ZERO)
        _, notice = d.tick(t)
        assert d.ramp is not None
    assert "still 0.500 rad away" in notice


def test_commands_resuming_after_a_long_hold_start_a_new_episode():
    """The driver was gone for 2 s (the robot may have fallen): the robot ramps home again and the
    policy's clock starts at 0, instead of the policy taking over mid-episode from where it lies."""
    task = make_task("reach", ARM)
    settings = DeploySettings(PERIOD, 0.1, home_ramp_s=0.5)
    d = Deployment(ARM, task, lambda obs: np.ones((1, 7)), safety_filter(ARM, PERIOD), settings)
    commanding(d)
    assert d.tick(0.0)[0] is not None and d.ramp is None  # at home: no ramp
    assert d.tick(0.5)[0].hold
    d.on_joint_state(2.0, 2.0, ARM.joint_names, ARM.home + 0.4, ZERO)
    command, _ = d.tick(2.0)
    assert d.ramp is not None and np.all(command.positions <= ARM.home + 0.4)


def test_a_bad_output_is_the_periods_answer_not_retried_on_every_state():
    """States at 1 kHz and a network giving NaN: it runs once a period (one hold), not on each state."""
    calls = []

    def nan_policy(observation: np.ndarray) -> np.ndarray:
        calls.append(1)
        return np.full((1, 7), np.nan)

    d = deployment(policy=nan_policy)
    d.on_goal([0.5, 0.0, 0.4], 0.0)
    answered(d, np.arange(1, 101) * 0.001)  # 0.1 s: five periods
    assert 4 <= len(calls) <= 6
