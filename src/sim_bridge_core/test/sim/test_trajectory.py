import math

import numpy as np
import pytest
from sim_bridge_core.sim.trajectory import TrajectoryError, TrajectoryFollower, parse_goal

JOINTS = ("a", "b", "c")
LOWER = np.array([-1.0, -2.0, -np.inf])
UPPER = np.array([1.0, 2.0, np.inf])


def goal(
    names=JOINTS,
    times=(1.0,),
    positions=((0.1, 0.2, 0.3),),
    velocities=None,
    accelerations=None,
    *,
    stamp=0.0,
    now=10.0,
    allow_partial=False,
    allow_nonzero_end_velocity=False,
    efforts=None,
):
    return parse_goal(
        list(names),
        stamp_s=stamp,
        times_s=list(times),
        positions=[list(p) for p in positions],
        velocities=None if velocities is None else [list(v) for v in velocities],
        accelerations=None if accelerations is None else [list(a) for a in accelerations],
        robot_joints=JOINTS,
        lower=LOWER,
        upper=UPPER,
        allow_partial=allow_partial,
        now_s=now,
        allow_nonzero_end_velocity=allow_nonzero_end_velocity,
        efforts=None if efforts is None else [list(e) for e in efforts],
    )


def follower(g, now=10.0, targets=(0.0, 0.0, 0.0), positions=None, velocities=(0.0, 0.0, 0.0)):
    f = TrajectoryFollower()
    f.start(
        g,
        now,
        np.array(targets, dtype=float),
        np.array(targets if positions is None else positions, dtype=float),
        np.array(velocities, dtype=float),
    )
    return f


# --- rejections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"names": ("a", "b", "foo")}, "unknown joint 'foo'"),
        ({"names": ("a", "b", "a")}, "duplicate joint 'a'"),
        ({"names": ("a", "b"), "positions": ((0.1, 0.2),)}, "allow_partial_joints_goal is false"),
        ({"names": (), "positions": ((),)}, "empty joint_names"),
        ({"times": (), "positions": ()}, "no points"),
        ({"positions": ((0.1, 0.2),)}, "point 0: expected 3 positions, got 2"),
        (
            {"times": (1.0, 2.0), "positions": ((0, 0, 0), (0, 0, 0)), "velocities": ((0, 0, 0), (0, 0))},
            "point 1: expected 3 velocities, got 2",
        ),
        (
            {"velocities": ((0, 0, 0, 0),)},
            "point 0: expected 3 velocities, got 4",
        ),
        ({"efforts": ((1.0, 0, 0),)}, "point 0: effort given, but the controller has no effort"),
        ({"positions": ((0.1, math.nan, 0.3),)}, "point 0: positions contain NaN or inf"),
        ({"positions": ((0.1, 0.2, math.inf),)}, "point 0: positions contain NaN or inf"),
        ({"velocities": ((0.0, math.nan, 0.0),)}, "point 0: velocities contain NaN or inf"),
        (
            {"velocities": ((0, 0, 0),), "accelerations": ((0, -math.inf, 0),)},
            "point 0: accelerations contain NaN or inf",
        ),
        (
            {"times": (1.0, 2.0, 2.0), "positions": ((0, 0, 0),) * 3},
            "point 2: time_from_start not strictly increasing",
        ),
        (
            {"times": (1.0, 0.5), "positions": ((0, 0, 0),) * 2},
            "point 1: time_from_start not strictly increasing",
        ),
        ({"times": (-0.5, 1.0), "positions": ((0, 0, 0),) * 2}, "point 0: time_from_start -0.5 is negative"),
        ({"times": (math.nan,)}, "point 0: time_from_start nan"),
        ({"stamp": 3.0, "times": (1.0, 2.0), "positions": ((0, 0, 0),) * 2, "now": 5.5}, "ends in the past"),
        ({"velocities": ((0.0, 0.5, 0.0),)}, "non-zero velocity for joint 'b'"),
        ({"velocities": ((0.0, 0.0, 1e-6),)}, "non-zero velocity for joint 'c'"),
    ],
)
def test_rejections(kwargs, reason):
    with pytest.raises(TrajectoryError, match=reason.replace("(", r"\(")):
        goal(**kwargs)


