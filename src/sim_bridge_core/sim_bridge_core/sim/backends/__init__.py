"""Batched physics backends behind one interface; ``make_backend`` picks one by name."""

from __future__ import annotations

from sim_bridge_core.models import RobotModel
from sim_bridge_core.sim.backends.base import BackendError, SimBackend, substeps_per_control

BACKENDS = ("cpu", "warp")


def make_backend(
    name: str,
    robot: RobotModel,
    num_envs: int,
    control_dt: float,
    device: str = "",
    threads: int = 0,
    resident: bool = False,
) -> SimBackend:
    """The backend called ``name``: ``cpu`` (mujoco.batch) or ``warp`` (MuJoCo Warp on ``device``,
    its state kept there as torch tensors with ``resident``)."""
    if name == "warp":
        from sim_bridge_core.sim.backends.warp import WarpBackend

        return WarpBackend(robot, num_envs, control_dt, device=device, resident=resident)
    if resident:
        raise BackendError(f"the {name} backend's worlds live on the host: only warp keeps them on a device")
    if name == "cpu":
        from sim_bridge_core.sim.backends.cpu import CpuBackend

        return CpuBackend(robot, num_envs, control_dt, threads=threads)
    raise BackendError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "BackendError", "SimBackend", "make_backend", "substeps_per_control"]
