"""Applies a randomization spec to the N worlds of a backend, vectorized over worlds.

A ``Randomizer`` owns four random streams spawned from one seed (model/episode
parameters, reset offsets, per-step noise, pushes), so the same seed gives the same
draws whatever else reads the state. It captures the backend's model fields at
construction; ``set_enabled(False)`` writes those nominal values back and makes actuation
and sensing pass through, ``set_enabled(True)`` puts the drawn values back in effect.

``BatchedEnv`` drives it through four hooks: ``on_reset`` (before the backend resets
worlds), ``actuate`` (the targets the backend steps with), ``after_step`` (after the
backend stepped) and ``measure_positions`` / ``measure_velocities`` (what a policy or a
JointState subscriber sees); the simulator passes its sensor rows through ``measure_imu``.

Visual parameters (lights, colours, textures, camera poses) are drawn by the same schedule and
curriculum and reported by ``applied`` like the physical ones, but never written into the
backend: only rendering reads those fields, so the physics cannot depend on them, and a renderer
renders from its own model copy anyway. ``visual_state`` hands a renderer each world's values,
which it writes into its copy before drawing that world. They come from a stream of their own,
so adding them leaves every physical draw of a seed as it was, and they are bound only for a
randomizer built with ``visual=True`` (the simulator with cameras): elsewhere nothing renders.

On a resident backend (MuJoCo Warp's state as device tensors) everything per world lives on the
device too: the drawn values, the delay buffer, bias and noise, the streams (torch Generators
seeded from the same seed sequence, so a seed gives other numbers there than in numpy) and the
model fields, written into Warp's batched model arrays directly. ``applied`` and ``visual_state``
give numpy copies: they feed messages and renderers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from sim_bridge_core.arrays import (
    integers,
    is_host,
    like,
    namespace,
    restore_stream,
    stream_state,
    to_host,
    zeros,
)
from sim_bridge_core.randomization.sampling import BoundParameter, bind
from sim_bridge_core.randomization.spec import (
    AXES,
    EPISODE,
    IMU_QUANTITIES,
    MODEL,
    STEP,
    VISUAL,
    RandomizationSpec,
)
from sim_bridge_core.sim.backends import SimBackend

# Noise drawn afresh every control step for every world.
STEP_NOISE = (
    "joint_position_noise",
    "joint_velocity_noise",
    *(f"imu_{quantity}_noise" for quantity, _ in IMU_QUANTITIES),
)
# Model fields that mj_setConst reads: writing them needs a set_const for derived constants.
_SETCONST_INPUTS = frozenset(getattr(mujoco.MjModel, "_setconst_inputs", ()))
_STREAMS = 5  # model/episode parameters, reset offsets, step noise, pushes, visual parameters
_ONE_ROW = np.zeros(1, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class VisualState:
    """Render-only values of some worlds, copied so that a renderer's thread can use them."""

    parameters: tuple[BoundParameter, ...]
    values: tuple[np.ndarray, ...]  # (worlds, K) per parameter

    def apply(self, model: mujoco.MjModel, world: int) -> None:
        """Write world ``world``'s values (its row of ``values``) into ``model``'s render fields."""
        for p, values in zip(self.parameters, self.values, strict=True):
            for write in p.writes:
                write.apply(getattr(model, write.field)[None], _ONE_ROW, values[world : world + 1])


