"""System identification of a position-controlled robot from recorded runs, with ``mujoco.sysid``.

The data: each run's joint states, cut into windows of ``window_s``; every window starts from
its recorded state and is rolled out open loop under the servo setpoints its commands produced
(``replay``). Every ``holdout_every``-th window is held out of the fit and only reported on, and
so is whatever exceeds ``max_fit_s`` of the rest.

The model: the robot as the simulator loads it (``load_robot``, the robot config's overrides
included), with the unknowns written by ``apply_model_parameters`` — the very function that
applies a robot config's ``model_parameters`` in the simulator — so what is fitted is what the
simulator will run. Unknowns per joint: damping, armature, frictionloss and the servo's kp and
kv; and the command delay, which shifts the setpoints in time (fractional steps interpolate;
the simulator applies whole physics steps, so the reported errors use the rounded delay).

The toolbox: ``mujoco.sysid`` parameters, model sequences, residual, Levenberg-Marquardt
optimizer (``optimizer="mujoco"``) and confidence intervals, with its documented hooks: a
``build_model`` (the compiled model + ``apply_model_parameters``), a ``custom_rollout`` (the
delayed setpoints into ``mujoco.rollout``) and a ``modify_residual`` (position errors, and
velocity errors times ``velocity_weight_s``, at the recorded sample times). Unknowns are scaled
to units of order one (their nominal value, or a typical size where that is zero), the delay
starts at the best whole-step value, and a weak prior (``PRIOR_WEIGHT`` per unit) keeps
directions the data cannot see at their nominal values:
joint damping and servo kv, for instance, act alike (both -c*qdot at the joint) until the servo
saturates, so the data fixes their sum only. Uncertainties come from the data alone (the
prior's rows left out): a parameter the data does not pin down gets a wide or infinite one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout

from sim_bridge_core.models import ModelParameters, RobotModel
from sim_bridge_core.models.parameters import JOINT_FIELDS, apply_model_parameters
from sim_bridge_core.sysid.bags import RecordedRun, SysidInputError
from sim_bridge_core.sysid.config import DELAY, SysidConfig
from sim_bridge_core.sysid.replay import CommandReplay, delayed
from sim_bridge_core.sysid.selection import joint_motion, judge, pinned, relative, unpinned_reason

SYSID_MISSING = "the sysid extra is not installed: pip install 'mujoco[sysid]'"
# The measurement noise assumed at least, rad: a joint encoder and servo's, and what a noise-free
# simulated bag is taken to have. It weighs the prior (per unit of a parameter's deviation from
# nominal, in the residual's units: wherever the data says anything, the data wins) and floors the
# residual RMS the confidence intervals are computed from.
NOISE_FLOOR = 3e-4
PRIOR_WEIGHT = NOISE_FLOOR
FD_STEP = 1e-6  # finite-difference step, relative to max(1, |x|), x in units
DELAY_UNIT_S = 1e-3
# Confidence intervals: eigenvalues of J'J below LAMBDA_ZERO of the largest count as zero,
# eigenvector parts below V_ZERO as none.
LAMBDA_ZERO = 1e-10
V_ZERO = 1e-3
# An estimate still moving by more than its half-width over this many iterations has not settled.
SETTLE_ITERATIONS = 3
# Refits with the unidentified parameters at nominal, at most (each may find one more to fix).
MAX_ROUNDS = 3


def load_sysid() -> Any:
    """``mujoco.sysid``, or SysidInputError when its extra is missing (the module then imports empty)."""
    from mujoco import sysid

    if not hasattr(sysid, "Parameter"):
        raise SysidInputError(SYSID_MISSING)
    return sysid


@dataclass(frozen=True)
class Unknown:
    """One fitted parameter: ``joint.kind`` or the delay, its nominal value, bounds and unit."""

    name: str
    joint: str | None
    kind: str
    nominal: float
    lower: float
    upper: float
    unit: float


@dataclass(frozen=True)
class Window:
    """A stretch of one run rolled out open loop from its first recorded state."""

    start_s: float
    initial_positions: np.ndarray  # (J,)
    initial_velocities: np.ndarray  # (J,)
    times: np.ndarray  # (M,) recorded samples after the start
    positions: np.ndarray  # (M, J)
    velocities: np.ndarray  # (M, J)
    setpoints: np.ndarray  # (history + steps, J), one per physics step from start - history steps
    steps: int
    held_out: bool


@dataclass
class SysidResult:
    """Everything the outputs need: the unknowns, their values, and the errors before and after."""

    joint_names: tuple[str, ...]
    unknowns: list[Unknown]
    identified: dict[str, float]  # what robot.yaml holds: the fit's value if identified, else nominal
    estimates: dict[str, float]  # the first fit's values, every unknown free
    reasons: dict[str, str | None]  # None: identified by the data; else why it stays nominal
    partners: dict[str, str]  # a parameter kept nominal -> the identified one it could not be told from
    sensitivity: dict[str, float]  # RMS change of the predictions for a 10 % change, rad
    motion: dict[str, float]  # per joint, RMS of its recorded positions in the fit windows, rad
    half_widths: dict[str, float]  # 95 % confidence half-widths, data alone (inf: not identifiable)
    sum_half_widths: dict[str, float]  # per joint, of damping + kv
    moved: dict[str, float]  # each estimate's change over the last SETTLE_ITERATIONS iterations
    errors: dict[str, dict[str, Any]]  # fit / held_out / validation -> nominal / identified -> figures
    windows: list[Window]  # the bags' (fitted and held out), then the validation bags' (held out)
    runs: list[RecordedRun]
    validation_runs: list[RecordedRun]
    window_s: float
    physics_dt: float
    iterations: int
    wall_s: float = 0.0
    traces: dict[str, list[np.ndarray]] = field(default_factory=dict)  # <part>.<nominal|identified>
    log: str = ""

    def written(self) -> list[Unknown]:
        """The unknowns the data identified: the only ones robot.yaml sets."""
        return [u for u in self.unknowns if self.reasons[u.name] is None]

    def parameters(self) -> ModelParameters:
        """The identified values as model_parameters overrides: joint fields, and the delay in
        whole physics steps as the simulator applies it."""
        return parameters_from(self.written(), self.identified, self.physics_dt)


def parameters_from(
    unknowns: Sequence[Unknown], values: dict[str, float], physics_dt: float
) -> ModelParameters:
    joints: dict[str, dict[str, float]] = {}
    delay = 0.0
    for unknown in unknowns:
        value = values[unknown.name]
        if unknown.joint is None:
            delay = round(value / physics_dt) * physics_dt
        else:
            joints.setdefault(unknown.joint, {})[unknown.kind] = value
    return ModelParameters(joints=joints, command_delay_s=delay)


def nominal_values(robot: RobotModel) -> dict[str, dict[str, float]]:
    """Per joint, the model's damping, armature, frictionloss and servo kp / kv (overrides applied)."""
    m = robot.model
    values = {}
    for j, name in enumerate(robot.joint_names):
        dof, act = robot.dof_adr[j], robot.actuator_ids[j]
        values[name] = {
            "damping": float(m.dof_damping[dof]),
            "armature": float(m.dof_armature[dof]),
            "frictionloss": float(m.dof_frictionloss[dof]),
            "kp": float(m.actuator_gainprm[act, 0]),
            "kv": float(-m.actuator_biasprm[act, 2]),
        }
    return values


