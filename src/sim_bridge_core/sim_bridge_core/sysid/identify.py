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
from scipy.stats import chi2
from scipy.stats import t as student_t

from sim_bridge_core.models import ModelParameters, RobotModel
from sim_bridge_core.models.parameters import JOINT_FIELDS, apply_model_parameters
from sim_bridge_core.sysid.bags import RecordedRun, SysidInputError
from sim_bridge_core.sysid.config import DELAY, SysidConfig
from sim_bridge_core.sysid.replay import CommandReplay, delayed
from sim_bridge_core.sysid.selection import CONFIDENCE, pinned, select

SYSID_MISSING = "the sysid extra is not installed: pip install 'mujoco[sysid]'"
# The measurement noise assumed at least, rad: a joint encoder and servo's, and what a noise-free
# simulated bag is taken to have. It weighs the prior (per unit of a parameter's deviation from
# nominal, in the residual's units: wherever the data says anything, the data wins) and floors the
# residual RMS the confidence intervals are computed from.
NOISE_FLOOR = 3e-4
PRIOR_WEIGHT = NOISE_FLOOR
FD_STEP = 1e-6  # finite-difference step, relative to max(1, |x|), x in units
DELAY_UNIT_S = 1e-3
# How far, in units, the intervals take a direction the data cannot see to reach (``confidence``).
UNSEEN_UNITS = 100.0
# How many half-widths out a pinning interval is checked on the rolled-out cost (``checked``).
CHECK_HALF_WIDTHS = 3.0
MIN_CHECK_FRACTION = 0.2
# An estimate still moving by more than its half-width over this many iterations has not settled.
SETTLE_ITERATIONS = 3
# Windows fitted, held out of the fit (same runs) and of the validation runs (another kind).
PARTS = ("fit", "held_out", "validation")


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
    part: str  # one of PARTS


@dataclass
class SysidResult:
    """Everything the outputs need: the unknowns, their values, and the errors before and after."""

    joint_names: tuple[str, ...]
    unknowns: list[Unknown]
    identified: dict[str, float]  # what robot.yaml holds: the refit where kept, else nominal
    fitted: dict[str, float]  # the first fit, every unknown free
    reasons: dict[str, str | None]  # None: identified by the data; else why it stays nominal
    half_widths: dict[str, float]  # 95 % confidence half-widths (``confidence``)
    sum_half_widths: dict[str, float]  # per joint, of damping + kv
    moved: dict[str, float]  # each first-fit estimate's change over its last SETTLE_ITERATIONS iterations
    errors: dict[str, dict[str, Any]]  # fit / held_out / validation -> nominal / identified -> figures
    windows: list[Window]
    runs: list[RecordedRun]  # fitted (and held out)
    validation_runs: list[RecordedRun]  # only predicted
    window_s: float
    physics_dt: float
    iterations: int
    wall_s: float = 0.0
    # part -> nominal / identified -> per window predictions, for the held-out and validation windows
    traces: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    log: str = ""

    def written(self) -> list[Unknown]:
        """The unknowns robot.yaml sets: those the data identifies, and the delay (nominal if not)."""
        return [u for u in self.unknowns if self.reasons[u.name] is None or u.joint is None]

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
    runs: Sequence[RecordedRun], robot: RobotModel, window_s: float, history: int, part: str = "fit"
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
                    part=part,
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
    return [dataclasses.replace(w, part="fit" if k in chosen else "held_out") for k, w in enumerate(windows)]


