"""MuJoCo Warp backend: all worlds in one ``mujoco_warp`` Data on a CUDA GPU or Warp's CPU device."""

from __future__ import annotations

from typing import Any

import mujoco
import mujoco_warp as mjw
import numpy as np
import warp as wp

from sim_bridge_core.arrays import like
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


# Physics time of each scenario that sizes the contact and constraint buffers (constraint_sizes).
SIZING_S = 2.0


def constraint_sizes(robot: RobotModel) -> tuple[int, int]:
    """Contacts and constraint rows to allocate per world: twice the most that one world of the
    robot reaches on MuJoCo's own engine in SIZING_S of falling from its home pose (holding it),
    upright and, for a floating base, rolled onto its side and onto its back. MuJoCo Warp's
    default guess (64 rows for a Go1) is too small for a fallen legged robot (112 rows, measured),
    and what does not fit is dropped: wrong physics, without an error."""
    m = robot.model
    d = mujoco.MjData(m)
    free = [int(m.jnt_qposadr[j]) for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
    rolls = (0.0, 90.0, 180.0) if free else (0.0,)
    most_contacts = most_rows = 0
    for roll in rolls:
        mujoco.mj_resetData(m, d)
        d.qpos[:] = robot.home_qpos
        d.ctrl[:] = robot.home_ctrl
        for adr in free:  # turn the base about its forward axis
            mujoco.mju_mulQuat(d.qpos[adr + 3 : adr + 7], _roll_quat(roll), d.qpos[adr + 3 : adr + 7].copy())
        for _ in range(max(1, round(SIZING_S / m.opt.timestep))):
            mujoco.mj_step(m, d)
            most_contacts, most_rows = max(most_contacts, d.ncon), max(most_rows, d.nefc)
    return 2 * most_contacts, 2 * most_rows


def _roll_quat(degrees: float) -> np.ndarray:
    half = np.radians(degrees) / 2.0
    return np.array([np.cos(half), np.sin(half), 0.0, 0.0])


def _resolve_device(device: str) -> wp.context.Device:
    """The Warp device for ``device`` ("" = first CUDA GPU if there is one, else the CPU)."""
    if not device:
        device = "cuda:0" if wp.get_cuda_device_count() > 0 else "cpu"
    try:
        return wp.get_device(device)
    except (RuntimeError, ValueError) as exc:
        raise BackendError(f"Warp device '{device}' is not available: {exc}") from exc


def _buffer_sizes(robot: RobotModel) -> dict[str, int]:
    """``make_data``'s nconmax and njmax: ``constraint_sizes``, where they exceed MuJoCo Warp's own
    defaults (read from a one-world Data)."""
    contacts, rows = constraint_sizes(robot)
    defaults = mjw.make_data(robot.model, nworld=1)
    return {"nconmax": max(contacts, defaults.naconmax), "njmax": max(rows, defaults.njmax)}


class WarpBackend(SimBackend):
    """N worlds on MuJoCo Warp, in float32.

    One control period writes ctrl at each controller update, runs ``substeps`` calls of
    ``mjw.step`` in all and then ``mjw.kinematics``, so site positions describe the state
    after the step as in CpuBackend. On CUDA the whole period is one captured graph (one per
    number of controller updates), replayed every step.

    Contact and constraint buffers are sized by ``constraint_sizes`` (MuJoCo Warp's defaults drop
    the constraints of a fallen legged robot). Per-world model fields (``model_field``) use MuJoCo
    Warp's batched model arrays:
    a field whose array has a leading world dimension of 1 is shared, one of N gives
    each world its own value (kernels read row ``world % len``).

    ``resident``: the state stays on the device. ``read``, ``site_positions`` and the joint
    accessors give torch tensors on Warp's memory (``wp.to_torch``: no copy), and ``step`` and
    ``reset`` take torch tensors, so the fused loop never passes through the host. Otherwise
    every read is a numpy copy, as the simulator node's messages need.
    """

    def __init__(
        self, robot: RobotModel, num_envs: int, control_dt: float, device: str = "", resident: bool = False
    ) -> None:
        super().__init__(robot, num_envs, control_dt)
        self.device = _resolve_device(device)
        self.resident = resident
        with wp.ScopedDevice(self.device):
            try:
                self._model = mjw.put_model(robot.model)
                self._data = mjw.make_data(robot.model, nworld=num_envs, **_buffer_sizes(robot))
            except (NotImplementedError, ValueError, RuntimeError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise BackendError(f"MuJoCo Warp cannot simulate model '{robot.name}': {reason}") from exc
            self._all_worlds = wp.array(np.arange(num_envs), dtype=wp.int32)
            self._ctrl_cols = wp.array(robot.actuator_ids, dtype=wp.int32)
            self._qpos_cols = wp.array(robot.qpos_adr, dtype=wp.int32)
            self._all_qpos_cols = wp.array(np.arange(robot.model.nq), dtype=wp.int32)
            self._all_ctrl_cols = wp.array(np.arange(robot.model.nu), dtype=wp.int32)
            self._dof_cols = wp.array(np.arange(robot.model.nv), dtype=wp.int32)
        self._fields: dict[str, tuple[wp.array, np.ndarray | None]] = {}  # (device, host mirror)
        self._torch_views: dict[str, Any] = {}  # Data field -> torch tensor on its memory
        self._torch_columns: dict[bytes, Any] = {}  # column indices on the device
        # Per number of controller updates U: the (U, N, J) device setpoints and the captured period.
        self._setpoints: dict[int, wp.array] = {}
        self._graphs: dict[int, wp.Graph] = {}
        # One uncaptured period compiles and loads the kernels a period uses, so a graph
        # capture needs no module loading; the reset below discards its effect.
        self._run_period(self._setpoint_array(1))
        self.reset(np.arange(num_envs), np.tile(robot.home, (num_envs, 1)))

    def step(self, setpoints: np.ndarray) -> None:
        blocks, _ = setpoint_blocks(setpoints if self.resident else np.asarray(setpoints), self.substeps)
        device_setpoints = self._setpoint_array(len(blocks))
        if self.resident:
            wp.to_torch(device_setpoints).copy_(blocks * like(self.robot.ctrl_per_rad, blocks))
        else:
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
        if self.resident:
            self._reset_resident(ids, positions)
            return
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

    def _reset_resident(self, ids: Any, positions: Any) -> None:
        """``reset`` on the device: ids and positions as tensors (numpy is moved there), the masked
        reset and the writes as tensor ops."""
        import torch

        if len(ids) == 0:
            return
        robot, m, d = self.robot, self._model, self._data
        qpos, ctrl, efforts = self._view("qpos"), self._view("ctrl"), self._view("qfrc_actuator")
        ids = torch.as_tensor(ids, dtype=torch.int64, device=qpos.device)
        positions = torch.as_tensor(positions, dtype=qpos.dtype, device=qpos.device)
        reset = torch.zeros(self.num_envs, dtype=torch.bool, device=qpos.device)
        reset[ids] = True
        kept_efforts = efforts.clone()
        self._push_model_fields()
        with wp.ScopedDevice(self.device):
            mjw.reset_data(m, d, wp.from_torch(reset))
            rows = ids[:, None]
            qpos[ids] = like(robot.home_qpos, qpos)
            qpos[rows, self._columns(robot.qpos_adr)] = positions
            if robot.model.nu:
                ctrl[ids] = like(robot.home_ctrl, ctrl)
            ctrl[rows, self._columns(robot.actuator_ids)] = positions * like(robot.ctrl_per_rad, ctrl)
            mjw.forward(m, d)  # as in ``reset``: every world, then the others' efforts put back
        efforts.copy_(torch.where(reset[:, None], efforts, kept_efforts))

    def read(self, field: str, columns: np.ndarray) -> np.ndarray:
        if self.resident:
            return self._view(field)[:, self._columns(columns)]
        return getattr(self._data, field).numpy()[:, columns].astype(np.float64)

    def site_positions(self, site: int) -> np.ndarray:
        if self.resident:
            return self._view("site_xpos")[:, site]
        return self._data.site_xpos.numpy()[:, site].astype(np.float64)

    def _view(self, field: str) -> Any:
        """A torch tensor on the memory of a Data field (writes reach the worlds)."""
        view = self._torch_views.get(field)
        if view is None:
            view = self._torch_views[field] = wp.to_torch(getattr(self._data, field))
        return view

    def _columns(self, columns: np.ndarray) -> Any:
        """Column indices as a device tensor, made once per set of columns."""
        import torch

        key = np.asarray(columns, dtype=np.int64).tobytes()
        tensor = self._torch_columns.get(key)
        if tensor is None:
            tensor = self._torch_columns[key] = torch.tensor(
                np.frombuffer(key, dtype=np.int64), device=wp.device_to_torch(self.device)
            )
        return tensor

    def write_ctrl(self, ids: np.ndarray, actuators: np.ndarray, values: np.ndarray) -> None:
        with wp.ScopedDevice(self.device):
            columns = wp.array(np.asarray(actuators, dtype=np.int32), dtype=wp.int32)
            self._write(self._data.ctrl, np.asarray(ids, dtype=np.int32), columns, values)

    def add_joint_velocities(self, ids: np.ndarray, dofs: np.ndarray, delta: np.ndarray) -> None:
        if self.resident:
            qvel = self._view("qvel")
            qvel[ids[:, None], self._columns(dofs)] += delta
            return
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
        the device at the start of the next ``step`` or ``reset`` (one copy per field);
        resident, the returned array is a torch tensor on the device array itself.
        Quantities MuJoCo derives from a field (e.g. subtree masses) do not follow it.
        """
        if name in self._fields:
            batched, host = self._fields[name]
            return wp.to_torch(batched) if host is None else host
        owner, attr = (self._model.opt, name[4:]) if name.startswith("opt.") else (self._model, name)
        shared = getattr(owner, attr, None)
        if not isinstance(shared, wp.array) or not getattr(shared, "_is_batched", False):
            raise BackendError(f"MuJoCo Warp has no per-world model field '{name}'")
        host = np.repeat(shared.numpy()[:1], self.num_envs, axis=0)
        batched = wp.array(host, dtype=shared.dtype, device=self.device)
        batched._is_batched = True  # the tag put_model gives arrays with a world dimension
        setattr(owner, attr, batched)
        self._graphs.clear()  # a captured graph holds the old array's address
        if self.resident:
            self._fields[name] = (batched, None)
            return wp.to_torch(batched)
        self._fields[name] = (batched, host)
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
            if host is not None:
                device_array.assign(host)