def make_unknowns(robot: RobotModel, fit: Sequence[str], max_delay_s: float) -> list[Unknown]:
    """The parameters to fit, scaled so that one unit is their nominal value (or a typical size)."""
    unknowns = []
    m = robot.model
    for j, (joint, values) in enumerate(nominal_values(robot).items()):
        act = robot.actuator_ids[j]
        force = float(np.abs(m.actuator_forcerange[act]).max()) if m.actuator_forcelimited[act] else 0.0
        typical = {
            "damping": 0.1,
            "armature": 0.01,
            "frictionloss": 0.01 * force if force else 0.1,
            "kp": values["kp"],
            "kv": 0.05 * values["kp"],
        }
        for kind in JOINT_FIELDS:
            if kind not in fit:
                continue
            nominal = values[kind]
            unit = nominal if nominal > 0 else typical[kind]
            lower = 0.1 * nominal if kind == "kp" else 0.0
            upper = 10.0 * nominal if kind == "kp" else max(10.0 * nominal, 50.0 * unit)
            unknowns.append(Unknown(f"{joint}.{kind}", joint, kind, nominal, lower, upper, unit))
    if DELAY in fit:
        nominal = robot.parameters.command_delay_s
        unknowns.append(Unknown(DELAY, None, DELAY, nominal, 0.0, max(max_delay_s, nominal), DELAY_UNIT_S))
    return unknowns