def check_data(windows: Sequence[Window], robot: RobotModel, config: SysidConfig, unknowns: int) -> None:
    """SysidInputError (one line) when the windows cannot support the fit asked for."""
    fit = [w for w in windows if w.part == "fit"]
    held_out = [w for w in windows if w.part == "held_out"]
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
        windows: list[Window],
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
        self.windows = {part: [w for w in windows if w.part == part] for part in PARTS}
        self.windows = {part: part_windows for part, part_windows in self.windows.items() if part_windows}
        with quiet_absl():
            self.sequences = {part: self._sequences(spec, w) for part, w in self.windows.items()}

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
        cost = self.costs("fit", candidates)
        start = self.x_nominal.copy()
        start[index] = candidates[index, int(np.argmin(cost))]
        self.params.update_from_vector(start)

    def costs(self, part: str, candidates: np.ndarray) -> np.ndarray:
        """The data's sum of squared residuals over ``part``'s windows for each column of
        ``candidates`` (unknowns x candidates, in units): one batched evaluation."""
        with quiet_absl():
            residuals, _, _ = self.residual_fn(part, prior=False)(candidates, self.params.copy())
        return sum(np.square(r).sum(axis=0) for r in residuals)

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


def _rms(residual: np.ndarray, count: int) -> float:
    return float(np.sqrt(residual @ residual / max(residual.size - count, 1)))


def noise(residual: np.ndarray, count: int) -> float:
    """The measurement noise the fit's ``residual`` shows (``count`` unknowns fitted), at least
    ``NOISE_FLOOR``."""
    return max(_rms(residual, count), NOISE_FLOOR)