def test_error_is_a_value_error():
    assert issubclass(TrajectoryError, ValueError)


# --- acceptance and mapping -------------------------------------------------------------------


def test_names_in_any_order_map_onto_robot_order():
    g = goal(names=("c", "a", "b"), positions=((0.3, 0.1, 0.2),))
    assert g.joints.tolist() == [2, 0, 1]
    f = follower(g)
    np.testing.assert_allclose(f.sample(11.0), [0.1, 0.2, 0.3])


def test_partial_goal_keeps_other_targets():
    g = goal(names=("b",), positions=((0.5,),), allow_partial=True)
    assert g.joints.tolist() == [1]
    f = follower(g, targets=(0.7, 0.0, -0.4), positions=(0.65, 0.1, -0.3))
    np.testing.assert_allclose(f.sample(10.5), [0.7, 0.3, -0.4])  # b: 0.1 -> 0.5 halfway
    np.testing.assert_allclose(f.sample(12.0), [0.7, 0.5, -0.4])


def test_clamping_to_limits_is_reported():
    g = goal(names=("c", "b", "a"), positions=((1e6, 2.5, -3.0),))
    assert g.clamped
    np.testing.assert_allclose(g.positions, [[1e6, 2.0, -1.0]])  # c is unlimited
    assert not goal(positions=((1.0, -2.0, -1e9),)).clamped


def test_nonzero_end_velocity_allowed_when_asked():
    g = goal(velocities=((0.0, 0.5, 0.0),), allow_nonzero_end_velocity=True)
    np.testing.assert_allclose(g.velocities, [[0.0, 0.5, 0.0]])


def test_end_velocity_within_float_epsilon_counts_as_zero():
    """As the controller: |v| <= float epsilon at the last point is at rest."""
    g = goal(velocities=((0.0, 1e-8, -1e-8),))
    np.testing.assert_allclose(g.velocities, [[0.0, 1e-8, -1e-8]])


def test_mixed_velocities_interpolate_each_segment_by_its_ends():
    """A segment is cubic only when both of its points carry velocities, else linear (as the controller)."""
    g = goal(
        times=(0.0, 1.0, 2.0),
        positions=((0, 0, 0), (1.0, 0, 0), (0.0, 0, 0)),
        velocities=((1.0, 0, 0), (), (0, 0, 0)),
        accelerations=((0, 0, 0), (0, 0, 0), ()),
    )
    f = follower(g, now=10.0)
    np.testing.assert_allclose(f.sample(10.5), [0.5, 0, 0])  # linear: point 1 lacks velocities
    np.testing.assert_allclose(f.sample(11.5), [0.5, 0, 0])
    np.testing.assert_allclose(f.sample(12.0), [0.0, 0, 0])


def test_empty_efforts_are_accepted():
    assert goal(efforts=((),)).positions.shape == (1, 3)


def test_empty_velocities_on_every_point_mean_none():
    g = goal(times=(1.0, 2.0), positions=((0, 0, 0),) * 2, velocities=((), ()), accelerations=((), ()))
    assert g.velocities is None and g.accelerations is None


# --- stamp semantics --------------------------------------------------------------------------


def test_zero_stamp_starts_when_accepted():
    g = goal(stamp=0.0, now=10.0, times=(2.0,))
    assert g.start_s is None
    f = follower(g, now=10.5)
    assert f.goal.start_s == 10.5
    np.testing.assert_allclose(f.sample(11.5), [0.05, 0.1, 0.15])