def make_windows(
    runs: Sequence[RecordedRun], robot: RobotModel, window_s: float, history: int
) -> list[Window]:
    """Windows of every run, from where the delayed setpoints are known (``CommandReplay.known_from``)."""
    dt = robot.physics_dt
    steps = max(1, round(window_s / dt))
    windows: list[Window] = []
    for run in runs:
        replay = CommandReplay(run, robot)
        earliest = replay.known_from + history * dt
        i = int(np.searchsorted(run.times, earliest - 1e-9))
        while i < len(run.times):
            start = run.times[i]
            end = start + steps * dt
            if end > run.times[-1] + 1e-9:
                break
            inside = slice(i + 1, int(np.searchsorted(run.times, end + 1e-9, side="right")))
            grid = start + (np.arange(-history, steps)) * dt
            windows.append(
                Window(
                    start_s=float(start),
                    initial_positions=run.positions[i],
                    initial_velocities=run.velocities[i],
                    times=run.times[inside],
                    positions=run.positions[inside],
                    velocities=run.velocities[inside],
                    setpoints=replay.setpoints(grid, dt),
                    steps=steps,
                    held_out=False,
                )
            )
            i = max(inside.stop - 1, i + 1)
    return windows


def split_windows(
    windows: Sequence[Window], holdout_every: int, max_fit_s: float, window_s: float
) -> list[Window]:
    """Every ``holdout_every``-th window held out; of the others at most ``max_fit_s`` worth, spread
    evenly, fitted, and the rest held out as well (the fit never sees any of them)."""
    candidates = [k for k in range(len(windows)) if k % holdout_every != holdout_every - 1]
    count = min(len(candidates), max(1, int(max_fit_s / window_s + 1e-9)))
    picks = np.linspace(0, len(candidates) - 1, count).round().astype(int) if candidates else []
    chosen = {candidates[i] for i in picks}
    return [dataclasses.replace(w, held_out=k not in chosen) for k, w in enumerate(windows)]


def check_data(windows: Sequence[Window], robot: RobotModel, config: SysidConfig, unknowns: int) -> None:
    """SysidInputError (one line) when the windows cannot support the fit asked for."""
    fit = [w for w in windows if not w.held_out]
    held_out = [w for w in windows if w.held_out]
    samples = sum(len(w.times) for w in fit)
    needed = unknowns * config.samples_per_parameter
    if not held_out or samples < needed:
        span = sum(w.steps for w in windows) * robot.physics_dt
        raise SysidInputError(
            f"the bags are too short: {span:.1f} s of commanded motion in {len(windows)} windows of "
            f"{config.window_s:g} s give {samples} samples to fit; {unknowns} parameters need "
            f"{needed} ({config.samples_per_parameter} each) and one window more to hold out"
        )
    positions = np.concatenate([w.positions for w in windows])
    span = positions.max(axis=0) - positions.min(axis=0)
    still = [
        name for name, moved in zip(robot.joint_names, span, strict=True) if moved < config.min_motion_rad
    ]
    if still:
        raise SysidInputError(
            f"joints that never move: {', '.join(still)} (recorded positions span less than "
            f"{config.min_motion_rad} rad); excite them, e.g. with bringup excite"
        )


@contextlib.contextmanager
def quiet_absl() -> Iterator[None]:
    """mujoco.sysid warns through absl about choices made on purpose here (no model sensors, starts
    on a bound); keep those out of the node's output."""
    from absl import logging as absl_logging

    previous = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(previous)