def confidence(
    unknowns: Sequence[Unknown], residual: np.ndarray, jacobian: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """95 % half-widths of every unknown, and of each joint's damping + kv, from the data's residual
    and Jacobian at the optimum (the prior's rows left out): the linearized covariance
    sigma^2 (J'J)^-1, sigma the noise (``noise``), with J'J's eigenvalues raised by
    (sigma / UNSEEN_UNITS)^2.

    That keeps the inverse finite and smooth: a direction the data cannot see spans about
    UNSEEN_UNITS either way, so no parameter with a part in it is pinned, and no threshold on
    eigenvalues decides whether it was seen. (One CI bag put the wrist joint7's near-null
    direction, kp, kv and armature scaled together, on the wrong side of such a threshold, which
    claimed its kp within 1.6 % at half its true value.) damping and kv of one joint usually form
    such a direction together, so their sum gets its own interval, from the Jacobian with damping
    moved at a fixed sum.
    """
    sigma = noise(residual, len(unknowns))
    quantile = float(student_t.ppf(0.5 + CONFIDENCE / 2, max(residual.size - len(unknowns), 1)))
    index = {u.name: k for k, u in enumerate(unknowns)}
    pairs = [
        (u.joint, index[u.name], index[f"{u.joint}.kv"])
        for u in unknowns
        if u.kind == "damping" and f"{u.joint}.kv" in index
    ]
    summed = jacobian.copy()
    for _, damping, kv in pairs:
        summed[:, damping] -= jacobian[:, kv] * (unknowns[damping].unit / unknowns[kv].unit)
    widths = {}
    for name, matrix in (("plain", jacobian), ("summed", summed)):
        eigenvalues, vectors = np.linalg.eigh(matrix.T @ matrix)
        variance = vectors**2 @ (1.0 / (np.maximum(eigenvalues, 0.0) + (sigma / UNSEEN_UNITS) ** 2))
        widths[name] = quantile * sigma * np.sqrt(variance)
    half_widths = {u.name: float(h) * u.unit for u, h in zip(unknowns, widths["plain"], strict=True)}
    sums = {joint: float(widths["summed"][kv]) * unknowns[kv].unit for joint, _, kv in pairs}
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


@dataclass(frozen=True)
class Fit:
    """One Levenberg-Marquardt fit: the values and what the data says of them."""

    values: dict[str, float]
    half_widths: dict[str, float]
    sum_half_widths: dict[str, float]
    moved: dict[str, float]
    hessian: np.ndarray  # J'J of the data, plus the prior's diagonal, per unit of each unknown
    sigma: float  # the noise, ``noise``
    iterations: int
    log: str


def fit(problem: Problem, max_iterations: int) -> Fit:
    """Fit ``problem``'s unknowns to its fit windows from where its parameters stand."""
    sysid, unknowns = problem.sysid, problem.unknowns
    output = io.StringIO()
    with quiet_absl():
        optimized, result = sysid.optimize(
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
        jacobian = np.asarray(result.jac)[: sum(r.size for r in residuals)]  # the prior's rows left out
        residual = np.concatenate(residuals)
        half_widths, sum_half_widths = confidence(unknowns, residual, jacobian)
    return Fit(
        values={u.name: float(v) * u.unit for u, v in zip(unknowns, x, strict=True)},
        half_widths=half_widths,
        sum_half_widths=sum_half_widths,
        moved=_moved(unknowns, x, result, max_iterations),
        hessian=jacobian.T @ jacobian + PRIOR_WEIGHT**2 * np.eye(len(unknowns)),
        sigma=noise(residual, len(unknowns)),
        iterations=len(result.extras.get("objective", [])) if hasattr(result, "extras") else 0,
        log=output.getvalue(),
    )


def checked(problem: Problem, result: Fit) -> Fit:
    """``result`` with each interval that pins an unknown checked on the rolled-out cost.

    The unknown is moved CHECK_HALF_WIDTHS half-widths either way (less where that would cross a
    bound), the others re-adjusted as the linearization says (along (J'J)^-1 e_k). The cost must
    rise by at least 1 / CHECK_HALF_WIDTHS^2 of what the linearization predicts, i.e. by what one
    half-width promises (the 95 % chi-square quantile of the noise variance) at the full step.
    Where it does not, the direction is flatter than the Jacobian said (one the data barely sees),
    and the unknown's interval is taken as unbounded.
    """
    unknowns = problem.unknowns
    x = np.array([result.values[u.name] / u.unit for u in unknowns])
    lower = np.array([u.lower / u.unit for u in unknowns])
    upper = np.array([u.upper / u.unit for u in unknowns])
    covariance = np.linalg.inv(result.hessian)
    points, checks = [x], {}
    for k, u in enumerate(unknowns):
        if not pinned(u, result.values, result.half_widths, result.moved):
            continue
        step = covariance[:, k] * (CHECK_HALF_WIDTHS * result.half_widths[u.name] / u.unit / covariance[k, k])
        for delta in (step, -step):
            room = np.where(delta > 0, upper - x, x - lower)  # to the bound each coordinate heads for
            moving = delta != 0
            fraction = min(1.0, *(room[moving] / np.abs(delta[moving])))
            if fraction >= MIN_CHECK_FRACTION:  # a step that is mostly cut off by a bound tells little
                checks.setdefault(u.name, []).append((len(points), fraction))
                points.append(x + fraction * delta)
    if not checks:
        return result
    cost = problem.costs("fit", np.stack(points, axis=1))
    one_half_width = result.sigma**2 * chi2.ppf(CONFIDENCE, 1)
    half_widths = dict(result.half_widths)
    for name, sides in checks.items():
        if np.mean([(cost[n] - cost[0]) / fraction**2 for n, fraction in sides]) < one_half_width:
            half_widths[name] = math.inf
    return dataclasses.replace(result, half_widths=half_widths)


def identify(
    runs: Sequence[RecordedRun],
    robot: RobotModel,
    spec: mujoco.MjSpec,
    config: SysidConfig,
    log: Callable[[str], None] = print,
    validation: Sequence[RecordedRun] = (),
) -> SysidResult:
    """Fit ``config.fit`` of ``robot`` to ``runs``, choose what robot.yaml takes (``selection``: what
    the data does not identify stays nominal), and compare nominal and identified on the held-out
    windows and on the ``validation`` runs (never fitted). SysidInputError (one line) for data it
    cannot use."""
    import time

    config.check()
    started = time.perf_counter()
    dt = robot.physics_dt
    history = math.ceil(max(config.max_delay_s, robot.parameters.command_delay_s) / dt) + 1
    unknowns = make_unknowns(robot, config.fit, config.max_delay_s)
    windows = make_windows(runs, robot, config.window_s, history)
    windows = split_windows(windows, config.holdout_every, config.max_fit_s, config.window_s)
    check_data(windows, robot, config, len(unknowns))
    windows += make_windows(validation, robot, config.window_s, history, part="validation")
    if validation and not any(w.part == "validation" for w in windows):
        raise SysidInputError(
            f"the validation bags hold no window of {config.window_s:g} s of commanded motion"
        )

    problem = Problem(robot, spec, unknowns, windows, history, config.velocity_weight_s, config.threads)
    problem.start_delay()
    log(
        f"fitting {len(unknowns)} parameters to {len(problem.windows['fit'])} windows of "
        f"{config.window_s:g} s ({len(problem.windows['held_out'])} held out"
        + (f", {len(problem.windows['validation'])} to validate on)" if validation else ")")
    )
    first = checked(problem, fit(problem, config.max_iterations))
    chosen = select(
        unknowns,
        first.values,
        first.half_widths,
        first.sum_half_widths,
        first.moved,
        first.hessian,
        first.sigma,
    )
    kept = sum(reason is None for reason in chosen.reasons.values())
    log(f"robot.yaml takes {kept} of them; the others stay nominal (sysid.json says why)")
    identified = chosen.values
    errors, traces = _compare(problem, {"identified": identified, "all_fitted": first.values}, dt)
    return SysidResult(
        joint_names=robot.joint_names,
        unknowns=unknowns,
        identified=identified,
        fitted=first.values,
        reasons=chosen.reasons,
        half_widths=first.half_widths,
        sum_half_widths=first.sum_half_widths,
        moved=first.moved,
        errors=errors,
        windows=windows,
        runs=list(runs),
        validation_runs=list(validation),
        window_s=config.window_s,
        physics_dt=dt,
        iterations=first.iterations,
        wall_s=time.perf_counter() - started,
        traces=traces,
        log=first.log,
    )


def _moved(unknowns: Sequence[Unknown], x: np.ndarray, result: Any, max_iterations: int) -> dict[str, float]:
    """How far each unknown moved over the fit's last SETTLE_ITERATIONS iterations: 0 where the
    optimizer stopped before ``max_iterations`` (it converged, by its own tolerances)."""
    candidates = result.extras.get("candidate", [])
    if len(candidates) - 1 < max_iterations:  # one candidate per iteration, and the final one
        return {u.name: 0.0 for u in unknowns}
    earlier = np.asarray(candidates[-1 - SETTLE_ITERATIONS])
    return {u.name: float(v - w) * u.unit for u, v, w in zip(unknowns, x, earlier, strict=True)}


def _compare(
    problem: Problem, models: dict[str, dict[str, float]], dt: float
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list[np.ndarray]]]]:
    """Errors of the nominal model and of each of ``models`` (values of every unknown) on each
    part's windows, and the predictions on the held-out and validation windows.

    Errors as the simulator will reproduce them: the delay in whole physics steps.
    """
    unknowns = problem.unknowns
    points = {"nominal": {u.name: u.nominal for u in unknowns}, **models}
    errors: dict[str, dict[str, Any]] = {}
    traces: dict[str, dict[str, list[np.ndarray]]] = {}
    for part, part_windows in problem.windows.items():
        errors[part] = {}
        for which, values in points.items():
            rounded = [
                round(values[u.name] / dt) * dt if u.joint is None else values[u.name] for u in unknowns
            ]
            x = np.array([value / u.unit for value, u in zip(rounded, unknowns, strict=True)])
            predicted = problem.predictions(part, x)
            errors[part][which] = error_figures(part_windows, predicted, problem.robot.joint_names)
            if part != "fit" and which in ("nominal", "identified"):
                traces.setdefault(part, {})[which] = predicted
        nominal = errors[part]["nominal"]["position_rms_rad"]
        errors[part]["ratio"] = errors[part]["identified"]["position_rms_rad"] / nominal if nominal else None
    return errors, traces
