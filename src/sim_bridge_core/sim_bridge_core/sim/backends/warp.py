"""MuJoCo Warp backend: all worlds in one ``mujoco_warp`` Data on a CUDA GPU or Warp's CPU device."""

from __future__ import annotations

import mujoco_warp as mjw
import numpy as np
import warp as wp

from sim_bridge_core.models import RobotModel
from sim_bridge_core.sim.backends.base import BackendError, SimBackend, setpoint_blocks

wp.config.quiet = True  # no banner or per-module load lines in node output


@wp.kernel
def _scatter(
    rows: wp.array(dtype=wp.int32),
    cols: wp.array(dtype=wp.int32),
    values: wp.array2d(dtype=wp.float32),
    out: wp.array2d(dtype=wp.float32),
):
    """out[rows[i], cols[j]] = values[i, j]: a block of (world, column) entries in one launch."""
    i, j = wp.tid()
    out[rows[i], cols[j]] = values[i, j]


def _resolve_device(device: str) -> wp.context.Device:
    """The Warp device for ``device`` ("" = first CUDA GPU if there is one, else the CPU)."""
    if not device:
        device = "cuda:0" if wp.get_cuda_device_count() > 0 else "cpu"
    try:
        return wp.get_device(device)
    except (RuntimeError, ValueError) as exc:
        raise BackendError(f"Warp device '{device}' is not available: {exc}") from exc