class Randomizer:
    """Domain randomization of one backend's worlds; drawn once at construction (startup)."""

    def __init__(
        self, spec: RandomizationSpec, backend: SimBackend, seed: int | None = None, visual: bool = False
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.robot = backend.robot
        self.num_envs = n = backend.num_envs
        self.parameters = tuple(p for p in bind(spec, backend.robot) if visual or p.kind.stage != VISUAL)
        self._by_name = {p.name: p for p in self.parameters}
        self._model = [p for p in self.parameters if p.kind.stage == MODEL]
        self._visual = tuple(p for p in self.parameters if p.kind.stage == VISUAL)
        self._scheduled = [p for p in self.parameters if p.kind.stage in (MODEL, EPISODE)]
        reference = self._reference = backend.joint_positions()[:0]  # where the worlds' arrays live
        xp = self._xp = namespace(reference)
        self._all = xp.arange(n, device=reference.device)
        joints = self.robot.num_joints

        fields = sorted({w.field for p in self._model for w in p.writes})
        self._fields = {name: backend.model_field(name) for name in fields}
        self._nominal_fields = {name: xp.asarray(array, copy=True) for name, array in self._fields.items()}
        self._set_const = None
        if any(f in _SETCONST_INPUTS or f.startswith("opt.") for f in fields):
            batch = getattr(backend, "batch", None)
            self._set_const = getattr(batch, "set_const", None)  # the Warp backend has no per-world one

        # Drawn values in effect when enabled, (N, K) per parameter.
        self._values = {p.name: self._filled((n, p.size), p.nominal) for p in self.parameters}
        # Actuation and sensing state.
        delay = self._by_name.get("action_delay_steps")
        self._delay = zeros((n,), reference, "int")
        self._buffer = None
        self._head = 0
        if delay is not None:
            self._buffer = self._filled((int(delay.spec.high) + 1, n, joints), self.robot.home)
        self._bias = zeros((n, joints), reference) if "joint_position_bias" in self._by_name else None
        self._noise: dict[str, np.ndarray] = {}
        self._found_columns: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}  # _imu_columns
        push = self._by_name.get("push_velocity")
        self._push_countdown = zeros((n,), reference, "int")
        self._push_steps = (1, 1)
        self._pushes = push is not None
        if push is not None:
            low, high = push.spec.interval_s or (1.0, 1.0)
            self._push_steps = (self._steps(low), self._steps(high))
        self._interval_steps = self._steps(spec.interval_s) if spec.schedule == "interval" else 0

        self.step_count = 0
        self.version = 0  # grows whenever applied() changes, so publishers send only news
        self._enabled = spec.enabled
        self.seed(spec.seed if seed is None else seed)
        self.resample()
        self._draw_push_countdown(self._all)
        self._draw_step_noise()

    # ----------------------------------------------------------------- public API
    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def names(self) -> tuple[str, ...]:
        """Column names of ``applied()``: ``body_mass/link3``, ``gravity_z``, ``action_delay_steps``..."""
        return tuple(name for p in self._reported() for name in p.names)

    @property
    def fraction(self) -> float:
        """Curriculum fraction of every range in effect for the next draws."""
        return self.spec.curriculum.fraction(self.step_count)

    def seed(self, seed: int) -> None:
        """Restart the random streams from ``seed``."""
        children = np.random.SeedSequence(seed).spawn(_STREAMS)
        if is_host(self._reference):
            self._streams = tuple(np.random.default_rng(child) for child in children)
        else:
            import torch

            device = self._reference.device
            self._streams = tuple(
                torch.Generator(device).manual_seed(int(child.generate_state(1, np.uint64)[0] >> 1))
                for child in children
            )
        self._rng_params, self._rng_reset, self._rng_noise, self._rng_push, self._rng_visual = self._streams

    def state(self) -> dict[str, Any]:
        """What a training checkpoint needs to resume the draws and the curriculum (plain data)."""
        return {"step_count": self.step_count, "rng": [stream_state(g) for g in self._streams]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state()``: the curriculum's step count and the random streams (a checkpoint
        from before the visual stream restores the four it has; streams of the other side, numpy or
        device, are not restored)."""
        self.step_count = int(state["step_count"])
        for generator, saved in zip(self._streams, state["rng"], strict=False):
            restore_stream(generator, saved)

    def set_enabled(self, enabled: bool) -> None:
        """False: nominal physics (exactly the captured fields), no delay, noise, bias, offsets or pushes.
        A spec that says ``enabled: false`` stays off."""
        enabled = bool(enabled) and self.spec.enabled
        if enabled == self._enabled:
            return
        self._enabled = enabled
        self.version += 1
        if enabled:
            self._apply_model(self._all)
            self._draw_step_noise()
        else:
            for name, array in self._fields.items():
                array[...] = self._nominal_fields[name]
            if self._set_const is not None:
                self._set_const()
            self._noise.clear()

    def complete_curriculum(self) -> None:
        """The spec's full ranges from now on, drawn again: an evaluation under the spec, not under
        the early stage of its curriculum that fresh worlds would start at."""
        self.step_count = max(self.step_count, self.spec.curriculum.steps)
        self.resample()

    def resample(self, ids: np.ndarray | None = None) -> None:
        """New model parameters and per-world constants (delay, bias) for worlds ``ids`` (all by default)."""
        ids = self._all if ids is None else self._ids(ids)
        count = int(ids.shape[0])
        if count == 0:
            return
        fraction = self.fraction
        self.version += 1
        # Visual draws come from their own stream: adding them leaves a seed's physics as it was.
        drawn = [(p, self._rng_params) for p in self._scheduled]
        for p, rng in drawn + [(p, self._rng_visual) for p in self._visual]:
            self._values[p.name][ids] = p.effect(p.draw(rng, count), fraction)
        if "action_delay_steps" in self._values:
            self._delay[ids] = self._xp.astype(self._values["action_delay_steps"][ids, 0], self._xp.int64)
        if self._bias is not None:
            bias = self._by_name["joint_position_bias"]
            self._bias[ids[:, None], self._columns(bias)] = self._values[bias.name][ids]
        if self._enabled:
            self._apply_model(ids)

    def applied(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """(N, P) float64 values in effect and their P names (nominal ones while disabled).

        Model parameters give the field value (kg, friction coefficient, m/s^2...), the
        delay its steps, bias and initial offsets the offset, pushes the last kick. Per-step
        noise is not listed: it changes every step.
        """
        reported = self._reported()
        if not reported:
            return np.zeros((self.num_envs, 0)), ()
        columns = [self._in_effect(p, to_host(self._all)) for p in reported]
        return np.concatenate(columns, axis=1), self.names

    def visual_state(self, worlds: np.ndarray) -> VisualState | None:
        """A copy of worlds ``worlds``' visual values in effect (nominal while disabled), for a
        renderer's own model; None without visual parameters."""
        if not self._visual:
            return None
        return VisualState(self._visual, tuple(self._in_effect(p, worlds) for p in self._visual))

    def _in_effect(self, p: BoundParameter, worlds: np.ndarray) -> np.ndarray:
        """A numpy copy of ``p``'s values in worlds ``worlds``: drawn while enabled, else nominal."""
        if self._enabled:
            return np.array(to_host(self._values[p.name])[worlds], dtype=np.float64)
        return np.broadcast_to(p.nominal, (len(worlds), p.size)).copy()

    # ------------------------------------------------------------- env hooks
    def on_reset(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Before the backend resets worlds ``ids`` to ``positions`` (len(ids), J): the pose to reset to.

        The reset schedule redraws these worlds' parameters here; the initial joint offset
        is drawn at every reset. Delayed targets restart from the reset pose.
        """
        ids = self._ids(ids)
        if self.spec.schedule == "reset":
            self.resample(ids)
        offset = self._by_name.get("initial_joint_offset")
        if offset is not None:
            values = offset.effect(offset.draw(self._rng_reset, int(ids.shape[0])), self.fraction)
            self._values[offset.name][ids] = values
            if self._enabled:
                positions = self._copy(positions)
                positions[:, self._columns(offset)] += values
                positions = self.robot.clamp(positions)
        if self._buffer is not None:
            self._buffer[:, ids] = positions
        if self._pushes:
            self._draw_push_countdown(ids)
            self._values["push_velocity"][ids] = 0.0
        return positions

    def actuate(self, targets: np.ndarray) -> np.ndarray:
        """The targets (N, J) the backend holds this step: delayed per world, with action noise."""
        if self._buffer is not None:
            self._head = (self._head + 1) % len(self._buffer)
            self._buffer[self._head] = targets
            if self._enabled:
                targets = self._buffer[(self._head - self._delay) % len(self._buffer), self._all]
        noise = self._by_name.get("action_noise")
        if self._enabled and noise is not None:
            targets = self._copy(targets)
            self._perturb(
                noise, targets, noise.effect(noise.draw(self._rng_noise, self.num_envs), self.fraction)
            )
            targets = self.robot.clamp(targets)
        return targets

    def after_step(self) -> None:
        """After the backend stepped: interval resampling, pushes, and this step's sensor noise."""
        self.step_count += 1
        if self._interval_steps and self.step_count % self._interval_steps == 0:
            self.resample()
        if not self._enabled:
            return
        if self._pushes:
            self._push_countdown -= 1
            due = self._xp.nonzero(self._push_countdown <= 0)[0]
            if due.shape[0]:
                push = self._by_name["push_velocity"]
                kick = push.effect(push.draw(self._rng_push, int(due.shape[0])), self.fraction)
                self._values[push.name][due] = kick
                self.version += 1
                self.backend.add_joint_velocities(due, push.dofs, kick)
                self._draw_push_countdown(due)
        self._draw_step_noise()

    def measure_positions(self, positions: np.ndarray) -> np.ndarray:
        """Measured joint positions (N, J): true ones plus bias and this step's noise."""
        if not self._enabled:
            return positions
        measured = self._copy(positions)
        if self._bias is not None:
            measured += self._bias
        noise = self._noise.get("joint_position_noise")
        if noise is not None:
            self._perturb(self._by_name["joint_position_noise"], measured, noise)
        return measured

    def measure_velocities(self, velocities: np.ndarray) -> np.ndarray:
        """Measured joint velocities (N, J): true ones with this step's noise."""
        noise = self._noise.get("joint_velocity_noise")
        if not self._enabled or noise is None:
            return velocities
        measured = self._copy(velocities)
        self._perturb(self._by_name["joint_velocity_noise"], measured, noise)
        return measured

    def measure_imu(self, rows: np.ndarray, fields: Sequence[str]) -> np.ndarray:
        """Sensor rows (N, F), columns ``fields`` as ``sim_bridge_core.sim.sensors`` names them, as the
        IMU (``imu/...``) measures them: plus each world's bias and this step's noise."""
        parameters = [p for p in self.parameters if p.name.startswith("imu_")]
        if not self._enabled or not parameters:
            return rows
        measured = self._copy(rows)
        for p in parameters:
            columns = self._imu_columns(p, tuple(fields))
            if p.kind.stage == STEP:
                perturbation, operation = self._noise[p.name], p.spec.operation
            else:
                perturbation, operation = self._values[p.name], "add"
            if operation == "scale":
                measured[:, columns] *= perturbation
            else:
                measured[:, columns] += perturbation
        return measured

    # --------------------------------------------------------------- internals
    def _reported(self) -> list[BoundParameter]:
        return [p for p in self.parameters if p.kind.stage != STEP]

    def _steps(self, seconds: float) -> int:
        return max(1, round(seconds / self.backend.control_dt))

    def _filled(self, shape: tuple[int, ...], value: np.ndarray) -> np.ndarray:
        """An array of ``shape`` beside the worlds, every trailing row ``value``."""
        filled = zeros(shape, self._reference)
        return filled + self._xp.asarray(value, dtype=filled.dtype, device=self._reference.device)

    def _copy(self, values: np.ndarray) -> np.ndarray:
        """A writable copy beside the worlds (numpy: float64)."""
        if is_host(self._reference):
            return np.array(values, dtype=np.float64)
        return self._xp.asarray(values, copy=True)

    def _ids(self, ids: np.ndarray) -> np.ndarray:
        """World indices beside the worlds."""
        if is_host(self._reference):
            return np.asarray(ids, dtype=np.int64).reshape(-1)
        return self._xp.asarray(ids, device=self._reference.device)

    def _columns(self, p: BoundParameter) -> np.ndarray:
        return like(p.columns, self._reference, index=True)

    def _imu_columns(self, p: BoundParameter, fields: tuple[str, ...]) -> np.ndarray:
        """Where an IMU parameter's axes are among the sensor rows' ``fields``, beside the worlds
        (found once per parameter and layout: ``measure_imu`` runs every step)."""
        key = (p.name, fields)
        if key not in self._found_columns:
            quantity = p.name.removeprefix("imu_").rpartition("_")[0]
            columns = np.array([fields.index(f"imu/{quantity}_{AXES[a]}") for a in p.columns])
            self._found_columns[key] = self._xp.asarray(columns, device=self._reference.device)
        return self._found_columns[key]

    def _apply_model(self, ids: np.ndarray) -> None:
        if not self._model:
            return
        for p in self._model:
            values = self._values[p.name][ids]
            for write in p.writes:
                write.apply(self._fields[write.field], ids, values)
        if self._set_const is not None:
            self._set_const(None if ids.shape[0] == self.num_envs else ids)

    def _draw_step_noise(self) -> None:
        if not self._enabled:
            return
        for name in STEP_NOISE:
            p = self._by_name.get(name)
            if p is not None:
                self._noise[name] = p.effect(p.draw(self._rng_noise, self.num_envs), self.fraction)

    def _draw_push_countdown(self, ids: np.ndarray) -> None:
        if self._pushes and ids.shape[0]:
            low, high = self._push_steps
            self._push_countdown[ids] = integers(self._rng_push, low, high + 1, (int(ids.shape[0]),))

    def _perturb(self, p: BoundParameter, values: np.ndarray, perturbation: np.ndarray) -> None:
        """values[:, p.columns] += (or *=) perturbation, in place."""
        columns = self._columns(p)
        if p.spec.operation == "scale":
            values[:, columns] *= perturbation
        else:
            values[:, columns] += perturbation
