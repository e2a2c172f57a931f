"""Deployment logic: name mapping, refusal of bad states, safety filter, hold behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from sim_bridge_core.deploy import Deployment, StateError
from sim_bridge_core.models import load_robot
from sim_bridge_core.tasks import make_task

ARM = load_robot("arm7")


def deployment(action: float = 1.0, step: float = 0.05, timeout: float = 0.5, limits=()) -> Deployment:
    task = make_task("reach", ARM)
    return Deployment(ARM, task, lambda obs: np.full((len(obs), 7), action), step, timeout, limits)


def test_names_in_any_order_with_extra_joints():
    d = deployment()
    names = ["gripper", *reversed(ARM.joint_names)]
    positions = [0.5, *reversed(ARM.home)]
    d.on_joint_state(0.0, names, positions, [0.0] * 8)
    np.testing.assert_array_equal(d.positions, ARM.home)


@pytest.mark.parametrize(
    ("names", "positions", "velocities", "message"),
    [
        (list(ARM.joint_names[:6]), list(ARM.home[:6]), [], "lacks required joints joint7"),
        (list(ARM.joint_names), list(ARM.home[:6]), [], "7 names, 6 positions"),
        (list(ARM.joint_names), [*ARM.home[:6], np.nan], [], "NaN or inf"),
        (list(ARM.joint_names), list(ARM.home), [0.0] * 3, "3 velocities"),
        ([*ARM.joint_names[:6], "joint1"], list(ARM.home), [], "twice"),
    ],
)
def test_bad_states_are_refused_and_change_nothing(names, positions, velocities, message):
    d = deployment()
    d.on_joint_state(0.0, ARM.joint_names, ARM.home, [])
    with pytest.raises(StateError, match=message):
        d.on_joint_state(1.0, names, positions, velocities)
    np.testing.assert_array_equal(d.positions, ARM.home)
    assert d.state_time == 0.0


def test_no_command_without_state_or_goal():
    d = deployment()
    assert d.tick(0.0) == (None, "no joint_states received yet")
    d.on_joint_state(0.0, ARM.joint_names, ARM.home, [])
    assert d.tick(0.01) == (None, "no goal received yet")


def test_safety_filter_limits_step_and_range():
    d = deployment(action=1.0, step=0.05)
    d.on_joint_state(0.0, ARM.joint_names, ARM.home, [])
    d.on_goal([0.5, 0.0, 0.4])
    command, reason = d.tick(0.01)
    assert reason == "" and not command.hold
    np.testing.assert_allclose(command.positions - ARM.home, np.minimum(0.05, ARM.upper - ARM.home))
    # Every joint 0.01 rad inside its upper limit: targets stay within the step and the limits.
    near_limit = ARM.upper - 0.01
    d.on_joint_state(0.02, ARM.joint_names, near_limit, [])
    command, _ = d.tick(0.03)
    assert np.all(command.positions <= ARM.upper)
    assert np.all(np.abs(command.positions - near_limit) <= 0.05 + 1e-12)


def test_user_position_limits_narrow_the_model_limits():
    limits = np.column_stack([ARM.home - 0.01, ARM.home + 0.01]).ravel()
    d = deployment(action=1.0, step=1.0, limits=limits)
    d.on_joint_state(0.0, ARM.joint_names, ARM.home, [])
    d.on_goal([0.5, 0.0, 0.4])
    command, _ = d.tick(0.01)
    assert np.all(command.positions <= ARM.home + 0.01 + 1e-12)


def test_stale_state_holds_once_then_stays_silent():
    d = deployment(timeout=0.1)
    d.on_joint_state(0.0, ARM.joint_names, ARM.home + 0.1, [])
    d.on_goal([0.5, 0.0, 0.4])
    hold, reason = d.tick(0.5)
    assert hold.hold and "older than" in reason
    np.testing.assert_allclose(hold.positions, ARM.home + 0.1)
    assert d.tick(0.6)[0] is None
    d.on_joint_state(0.7, ARM.joint_names, ARM.home, [])
    command, _ = d.tick(0.71)
    assert command is not None and not command.hold


def test_disable_holds_once_and_enable_resumes():
    d = deployment()
    d.on_joint_state(0.0, ARM.joint_names, ARM.home, [])
    d.on_goal([0.5, 0.0, 0.4])
    hold = d.set_enabled(False)
    assert hold.hold
    assert d.tick(0.01) == (None, "disabled")
    assert d.set_enabled(True) is None
    assert d.tick(0.02)[0] is not None


def test_goal_outside_the_workspace_is_clamped_and_nan_refused():
    d = deployment()
    inputs = d.on_goal([5.0, -5.0, 0.4])
    assert np.all(np.abs(inputs) < 1.0)
    with pytest.raises(StateError, match="NaN"):
        d.on_goal([np.nan, 0, 0])
    np.testing.assert_array_equal(d.inputs, inputs)