class Problem:
    """The fit as ``mujoco.sysid`` sees it: parameters, model sequences, residual functions."""

    def __init__(
        self,
        robot: RobotModel,
        spec: mujoco.MjSpec,
        unknowns: list[Unknown],
        parts: dict[str, list[Window]],
        history: int,
        velocity_weight_s: float,
        threads: int,
    ) -> None:
        self.sysid = load_sysid()
        self.robot = robot
        self.unknowns = unknowns
        self.history = history
        self.velocity_weight_s = velocity_weight_s
        self.threads = threads or os.cpu_count() or 1
        self.fixed_delay_s = robot.parameters.command_delay_s
        m = robot.model
        self._joint_actuators = {
            mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name): int(act)
            for name, act in zip(robot.joint_names, robot.actuator_ids, strict=True)
        }
        self._models: dict[bytes, mujoco.MjModel] = {}
        self.params = self.sysid.ParameterDict()
        for unknown in unknowns:
            self.params.add(
                self.sysid.Parameter(
                    unknown.name,
                    unknown.nominal / unknown.unit,
                    unknown.lower / unknown.unit,
                    unknown.upper / unknown.unit,
                )
            )
        self.x_nominal = self.params.as_vector()
        self.windows = {part: windows for part, windows in parts.items() if windows}
        with quiet_absl():
            self.sequences = {part: self._sequences(spec, windows) for part, windows in self.windows.items()}

    # mujoco.sysid hooks -------------------------------------------------------------------------

    def build_model(self, params: Any, spec: mujoco.MjSpec) -> mujoco.MjModel:
        """The robot's compiled model with the candidate values written as the simulator writes them."""
        x = params.as_vector()
        key = x.tobytes()
        model = self._models.get(key)
        if model is None:
            model = copy.deepcopy(self.robot.model)
            values = {u.name: float(v) * u.unit for u, v in zip(self.unknowns, x, strict=True)}
            joints = parameters_from(self.unknowns, values, self.robot.physics_dt).joints
            apply_model_parameters(model, ModelParameters(joints=joints), self._joint_actuators)
            if len(self._models) > 4 * len(self.unknowns) + 8:
                self._models.clear()
            self._models[key] = model
        return model

    def rollout(self, *, models, datas, control_signal, initial_states, param_dicts, **_: Any) -> list[Any]:
        """Each candidate's delayed setpoints (as servo controls) rolled out from the window's start."""
        dt = self.robot.physics_dt
        controls = []
        for control, params in zip(control_signal, param_dicts, strict=True):
            delay_s = params[DELAY].value[0] * DELAY_UNIT_S if DELAY in params else self.fixed_delay_s
            controls.append(delayed(control.data, self.history, delay_s / dt))
        state, sensordata = mj_rollout.rollout(
            list(models), list(datas), np.stack(initial_states), np.stack(controls)
        )
        trajectories = []
        for k, model in enumerate(models):
            times = state[k][:, 0]
            trajectories.append(
                self.sysid.SystemTrajectory(
                    model=model,
                    control=control_signal[k],
                    sensordata=self.sysid.TimeSeries(times, sensordata[k]),
                    initial_state=initial_states[k],
                    state=self.sysid.TimeSeries(times, state[k]),
                )
            )
        return trajectories

    def residual(self, params, predicted, measured, model, return_pred_all, state=None, **_: Any):
        """Recorded minus predicted joint positions, and velocities times ``velocity_weight_s``, at the
        recorded sample times (the rollout's states, one per physics step, interpolated)."""
        robot = self.robot
        columns = np.concatenate([1 + robot.qpos_adr, 1 + model.nq + robot.dof_adr])
        prediction = interpolate_rows(measured.times, state[:, 0], state[:, columns])
        joints = robot.num_joints
        weights = np.concatenate([np.ones(joints), np.full(joints, self.velocity_weight_s)])
        residual = (measured.data - prediction) * weights
        return residual, self.sysid.TimeSeries(measured.times, prediction, measured.signal_mapping), measured

    # ---------------------------------------------------------------------------------------------

    def _sequences(self, spec: mujoco.MjSpec, windows: list[Window]) -> Any:
        sysid, robot = self.sysid, self.robot
        model = robot.model
        names = [f"{j}_qpos" for j in robot.joint_names] + [f"{j}_qvel" for j in robot.joint_names]
        states, controls, sensors = [], [], []
        dt = robot.physics_dt
        for w in windows:
            qpos = model.qpos0.copy()
            qpos[robot.qpos_adr] = w.initial_positions
            qvel = np.zeros(model.nv)
            qvel[robot.dof_adr] = w.initial_velocities
            initial = sysid.create_initial_state(model, qpos, qvel)
            initial[0] = w.start_s  # mjSTATE_FULLPHYSICS starts with the time
            states.append(initial)
            ctrl = np.zeros((len(w.setpoints), model.nu))
            ctrl[:, robot.actuator_ids] = w.setpoints * robot.ctrl_per_rad
            grid = w.start_s + np.arange(-self.history, w.steps) * dt
            controls.append(sysid.TimeSeries(grid, ctrl))
            data = np.hstack([w.positions, w.velocities])
            sensors.append(sysid.TimeSeries.from_names(w.times, data, model, names))
        return sysid.ModelSequences(
            "robot",
            spec,
            [f"window{k}" for k in range(len(windows))],
            states,
            controls,
            sensors,
            allow_missing_sensors=True,
        )

    def residual_fn(self, part: str, prior: bool) -> Callable[..., Any]:
        """sysid's residual over the windows of ``part``, with the prior rows appended if asked."""
        inner = self.sysid.build_residual_fn(
            models_sequences=[self.sequences[part]],
            build_model=self.build_model,
            custom_rollout=self.rollout,
            modify_residual=self.residual,
            n_threads=self.threads,
            resample_true=False,
        )
        if not prior:
            return inner
        x0 = self.x_nominal

        def with_prior(x: np.ndarray, params: Any, **kwargs: Any) -> Any:
            residuals, predicted, measured = inner(x, params, **kwargs)
            deviation = x - (x0 if np.ndim(x) == 1 else x0[:, None])
            return [*residuals, PRIOR_WEIGHT * deviation], predicted, measured

        return with_prior

    def start_delay(self) -> None:
        """Start the fit at the whole-step delay that fits best with the rest nominal (one batched
        evaluation): a delay far off makes the first steps overshoot into directions the data
        barely sees."""
        index = next((k for k, u in enumerate(self.unknowns) if u.joint is None), None)
        if index is None:
            return
        delay, dt = self.unknowns[index], self.robot.physics_dt
        steps = np.arange(math.ceil(delay.lower / dt - 1e-9), math.floor(delay.upper / dt + 1e-9) + 1)
        candidates = np.repeat(self.x_nominal[:, None], len(steps), axis=1)
        candidates[index] = steps * dt / delay.unit
        with quiet_absl():
            residuals, _, _ = self.residual_fn("fit", prior=False)(candidates, self.params.copy())
        cost = sum(np.square(r).sum(axis=0) for r in residuals)
        start = self.x_nominal.copy()
        start[index] = candidates[index, int(np.argmin(cost))]
        self.params.update_from_vector(start)

    def predictions(self, part: str, x: np.ndarray) -> list[np.ndarray]:
        """(M, 2J) predicted positions and velocities at each window's recorded samples."""
        params = self.params.copy()
        params.update_from_vector(x)
        with quiet_absl():
            _, predicted, _ = self.residual_fn(part, prior=False)(x, params, return_pred_all=True)
        return [p[0].data for p in predicted]  # one list per window, one entry per candidate


