"""The command contract: what a commanded joint position does on the robot inside one control period.

A policy sends one command per control period; the robot's controller turns it into position
setpoints for the servos at its own update rate, several times per period. Two ros2_control
controllers are modelled, each the way it runs on Jazzy:

* ``trajectory`` (joint_trajectory_controller, one point ``time_from_start`` = one control period
  ahead, stamp 0): at its first update after the command arrives the controller takes the
  measured position as the point before the trajectory; every update then writes the linear
  interpolation sampled one update period ahead, so the setpoint ramps from the measured position
  to the target over the period and holds the target afterwards.
* ``position`` (forward_command_controller / JointGroupPositionController on ``~/commands``):
  the position is written at the next update and held.

``CommandExecution`` does this for N worlds at once. Training executes every action through it,
and the simulator executes the commands it receives through it, so a policy meets in training
exactly the setpoints that its commands produce on a robot. Its state lives where ``initial`` does:
numpy arrays, or torch tensors on the device of device-resident worlds.
"""

from __future__ import annotations

import numpy as np

from sim_bridge_core.arrays import is_host, like, namespace

COMMAND_INTERFACES = ("trajectory", "position")
# The topic each interface's commands go to, relative to the node (ros2_control's controllers take
# them on /<controller>/joint_trajectory and /<controller>/commands: remap to those).
COMMAND_TOPIC_NAMES = {"trajectory": "joint_trajectory", "position": "joint_commands"}


def updates_per_period(substeps: int, physics_dt: float, controller_rate_hz: float) -> int:
    """Controller updates in one control period of ``substeps`` physics steps (0 Hz: every physics step).

    The controller period must be a whole number of physics steps that divides the control period.
    """
    if controller_rate_hz <= 0:
        return substeps
    steps = round(1.0 / (controller_rate_hz * physics_dt))
    if steps < 1 or abs(steps * physics_dt * controller_rate_hz - 1.0) > 1e-6 or substeps % steps:
        raise ValueError(
            f"{controller_rate_hz} Hz is not a whole number of physics steps "
            f"({physics_dt} s) dividing the control period ({substeps} physics steps)"
        )
    return substeps // steps


class CommandExecution:
    """Per-world controller state: the command in effect and whether it is still being ramped to.

    ``setpoints()`` gives the (U, N, J) position setpoints of the coming control period, one row
    per controller update (each held for ``substeps / U`` physics steps); the position interface
    needs only one row. With a command delay of ``delay_steps`` physics steps (the time a command
    takes to reach the servos), the rows are per physics step and shifted by that many.
    """

    def __init__(
        self, interface: str, updates: int, initial: np.ndarray, substeps: int = 1, delay_steps: int = 0
    ) -> None:
        if interface not in COMMAND_INTERFACES:
            raise ValueError(
                f"unknown command interface '{interface}' (choose from {', '.join(COMMAND_INTERFACES)})"
            )
        self.interface = interface
        self.updates = updates if interface == "trajectory" else 1
        self.substeps = substeps
        xp = self._xp = namespace(initial)
        host = is_host(initial)
        self.target = np.array(initial, dtype=np.float64) if host else xp.asarray(initial, copy=True)
        self.start = xp.asarray(self.target, copy=True)
        self.ramping = xp.zeros(self.target.shape[0], dtype=xp.bool, device=self.target.device)
        # Fraction of the way from start to target at each update, sampled one update ahead.
        self._fraction = like((np.arange(1, self.updates + 1) / self.updates)[:, None, None], self.target)
        # Setpoints still on their way to the servos, oldest first (delay_steps, N, J).
        self._in_flight = xp.repeat(self.target[None], delay_steps, axis=0)

    def command(self, targets: np.ndarray, measured: np.ndarray, worlds: np.ndarray | None = None) -> None:
        """New commands for ``worlds`` (all by default), answering the measured positions ``measured``."""
        rows = slice(None) if worlds is None else worlds
        self.target[rows] = targets if worlds is None else targets[worlds]
        if self.interface == "trajectory":
            self.start[rows] = measured if worlds is None else measured[worlds]
            self.ramping[rows] = True

    def hold(self, worlds: np.ndarray, positions: np.ndarray) -> None:
        """Worlds ``worlds`` hold ``positions`` (len(worlds), J) from now on (after a reset)."""
        self.target[worlds] = positions
        self.start[worlds] = positions
        self.ramping[worlds] = False
        self._in_flight[:, worlds] = positions

    def hold_target(self, world: int, position: np.ndarray) -> None:
        """World ``world`` holds ``position`` from the next period (what it was set to reaches it)."""
        self.target[world] = position
        self.start[world] = position
        self.ramping[world] = False

    def setpoints(self, delay: bool = True) -> np.ndarray:
        """(U, N, J) setpoints of the coming period; a ramp started by a command ends with it.
        ``delay=False`` leaves them undelayed, for a caller that changes some before ``delayed``."""
        if is_host(self.ramping) and not self.ramping.any():  # (on a device, asking would wait for it)
            setpoints = self.target[None]
        else:
            ramp = self.start + (self.target - self.start) * self._fraction
            setpoints = self._xp.where(self.ramping[None, :, None], ramp, self.target[None])
            self.ramping[:] = False
        return self.delayed(setpoints) if delay else setpoints

    def delayed(self, setpoints: np.ndarray) -> np.ndarray:
        """(U, N, J) setpoints as they reach the servos: per physics step, ``delay_steps`` late."""
        if not len(self._in_flight):
            return setpoints
        xp = self._xp
        per_step = xp.repeat(setpoints, self.substeps // len(setpoints), axis=0)
        queue = xp.concat([self._in_flight, per_step])
        self._in_flight = xp.asarray(queue[self.substeps :], copy=True)
        return queue[: self.substeps]