def test_future_stamp_starts_then():
    g = goal(stamp=20.0, now=10.0, times=(1.0, 2.0), positions=((0.1, 0.2, 0.3), (0.3, 0.4, 0.5)))
    assert g.start_s == 20.0
    f = follower(g, now=10.0, positions=(0.4, 0.4, 0.4))
    # the approach spans acceptance (10 s) to the first point (21 s); before it, the start state
    np.testing.assert_allclose(f.sample(9.0), [0.4, 0.4, 0.4])
    np.testing.assert_allclose(f.sample(15.5), [0.25, 0.3, 0.35])
    np.testing.assert_allclose(f.sample(21.0), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(f.sample(21.5), [0.2, 0.3, 0.4])


def test_past_stamp_still_running_is_accepted_and_joins_midway():
    g = goal(stamp=8.0, now=10.0, times=(1.0, 3.0), positions=((0, 0, 0), (1.0, 1.0, 1.0)))
    f = follower(g, now=10.0, targets=(0.9, 0.9, 0.9))
    # t=10 lies in the segment 9 s..11 s, so the start state plays no part
    np.testing.assert_allclose(f.sample(10.0), [0.5, 0.5, 0.5])


def test_trajectory_ending_exactly_now_is_accepted():
    g = goal(stamp=3.0, times=(1.0, 2.0), positions=((0, 0, 0), (0.4, 0.4, 0.4)), now=5.0)
    np.testing.assert_allclose(follower(g, now=5.0).sample(5.0), [0.4, 0.4, 0.4])


# --- interpolation ----------------------------------------------------------------------------


def test_linear_between_points_and_hold_after_last():
    g = goal(times=(0.0, 2.0, 3.0), positions=((0, 0, 0), (1.0, -1.0, 2.0), (0.0, 0.0, 0.0)))
    f = follower(g, now=10.0)
    np.testing.assert_allclose(f.sample(10.0), [0, 0, 0])
    np.testing.assert_allclose(f.sample(10.5), [0.25, -0.25, 0.5])
    np.testing.assert_allclose(f.sample(12.0), [1.0, -1.0, 2.0])
    np.testing.assert_allclose(f.sample(12.5), [0.5, -0.5, 1.0])
    np.testing.assert_allclose(f.sample(13.0), [0, 0, 0])
    np.testing.assert_allclose(f.sample(100.0), [0, 0, 0])
    assert f.active


def _numeric_derivatives(f, t, joint, h=1e-4):
    p = [f.sample(t + k * h)[joint] for k in (-2, -1, 0, 1, 2)]
    vel = (p[3] - p[1]) / (2 * h)
    acc = (p[3] - 2 * p[2] + p[1]) / h**2
    return vel, acc


def test_cubic_values_and_point_velocities():
    # one joint 0 -> 1 over 1 s with v0 = 1, v1 = 0 (moving a only; b, c stay at 0)
    g = goal(
        times=(0.0, 1.0, 2.0),
        positions=((0, 0, 0), (1.0, 0, 0), (0.5, 0, 0)),
        velocities=((1.0, 0, 0), (-0.5, 0, 0), (0, 0, 0)),
    )
    f = follower(g, now=10.0)
    # p(s) = s + x s^2 + y s^3 with d = 1 - 1 = 0, e = -0.5 - 1 = -1.5: x = 1.5, y = -1.5
    np.testing.assert_allclose(f.sample(10.5)[0], 0.5 + 1.5 * 0.25 - 1.5 * 0.125)
    np.testing.assert_allclose(f.sample(11.0)[0], 1.0)
    for t, expected in ((10.0 + 1e-4, 1.0), (11.0 - 1e-4, -0.5), (11.0 + 1e-4, -0.5), (12.0 - 1e-4, 0.0)):
        vel, _ = _numeric_derivatives(f, t, 0, h=1e-5)
        assert vel == pytest.approx(expected, abs=2e-3)
    np.testing.assert_allclose(f.sample(12.0), [0.5, 0, 0])


def test_quintic_hits_velocities_and_accelerations():
    g = goal(
        times=(0.0, 1.0, 3.0),
        positions=((0, 0, 0), (1.0, 0, 0), (2.0, 0, 0)),
        velocities=((0.0, 0, 0), (2.0, 0, 0), (0, 0, 0)),
        accelerations=((1.0, 0, 0), (-3.0, 0, 0), (0.5, 0, 0)),
    )
    f = follower(g, now=10.0)
    # first segment, T = 1: d = 1 - 0.5 = 0.5, e = 2 - 1 = 1, f = -4
    # p(s) = 0.5 s^2 + (5 - 4 - 2) s^3 + (-7.5 + 7 + 4) s^4 + (3 - 3 - 2) s^5
    s = 0.5
    np.testing.assert_allclose(f.sample(10.5)[0], 0.5 * s**2 - s**3 + 3.5 * s**4 - 2 * s**5)
    np.testing.assert_allclose(f.sample(11.0)[0], 1.0)
    checks = [(10.0, 0.0, 1.0), (11.0, 2.0, -3.0), (11.0, 2.0, -3.0), (13.0, 0, 0.5)]
    for (knot, v_expected, a_expected), side in zip(checks, (1, -1, 1, -1), strict=True):
        # differentiate 1 ms inside the segment; jerk up to ~50 m/s^3 moves acc by < 0.1
        vel, acc = _numeric_derivatives(f, knot + side * 1e-3, 0, h=1e-4)
        assert vel == pytest.approx(v_expected, abs=0.01)
        assert acc == pytest.approx(a_expected, abs=0.1)


def test_quintic_continuity_at_knots():
    g = goal(
        times=(0.0, 1.0, 2.0),
        positions=((0, 0, 0), (0.5, 0, 0), (0.0, 0, 0)),
        velocities=((0, 0, 0), (0.3, 0, 0), (0, 0, 0)),
        accelerations=((0, 0, 0), (-2.0, 0, 0), (0, 0, 0)),
        now=0.0,
    )
    f = follower(g, now=0.0)
    eps = 1e-6
    before, after = f.sample(1.0 - eps)[0], f.sample(1.0 + eps)[0]
    assert before == pytest.approx(0.5, abs=1e-5) and after == pytest.approx(0.5, abs=1e-5)
    v_before, a_before = _numeric_derivatives(f, 1.0 - 0.002, 0, h=5e-4)
    v_after, a_after = _numeric_derivatives(f, 1.0 + 0.002, 0, h=5e-4)
    assert v_before == pytest.approx(v_after, abs=0.02)
    assert a_before == pytest.approx(a_after, abs=0.2)
    assert a_before == pytest.approx(-2.0, abs=0.2)


def test_before_first_point_moves_from_current_state_linearly():
    g = goal(times=(2.0,), positions=((1.0, 1.0, 1.0),))
    f = follower(g, now=10.0, targets=(0.5, 0.5, 0.5), positions=(0.0, -1.0, 2.0))
    np.testing.assert_allclose(f.sample(10.0), [0.0, -1.0, 2.0])
    np.testing.assert_allclose(f.sample(11.0), [0.5, 0.0, 1.5])
    np.testing.assert_allclose(f.sample(12.0), [1.0, 1.0, 1.0])


def test_before_first_point_is_cubic_from_current_velocity():
    g = goal(
        times=(1.0, 2.0),
        positions=((1.0, 0, 0), (1.0, 0, 0)),
        velocities=((0, 0, 0), (0, 0, 0)),
        accelerations=((0, 0, 0), (0, 0, 0)),
    )
    f = follower(g, now=10.0, velocities=(2.0, 0.0, 0.0))
    # cubic from (p=0, v=2) to (p=1, v=0) over 1 s: d = -1, e = -2 -> x = -1, y = 0
    np.testing.assert_allclose(f.sample(10.5)[0], 2 * 0.5 - 0.25)
    vel, _ = _numeric_derivatives(f, 10.0 + 1e-4, 0, h=1e-5)
    assert vel == pytest.approx(2.0, abs=1e-2)


def test_replacement_starts_from_the_new_state():
    f = follower(goal(times=(1.0,), positions=((1.0, 1.0, 1.0),)), now=10.0)
    np.testing.assert_allclose(f.sample(10.5), [0.5, 0.5, 0.5])
    f.start(
        goal(times=(1.0,), positions=((-1.0, -1.0, -1.0),), now=10.5),
        10.5,
        np.full(3, 0.5),
        np.full(3, 0.4),
        np.zeros(3),
    )
    np.testing.assert_allclose(f.sample(10.5), [0.4, 0.4, 0.4])
    np.testing.assert_allclose(f.sample(11.0), [-0.3, -0.3, -0.3])
    np.testing.assert_allclose(f.sample(20.0), [-1.0, -1.0, -1.0])


def test_follower_activity_and_clear():
    f = TrajectoryFollower()
    assert not f.active
    with pytest.raises(RuntimeError):
        f.sample(0.0)
    g = goal()
    f.start(g, 10.0, np.zeros(3), np.zeros(3), np.zeros(3))
    assert f.active and f.goal.positions is g.positions
    f.clear()
    assert not f.active
