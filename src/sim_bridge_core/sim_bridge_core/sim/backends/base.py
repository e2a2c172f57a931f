"""The interface every batched physics backend implements.

A backend owns N worlds of one robot. It takes joint position targets for all worlds
at once, advances one control period (``substeps`` physics steps), and exposes joint
state as (N, J) arrays in the robot's joint order. Nothing here loops over worlds in
Python: implementations hand whole arrays to the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from sim_bridge_core.models import RobotModel


class BackendError(RuntimeError):
    """A backend that cannot serve the requested model or device."""


def substeps_per_control(control_dt: float, physics_dt: float) -> int:
    """Physics steps in one control period; control_dt must be a whole multiple of physics_dt."""
    ratio = control_dt / physics_dt
    substeps = round(ratio)
    if substeps < 1 or abs(ratio - substeps) > 1e-6:
        raise ValueError(
            f"control_dt {control_dt} s is not a whole multiple of the model's timestep {physics_dt} s"
        )
    return substeps


def setpoint_blocks(setpoints: np.ndarray, substeps: int) -> tuple[np.ndarray, int]:
    """(U, N, J) setpoints and the physics steps each is held for; ValueError if U does not divide."""
    blocks = setpoints[None] if setpoints.ndim == 2 else setpoints
    if substeps % len(blocks):
        raise ValueError(f"{len(blocks)} setpoint updates do not divide {substeps} physics steps")
    return blocks, substeps // len(blocks)


class SimBackend(ABC):
    """N worlds of one robot, stepped one control period at a time."""

    resident = False  # True: the state is read and written as device tensors (WarpBackend)

    def __init__(self, robot: RobotModel, num_envs: int, control_dt: float) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.robot = robot
        self.num_envs = num_envs
        self.control_dt = control_dt
        self.substeps = substeps_per_control(control_dt, robot.physics_dt)

    @abstractmethod
    def step(self, setpoints: np.ndarray) -> None:
        """Advance one control period under joint position setpoints.

        (N, J) setpoints are held for the whole period; (U, N, J) are U controller updates,
        each held for ``substeps / U`` physics steps (see ``sim_bridge_core.sim.control``).
        """

    @abstractmethod
    def reset(self, ids: np.ndarray, positions: np.ndarray) -> None:
        """Reset worlds ``ids`` to the model defaults with joint positions (len(ids), J) at rest."""

    @abstractmethod
    def read(self, field: str, columns: np.ndarray) -> np.ndarray:
        """(N, len(columns)) float64 values of an MjData field (``qpos``, ``qvel``,
        ``qfrc_actuator``, ``sensordata``) in every world, a fresh array."""

    def joint_positions(self) -> np.ndarray:
        """(N, J) positions of the controlled joints, a fresh array."""
        return self.read("qpos", self.robot.qpos_adr)

    def joint_velocities(self) -> np.ndarray:
        """(N, J) velocities of the controlled joints, a fresh array."""
        return self.read("qvel", self.robot.dof_adr)

    def joint_efforts(self) -> np.ndarray:
        """(N, J) actuator torque/force applied at each controlled joint in the last physics step."""
        return self.read("qfrc_actuator", self.robot.dof_adr)

    @abstractmethod
    def site_positions(self, site: int) -> np.ndarray:
        """(N, 3) world position of a site at the current state."""

    @abstractmethod
    def write_ctrl(self, ids: np.ndarray, actuators: np.ndarray, values: np.ndarray) -> None:
        """Set the controls of ``actuators`` in worlds ``ids`` to ``values`` (len(ids), len(actuators)),
        held until written again (actuators other than the controlled joints' servos)."""

    @abstractmethod
    def add_joint_velocities(self, ids: np.ndarray, dofs: np.ndarray, delta: np.ndarray) -> None:
        """Add ``delta`` (len(ids), len(dofs)) to the velocities of ``dofs`` in worlds ``ids`` (pushes)."""

    @abstractmethod
    def model_field(self, name: str) -> np.ndarray:
        """A live, writable (N, ...) per-world view of an MjModel field (e.g. ``body_mass``)."""
