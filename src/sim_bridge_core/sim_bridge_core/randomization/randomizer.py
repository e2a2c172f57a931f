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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

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
        self._all = np.arange(n)
        joints = self.robot.num_joints

        fields = sorted({w.field for p in self._model for w in p.writes})
        self._fields = {name: backend.model_field(name) for name in fields}
        self._nominal_fields = {name: array.copy() for name, array in self._fields.items()}
        self._set_const = None
        if any(f in _SETCONST_INPUTS or f.startswith("opt.") for f in fields):
            batch = getattr(backend, "batch", None)
            self._set_const = getattr(batch, "set_const", None)  # the Warp backend has no per-world one

        # Drawn values in effect when enabled, (N, K) per parameter.
        self._values = {p.name: np.broadcast_to(p.nominal, (n, p.size)).copy() for p in self.parameters}
        # Actuation and sensing state.
        delay = self._by_name.get("action_delay_steps")
        self._delay = np.zeros(n, dtype=np.int64)
        self._buffer = None
        self._head = 0
        if delay is not None:
            self._buffer = np.broadcast_to(self.robot.home, (int(delay.spec.high) + 1, n, joints)).copy()
        self._bias = np.zeros((n, joints)) if "joint_position_bias" in self._by_name else None
        self._noise: dict[str, np.ndarray] = {}
        push = self._by_name.get("push_velocity")
        self._push_countdown = np.zeros(n, dtype=np.int64)
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
        self._streams = tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(_STREAMS))
        self._rng_params, self._rng_reset, self._rng_noise, self._rng_push, self._rng_visual = self._streams

    def state(self) -> dict[str, Any]:
        """What a training checkpoint needs to resume the draws and the curriculum (plain data)."""
        return {"step_count": self.step_count, "rng": [g.bit_generator.state for g in self._streams]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from ``state()``: the curriculum's step count and the random streams (a checkpoint
        from before the visual stream restores the four it has)."""
        self.step_count = int(state["step_count"])
        for generator, saved in zip(self._streams, state["rng"], strict=False):
            generator.bit_generator.state = saved

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
        ids = self._all if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            return
        fraction = self.fraction
        self.version += 1
        # Visual draws come from their own stream: adding them leaves a seed's physics as it was.
        drawn = [(p, self._rng_params) for p in self._scheduled]
        for p, rng in drawn + [(p, self._rng_visual) for p in self._visual]:
            self._values[p.name][ids] = p.effect(p.draw(rng, ids.size), fraction)
        if "action_delay_steps" in self._values:
            self._delay[ids] = self._values["action_delay_steps"][ids, 0].astype(np.int64)
        if self._bias is not None:
            bias = self._by_name["joint_position_bias"]
            self._bias[ids[:, None], bias.columns] = self._values[bias.name][ids]
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
        columns = [self._in_effect(p, self._all) for p in reported]
        return np.concatenate(columns, axis=1), self.names

    def visual_state(self, worlds: np.ndarray) -> VisualState | None:
        """A copy of worlds ``worlds``' visual values in effect (nominal while disabled), for a
        renderer's own model; None without visual parameters."""
        if not self._visual:
            return None
        return VisualState(self._visual, tuple(self._in_effect(p, worlds) for p in self._visual))

    def _in_effect(self, p: BoundParameter, worlds: np.ndarray) -> np.ndarray:
        """A copy of ``p``'s values in worlds ``worlds``: drawn while enabled, else nominal."""
        if self._enabled:
            return self._values[p.name][worlds]
        return np.broadcast_to(p.nominal, (len(worlds), p.size)).copy()

    # ------------------------------------------------------------- env hooks
    def on_reset(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Before the backend resets worlds ``ids`` to ``positions`` (len(ids), J): the pose to reset to.

        The reset schedule redraws these worlds' parameters here; the initial joint offset
        is drawn at every reset. Delayed targets restart from the reset pose.
        """
        if self.spec.schedule == "reset":
            self.resample(ids)
        offset = self._by_name.get("initial_joint_offset")
        if offset is not None:
            values = offset.effect(offset.draw(self._rng_reset, ids.size), self.fraction)
            self._values[offset.name][ids] = values
            if self._enabled:
                positions = np.array(positions, dtype=np.float64)
                positions[:, offset.columns] += values
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
            targets = np.array(targets, dtype=np.float64)
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
            due = np.flatnonzero(self._push_countdown <= 0)
            if due.size:
                push = self._by_name["push_velocity"]
                kick = push.effect(push.draw(self._rng_push, due.size), self.fraction)
                self._values[push.name][due] = kick
                self.version += 1
                self.backend.add_joint_velocities(due, push.dofs, kick)
                self._draw_push_countdown(due)
        self._draw_step_noise()

    def measure_positions(self, positions: np.ndarray) -> np.ndarray:
        """Measured joint positions (N, J): true ones plus bias and this step's noise."""
        if not self._enabled:
            return positions
        measured = np.array(positions, dtype=np.float64)
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
        measured = np.array(velocities, dtype=np.float64)
        self._perturb(self._by_name["joint_velocity_noise"], measured, noise)
        return measured

    def measure_imu(self, rows: np.ndarray, fields: Sequence[str]) -> np.ndarray:
        """Sensor rows (N, F), columns ``fields`` as ``sim_bridge_core.sim.sensors`` names them, as the
        IMU (``imu/...``) measures them: plus each world's bias and this step's noise."""
        parameters = [p for p in self.parameters if p.name.startswith("imu_")]
        if not self._enabled or not parameters:
            return rows
        measured = np.array(rows, dtype=np.float64)
        for p in parameters:
            quantity = p.name.removeprefix("imu_").rpartition("_")[0]
            columns = np.array([fields.index(f"imu/{quantity}_{AXES[a]}") for a in p.columns])
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

    def _apply_model(self, ids: np.ndarray) -> None:
        if not self._model:
            return
        for p in self._model:
            values = self._values[p.name][ids]
            for write in p.writes:
                write.apply(self._fields[write.field], ids, values)
        if self._set_const is not None:
            self._set_const(None if ids.size == self.num_envs else ids)

    def _draw_step_noise(self) -> None:
        if not self._enabled:
            return
        for name in STEP_NOISE:
            p = self._by_name.get(name)
            if p is not None:
                self._noise[name] = p.effect(p.draw(self._rng_noise, self.num_envs), self.fraction)

    def _draw_push_countdown(self, ids: np.ndarray) -> None:
        if self._pushes and ids.size:
            low, high = self._push_steps
            self._push_countdown[ids] = self._rng_push.integers(low, high + 1, ids.size)

    @staticmethod
    def _perturb(p: BoundParameter, values: np.ndarray, perturbation: np.ndarray) -> None:
        """values[:, p.columns] += (or *=) perturbation, in place."""
        if p.spec.operation == "scale":
            values[:, p.columns] *= perturbation
        else:
            values[:, p.columns] += perturbation