def interpolate_rows(at: np.ndarray, times: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` (T, C) sampled at ``times`` (T,), linearly interpolated at ``at`` (held at the ends)."""
    upper = np.clip(np.searchsorted(times, at), 1, len(times) - 1)
    t0, t1 = times[upper - 1], times[upper]
    fraction = np.clip((at - t0) / (t1 - t0), 0.0, 1.0)[:, None]
    return rows[upper - 1] * (1.0 - fraction) + rows[upper] * fraction


def noise(residual: np.ndarray, count: int) -> float:
    """The residual's RMS (per degree of freedom), floored at ``NOISE_FLOOR``: what the fit takes the
    measurement noise to be (a simulated, noise-free bag would otherwise claim a precision no robot gives)."""
    rms = float(np.sqrt(residual @ residual / max(residual.size - count, 1)))
    return max(rms, NOISE_FLOOR)


def intervals(
    sysid: Any, residual: np.ndarray, jacobian: np.ndarray, sigma: float
) -> Callable[..., np.ndarray]:
    """``half(columns)``: 95 % half-widths, in units, of the unknowns at ``columns`` with every other one
    fixed (``sysid.calculate_intervals``, the residual's RMS taken as ``sigma``). Directions the data
    cannot see (eigenvalues of J'J below ``LAMBDA_ZERO`` of the largest) make the parameters in them
    infinitely uncertain."""
    rms = float(np.sqrt(residual @ residual / max(residual.size - jacobian.shape[1], 1)))
    scale = sigma / max(rms, 1e-300)

    def half(columns: Sequence[int]) -> np.ndarray:
        matrix = jacobian[:, list(columns)]
        _, widths = sysid.calculate_intervals(
            [residual], matrix, lambda_zero_thresh=LAMBDA_ZERO, v_zero_thresh=V_ZERO
        )
        return np.asarray(widths) * scale

    return half


def confidence(
    unknowns: Sequence[Unknown], jacobian: np.ndarray, half: Callable[..., np.ndarray]
) -> tuple[dict[str, float], dict[str, float]]:
    """95 % half-widths of every unknown, and of each joint's damping + kv, at the optimum.

    damping and kv of one joint usually form a direction the data cannot see together, so their sum
    gets its own interval, from the Jacobian with damping moved at a fixed sum.
    """
    index = {u.name: k for k, u in enumerate(unknowns)}
    pairs = [
        (u.joint, index[u.name], index[f"{u.joint}.kv"])
        for u in unknowns
        if u.kind == "damping" and f"{u.joint}.kv" in index
    ]
    widths = half(range(len(unknowns)))
    half_widths = {u.name: float(h) * u.unit for u, h in zip(unknowns, widths, strict=True)}
    sums = {}
    for joint, damping, kv in pairs:  # the sum's interval: kv's, with damping fixed (it moves the sum alone)
        others = [k for k in range(len(unknowns)) if k != damping]
        sums[joint] = float(half(others)[others.index(kv)]) * unknowns[kv].unit
    return half_widths, sums


def error_figures(
    windows: Sequence[Window], predictions: Sequence[np.ndarray], joints: Sequence[str]
) -> dict:
    """RMS position (rad) and velocity (rad/s) errors over all samples, and per joint."""
    recorded = np.concatenate([np.hstack([w.positions, w.velocities]) for w in windows])
    predicted = np.concatenate(predictions)
    error = recorded - predicted
    count = len(joints)
    per_joint = np.sqrt(np.mean(error[:, :count] ** 2, axis=0))
    return {
        "position_rms_rad": float(np.sqrt(np.mean(error[:, :count] ** 2))),
        "velocity_rms_rad_s": float(np.sqrt(np.mean(error[:, count:] ** 2))),
        "position_rms_rad_per_joint": {j: float(e) for j, e in zip(joints, per_joint, strict=True)},
        "windows": len(windows),
        "samples": len(recorded),
    }


@dataclass
class _Fit:
    """One Levenberg-Marquardt run: the values (units), the data's residual and Jacobian, the settling."""

    x: np.ndarray
    residual: np.ndarray
    jacobian: np.ndarray
    moved: np.ndarray  # units
    iterations: int


def _optimize(problem: Problem, max_iterations: int, output: io.StringIO) -> _Fit:
    """Fit ``problem``'s unknowns to its fit windows (the prior included), from its current values."""
    with quiet_absl():
        optimized, result = problem.sysid.optimize(
            problem.params,
            problem.residual_fn("fit", prior=True),
            optimizer="mujoco",
            verbose=False,
            max_iters=max_iterations,
            eps=FD_STEP,
            output=output,
        )
        x = np.asarray(result.x, dtype=float).reshape(-1)
        residuals, _, _ = problem.residual_fn("fit", prior=False)(x, optimized)
    rows = sum(r.size for r in residuals)
    candidates = result.extras.get("candidate", []) if hasattr(result, "extras") else []
    return _Fit(
        x=x,
        residual=np.concatenate(residuals),
        jacobian=np.asarray(result.jac)[:rows],  # the prior's rows left out
        moved=_moved(x, candidates, max_iterations),
        iterations=len(candidates),
    )


def _moved(x: np.ndarray, candidates: Sequence[np.ndarray], max_iterations: int) -> np.ndarray:
    """How far each unknown moved over the fit's last SETTLE_ITERATIONS iterations; a fit that stopped
    before ``max_iterations`` converged, so only its last step counts."""
    if not candidates:
        return np.zeros_like(x)
    if len(candidates) < max_iterations:
        return x - np.asarray(candidates[-1])
    earlier = (
        np.asarray(candidates[-1 - SETTLE_ITERATIONS]) if len(candidates) > SETTLE_ITERATIONS else x + np.inf
    )
    return x - earlier


def identify(
    runs: Sequence[RecordedRun],
    robot: RobotModel,
    spec: mujoco.MjSpec,
    config: SysidConfig,
    log: Callable[[str], None] = print,
    validation: Sequence[RecordedRun] = (),
) -> SysidResult:
    """Fit ``config.fit`` of ``robot`` to ``runs``, keep what the data identifies (the rest nominal) and
    compare nominal and identified on the held-out windows and on ``validation`` (runs of another kind,
    every window held out); SysidInputError (one line) for data it cannot use."""
    import time

    config.check()
    load_sysid()
    started = time.perf_counter()
    dt = robot.physics_dt
    history = math.ceil(max(config.max_delay_s, robot.parameters.command_delay_s) / dt) + 1
    unknowns = make_unknowns(robot, config.fit, config.max_delay_s)
    windows = make_windows(runs, robot, config.window_s, history)
    windows = split_windows(windows, config.holdout_every, config.max_fit_s, config.window_s)
    check_data(windows, robot, config, len(unknowns))
    checks = [
        dataclasses.replace(w, held_out=True)
        for w in make_windows(validation, robot, config.window_s, history)
    ]
    if validation and not checks:
        raise SysidInputError(
            f"validation_bags: no window of {config.window_s:g} s with known commands in them"
        )
    parts = {
        "fit": [w for w in windows if not w.held_out],
        "held_out": [w for w in windows if w.held_out],
        "validation": checks,
    }
    problem = Problem(robot, spec, unknowns, parts, history, config.velocity_weight_s, config.threads)
    problem.start_delay()
    log(
        f"fitting {len(unknowns)} parameters to {len(parts['fit'])} windows of {config.window_s:g} s "
        f"({len(parts['held_out'])} held out, {len(checks)} of another kind to validate on)"
    )
    output = io.StringIO()
    chosen = _choose(problem, parts["fit"], spec, history, config, output)
    log(f"{len(chosen.kept)} of {len(unknowns)} parameters identified by the data")
    errors, traces = _compare(problem, unknowns, chosen.values, dt, robot.joint_names)
    return SysidResult(
        joint_names=robot.joint_names,
        unknowns=unknowns,
        identified=chosen.values,
        estimates=chosen.estimates,
        reasons=chosen.reasons,
        partners=chosen.partners,
        sensitivity=chosen.sensitivity,
        motion=chosen.motion,
        half_widths=chosen.half_widths,
        sum_half_widths=chosen.sum_half_widths,
        moved=chosen.moved,
        errors=errors,
        windows=windows + checks,
        runs=list(runs),
        validation_runs=list(validation),
        window_s=config.window_s,
        physics_dt=dt,
        iterations=chosen.iterations,
        wall_s=time.perf_counter() - started,
        traces=traces,
        log=output.getvalue(),
    )


@dataclass
class _Chosen:
    """The fit's outcome: every unknown's value (nominal unless kept), and what the data said of each."""

    values: dict[str, float]
    estimates: dict[str, float]
    reasons: dict[str, str | None]
    partners: dict[str, str]
    sensitivity: dict[str, float]
    motion: dict[str, float]
    half_widths: dict[str, float]
    sum_half_widths: dict[str, float]
    moved: dict[str, float]
    iterations: int

    @property
    def kept(self) -> list[str]:
        return [name for name, reason in self.reasons.items() if reason is None]


def _choose(
    problem: Problem,
    fit: list[Window],
    spec: mujoco.MjSpec,
    history: int,
    config: SysidConfig,
    output: io.StringIO,
) -> _Chosen:
    """Fit every unknown, judge which the data identifies (``selection.judge``), then refit those with
    the others at nominal until every one refitted is still identified (at most MAX_ROUNDS)."""
    robot, unknowns, sysid = problem.robot, problem.unknowns, problem.sysid
    first = _optimize(problem, config.max_iterations, output)
    sigma = noise(first.residual, len(unknowns))
    half = intervals(sysid, first.residual, first.jacobian, sigma)
    estimates = {u.name: float(v) * u.unit for u, v in zip(unknowns, first.x, strict=True)}
    half_widths, sum_half_widths = confidence(unknowns, first.jacobian, half)
    motion = joint_motion(np.concatenate([w.positions for w in fit]), robot.joint_names)
    judged = judge(unknowns, estimates, first.jacobian, sigma, motion, config.min_joint_rms_rad, half)
    reasons = dict(judged.reasons)
    values, iterations = dict(estimates), first.iterations
    moved = {u.name: float(m) * u.unit for u, m in zip(unknowns, first.moved, strict=True)}
    for round_ in range(MAX_ROUNDS + 1):  # the last refit only makes the values consistent again
        kept = [u for u in unknowns if reasons[u.name] is None]
        if len(kept) == len(unknowns) or not kept:
            break
        refit = _refit(robot, spec, kept, fit, history, config, estimates, output)
        iterations += refit.iterations
        floor = max(sigma, noise(refit.residual, len(kept)))
        widths = confidence(kept, refit.jacobian, intervals(sysid, refit.residual, refit.jacobian, floor))[0]
        for u, x, step in zip(kept, refit.x, refit.moved, strict=True):
            values[u.name], half_widths[u.name], moved[u.name] = (
                float(x) * u.unit,
                widths[u.name],
                step * u.unit,
            )
        failed = _unsettled(kept, refit, widths) if round_ < MAX_ROUNDS else {}
        reasons.update(failed)
        if not failed:
            break
    for u in unknowns:
        if reasons[u.name] is not None:
            values[u.name] = u.nominal
    return _Chosen(
        values=values,
        estimates=estimates,
        reasons=reasons,
        partners=judged.partners,
        sensitivity=judged.sensitivity_rad,
        motion=motion,
        half_widths=half_widths,
        sum_half_widths=sum_half_widths,
        moved=moved,
        iterations=iterations,
    )


def _refit(
    robot: RobotModel,
    spec: mujoco.MjSpec,
    kept: list[Unknown],
    fit: list[Window],
    history: int,
    config: SysidConfig,
    start: dict[str, float],
    output: io.StringIO,
) -> _Fit:
    """The ``kept`` unknowns fitted again with every other one at its nominal value, from ``start``."""
    problem = Problem(robot, spec, kept, {"fit": fit}, history, config.velocity_weight_s, config.threads)
    problem.params.update_from_vector(np.array([start[u.name] / u.unit for u in kept]))
    return _optimize(problem, config.max_iterations, output)


def _unsettled(kept: Sequence[Unknown], refit: _Fit, widths: dict[str, float]) -> dict[str, str]:
    """The refitted unknowns the data still does not pin (their reasons): one run into a bound (other
    than zero), one not ``pinned`` by its interval, or an estimate still moving by more than its
    half-width."""
    failed = {}
    for u, x, step in zip(kept, refit.x, refit.moved, strict=True):
        value = float(x) * u.unit
        width = relative(widths[u.name], value, u.unit)
        bound = next((b for b in (u.lower, u.upper) if b and abs(value - b) <= 1e-6 * abs(b)), None)
        if bound is not None:
            failed[u.name] = f"the refit ran into its bound {bound:g} (the data does not hold it inside)"
        elif not pinned(u, value, widths[u.name]):
            failed[u.name] = (
                f"{unpinned_reason(width)}, when refitted with the parameters the data does not "
                "identify at nominal"
            )
        elif abs(step) * u.unit > widths[u.name]:
            failed[u.name] = (
                f"the fit was still moving it ({abs(step) * u.unit:.3g} over its last iterations)"
            )
    return failed


def _compare(
    problem: Problem,
    unknowns: Sequence[Unknown],
    identified: dict[str, float],
    dt: float,
    joint_names: Sequence[str],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Errors of the nominal and the identified model on each part's windows, and the traces of the
    held-out and validation windows (``<part>.<nominal|identified>``).

    Errors as the simulator will reproduce them: the delay in whole physics steps.
    """
    rounded = dict(identified)
    if DELAY in rounded:
        rounded[DELAY] = round(rounded[DELAY] / dt) * dt
    x_identified = np.array([rounded[u.name] / u.unit for u in unknowns])
    x_nominal = problem.x_nominal.copy()
    for k, unknown in enumerate(unknowns):  # the nominal delay as the simulator applies it, too
        if unknown.joint is None:
            x_nominal[k] = round(unknown.nominal / dt) * dt / unknown.unit
    errors: dict[str, dict[str, Any]] = {}
    traces: dict[str, list[np.ndarray]] = {}
    for part, part_windows in problem.windows.items():
        errors[part] = {}
        for which, point in (("nominal", x_nominal), ("identified", x_identified)):
            predicted = problem.predictions(part, point)
            errors[part][which] = error_figures(part_windows, predicted, joint_names)
            if part != "fit":
                traces[f"{part}.{which}"] = predicted
        nominal = errors[part]["nominal"]["position_rms_rad"]
        errors[part]["ratio"] = errors[part]["identified"]["position_rms_rad"] / nominal if nominal else None
    return errors, traces