class WarpBackend(SimBackend):
    """N worlds on MuJoCo Warp, in float32.

    One control period writes ctrl at each controller update, runs ``substeps`` calls of
    ``mjw.step`` in all and then ``mjw.kinematics``, so site positions describe the state
    after the step as in CpuBackend. On CUDA the whole period is one captured graph (one per
    number of controller updates), replayed every step.

    Per-world model fields (``model_field``) use MuJoCo Warp's batched model arrays:
    a field whose array has a leading world dimension of 1 is shared, one of N gives
    each world its own value (kernels read row ``world % len``).
    """

    def __init__(self, robot: RobotModel, num_envs: int, control_dt: float, device: str = "") -> None:
        super().__init__(robot, num_envs, control_dt)
        self.device = _resolve_device(device)
        with wp.ScopedDevice(self.device):
            try:
                self._model = mjw.put_model(robot.model)
                self._data = mjw.make_data(robot.model, nworld=num_envs)
            except (NotImplementedError, ValueError, RuntimeError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise BackendError(f"MuJoCo Warp cannot simulate model '{robot.name}': {reason}") from exc
            self._all_worlds = wp.array(np.arange(num_envs), dtype=wp.int32)
            self._ctrl_cols = wp.array(robot.actuator_ids, dtype=wp.int32)
            self._qpos_cols = wp.array(robot.qpos_adr, dtype=wp.int32)
            self._all_qpos_cols = wp.array(np.arange(robot.model.nq), dtype=wp.int32)
            self._all_ctrl_cols = wp.array(np.arange(robot.model.nu), dtype=wp.int32)
            self._dof_cols = wp.array(np.arange(robot.model.nv), dtype=wp.int32)
        self._fields: dict[str, tuple[wp.array, np.ndarray]] = {}
        # Per number of controller updates U: the (U, N, J) device setpoints and the captured period.
        self._setpoints: dict[int, wp.array] = {}
        self._graphs: dict[int, wp.Graph] = {}
        # One uncaptured period compiles and loads the kernels a period uses, so a graph
        # capture needs no module loading; the reset below discards its effect.
        self._run_period(self._setpoint_array(1))
        self.reset(np.arange(num_envs), np.broadcast_to(robot.home, (num_envs, robot.num_joints)))

    def step(self, setpoints: np.ndarray) -> None:
        blocks, _ = setpoint_blocks(np.asarray(setpoints), self.substeps)
        device_setpoints = self._setpoint_array(len(blocks))
        device_setpoints.assign(np.asarray(blocks * self.robot.ctrl_per_rad, dtype=np.float32))
        self._push_model_fields()
        if not self.device.is_cuda:
            self._run_period(device_setpoints)
            return
        graph = self._graphs.get(len(blocks))
        if graph is None:
            graph = self._graphs[len(blocks)] = self._capture(device_setpoints)
        wp.capture_launch(graph)

    def reset(self, ids: np.ndarray, positions: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int32)
        if ids.size == 0:
            return
        positions = np.asarray(positions, dtype=np.float32).reshape(ids.size, self.robot.num_joints)
        reset = np.zeros(self.num_envs, dtype=bool)
        reset[ids] = True
        others = np.flatnonzero(~reset).astype(np.int32)
        m, d = self._model, self._data
        self._push_model_fields()
        with wp.ScopedDevice(self.device):
            mjw.reset_data(m, d, wp.array(reset, dtype=bool))
            self._write(d.qpos, ids, self._all_qpos_cols, np.tile(self.robot.home_qpos, (ids.size, 1)))
            self._write(d.qpos, ids, self._qpos_cols, positions)
            if self.robot.model.nu:
                self._write(d.ctrl, ids, self._all_ctrl_cols, np.tile(self.robot.home_ctrl, (ids.size, 1)))
            self._write(d.ctrl, ids, self._ctrl_cols, positions * self.robot.ctrl_per_rad)
            # mjw.forward has no world mask: run it for all worlds (it recomputes derived
            # quantities and changes no state), then put back the efforts of the worlds
            # not reset, which report the force applied in their last step.
            efforts = d.qfrc_actuator.numpy()[others]
            mjw.forward(m, d)
            self._write(d.qfrc_actuator, others, self._dof_cols, efforts)

    def read(self, field: str, columns: np.ndarray) -> np.ndarray:
        return getattr(self._data, field).numpy()[:, columns].astype(np.float64)

    def site_positions(self, site: int) -> np.ndarray:
        return self._data.site_xpos.numpy()[:, site].astype(np.float64)

    def write_ctrl(self, ids: np.ndarray, actuators: np.ndarray, values: np.ndarray) -> None:
        with wp.ScopedDevice(self.device):
            columns = wp.array(np.asarray(actuators, dtype=np.int32), dtype=wp.int32)
            self._write(self._data.ctrl, np.asarray(ids, dtype=np.int32), columns, values)

    def add_joint_velocities(self, ids: np.ndarray, dofs: np.ndarray, delta: np.ndarray) -> None:
        qvel = (
            self._data.qvel.numpy()
        )  # rare (pushes): a host round trip is cheaper than a kernel launch setup
        qvel[np.asarray(ids)[:, None], dofs] += delta
        self._data.qvel.assign(qvel)

    def model_field(self, name: str) -> np.ndarray:
        """A writable (N, ...) host array of per-world values of a model field.

        Names are MjModel field names, and ``opt.<name>`` for options, as in CpuBackend.
        The first call gives the field a leading world dimension of N on the device,
        every world starting from the shared value. Writes to the returned array reach
        the device at the start of the next ``step`` or ``reset`` (one copy per field).
        Quantities MuJoCo derives from a field (e.g. subtree masses) do not follow it.
        """
        if name in self._fields:
            return self._fields[name][1]
        owner, attr = (self._model.opt, name[4:]) if name.startswith("opt.") else (self._model, name)
        shared = getattr(owner, attr, None)
        if not isinstance(shared, wp.array) or not getattr(shared, "_is_batched", False):
            raise BackendError(f"MuJoCo Warp has no per-world model field '{name}'")
        host = np.repeat(shared.numpy()[:1], self.num_envs, axis=0)
        batched = wp.array(host, dtype=shared.dtype, device=self.device)
        batched._is_batched = True  # the tag put_model gives arrays with a world dimension
        setattr(owner, attr, batched)
        self._fields[name] = (batched, host)
        self._graphs.clear()  # a captured graph holds the old array's address
        return host

    def _setpoint_array(self, updates: int) -> wp.array:
        array = self._setpoints.get(updates)
        if array is None:
            shape = (updates, self.num_envs, self.robot.num_joints)
            array = self._setpoints[updates] = wp.zeros(shape, dtype=wp.float32, device=self.device)
        return array

    def _run_period(self, setpoints: wp.array) -> None:
        """One control period: each controller update writes ctrl, then holds it for its physics steps."""
        m, d = self._model, self._data
        hold = self.substeps // setpoints.shape[0]
        with wp.ScopedDevice(self.device):
            for update in range(setpoints.shape[0]):
                wp.launch(
                    _scatter,
                    dim=(self.num_envs, self.robot.num_joints),
                    inputs=[self._all_worlds, self._ctrl_cols, setpoints[update]],
                    outputs=[d.ctrl],
                )
                for _ in range(hold):
                    mjw.step(m, d)
            mjw.kinematics(m, d)

    def _capture(self, setpoints: wp.array) -> wp.Graph:
        """One control period recorded as a CUDA graph, replayed by every later step."""
        with wp.ScopedCapture(device=self.device, force_module_load=False) as capture:
            self._run_period(setpoints)
        return capture.graph

    def _write(self, out: wp.array, rows: np.ndarray, cols: wp.array, values: np.ndarray) -> None:
        """out[rows, cols] = values (len(rows), len(cols)) on the device, in one launch."""
        if rows.size == 0:
            return
        wp.launch(
            _scatter,
            dim=values.shape,
            inputs=[
                wp.array(rows, dtype=wp.int32, device=self.device),
                cols,
                wp.array(np.asarray(values, dtype=np.float32), dtype=wp.float32, device=self.device),
            ],
            outputs=[out],
            device=self.device,
        )

    def _push_model_fields(self) -> None:
        for device_array, host in self._fields.values():
            device_array.assign(host)
