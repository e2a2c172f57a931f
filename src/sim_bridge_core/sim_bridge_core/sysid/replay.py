"""The servo setpoints a recorded run's commands produced, replayed the way the controller executed them.

This is the simulator's own command execution (``Simulator.apply_command`` and ``step``), fed
from the bag instead of the topics: a trajectory is accepted when it was received, from the
measured state at that moment (the last joint state recorded at or before it, which is what the
robot's joint_trajectory_controller took as the trajectory's start), and followed by a
``TrajectoryFollower`` sampled one controller update ahead; joints outside a partial goal keep
their setpoint. A forward position command steps the setpoint. Setpoints are clamped to the
joint limits, as the simulator does. The setpoints do not depend on the parameters being fitted
(the ramps start from *recorded* states), so they are computed once; the command delay then
only shifts them in time (``delayed``), exactly as ``CommandExecution`` shifts its setpoints.
"""

from __future__ import annotations

import numpy as np

from sim_bridge_core.models import RobotModel
from sim_bridge_core.sim.trajectory import TrajectoryFollower
from sim_bridge_core.sysid.bags import RecordedRun


class CommandReplay:
    """Setpoints of one recorded run at any time after its first command."""

    def __init__(self, run: RecordedRun, robot: RobotModel) -> None:
        self.robot = robot
        self.start_times = run.command_times
        # From when the setpoints are known: the first command, or the start of its trajectory if
        # stamped later (until then they depend on when the controller received it, which the bag
        # does not say, and on what it held before).
        first = run.commands[0]
        start = first.start_s if not isinstance(first, np.ndarray) and first.start_s is not None else 0.0
        self.known_from = max(float(run.command_times[0]), start)
        self._segments: list[TrajectoryFollower | np.ndarray] = []
        for time_s, command in zip(run.command_times, run.commands, strict=True):
            if isinstance(command, np.ndarray):
                self._segments.append(command)
                continue
            state = max(int(np.searchsorted(run.times, time_s, side="right")) - 1, 0)
            previous = self._at(len(self._segments) - 1, time_s) if self._segments else run.positions[state]
            follower = TrajectoryFollower()
            follower.start(command, time_s, previous, run.positions[state], run.velocities[state])
            self._segments.append(follower)

    def _at(self, segment: int, time_s: float) -> np.ndarray:
        """The setpoint segment ``segment`` writes at ``time_s`` (its trajectory sampled then)."""
        command = self._segments[segment]
        return command if isinstance(command, np.ndarray) else command.sample(time_s)

    def setpoints(self, times_s: np.ndarray, update_dt: float) -> np.ndarray:
        """(T, J) setpoints of the controller updates at ``times_s`` (each sampled ``update_dt`` ahead,
        as joint_trajectory_controller writes its next command); NaN before the first command."""
        times_s = np.asarray(times_s, dtype=float)
        out = np.full((len(times_s), self.robot.num_joints), np.nan)
        # A command takes effect at the update at or after it; 1 ns (ROS time's resolution) absorbs
        # the rounding of times computed as start + k * dt.
        segment = np.searchsorted(self.start_times, times_s + 1e-9, side="right") - 1
        for k in np.unique(segment[segment >= 0]):
            rows = np.flatnonzero(segment == k)
            command = self._segments[k]
            if isinstance(command, np.ndarray):
                out[rows] = command
            else:
                out[rows] = command.setpoints(times_s[rows] + update_dt)
        return self.robot.clamp(out)


def delayed(setpoints: np.ndarray, history: int, delay_steps: float) -> np.ndarray:
    """Rows ``history:`` of per-step ``setpoints`` as they reach the servos ``delay_steps`` steps late.

    ``setpoints`` starts ``history`` steps before the first row wanted; a fractional delay
    interpolates linearly between steps (whole steps reproduce ``CommandExecution.delayed``).
    """
    if not 0.0 <= delay_steps <= history:
        raise ValueError(f"delay of {delay_steps} steps outside [0, {history}]")
    rows = len(setpoints) - history
    position = np.arange(rows) + history - delay_steps
    below = np.floor(position).astype(int)
    fraction = (position - below)[:, None]
    above = np.minimum(below + 1, len(setpoints) - 1)
    return setpoints[below] * (1.0 - fraction) + setpoints[above] * fraction
