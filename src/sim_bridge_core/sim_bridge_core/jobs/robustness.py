"""Robustness sweep: a checkpoint's success rate as one physical parameter at a time moves past the
ranges it was trained on, everything else nominal (docs/evaluation.md).

A sweep file (``config/sweeps/<preset>.yaml`` or any path; ``bringup eval sweep:=...``)::

    sweep:
      episodes: 256                # per point (0 = the evaluation's eval_episodes)
      parameters:
        friction:                  # a name of your choosing
          label: floor friction    # the plot's title ('' = the name)
          unit: x nominal          # the plot's x label
          randomization: geom_friction   # a randomization term ...
          operation: scale         #   ... with its entry's fields (targets, operation, shared, axes)
          shared: true
          requires: floating_base  # skipped (with a note) on robots without one (or imu, end_effector)
          values: [0.2, 0.5, 1.0, 1.5]
        timestep:
          model_parameter: options.timestep   # ... or a model parameter (command_delay_s, options.*)
          values: [0.002, 0.004]

A randomization point is a spec of that one term with ``low == high == value`` (``spread:
symmetric``: ``low = -value, high = value``, for noise), so the same code that randomizes in
training moves the physics here; a model-parameter point merges the value into the robot's
``model_parameters``. Body targets ``@base`` and ``@end_effector`` name the floating base's body
and the body carrying the task's end-effector site. Each point runs fused, fresh worlds with the
evaluation's seed, so every point meets the same episodes. The shaded training range comes from
the run that wrote the checkpoint (its ``summary.json``: the randomization it trained under),
else from the evaluation's own randomization setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mujoco
import yaml

from sim_bridge_core.config import ConfigError, from_mapping, read_yaml_file, setting, setting_specs
from sim_bridge_core.deploy.policy import PolicyConfig
from sim_bridge_core.envs.batched import Worlds
from sim_bridge_core.models import ModelError, parse_model_parameters
from sim_bridge_core.models.parameters import CONES, OPTION_FIELDS
from sim_bridge_core.randomization import PARAMETERS, RandomizationSpec, bind, load_spec, spec_from_mapping
from sim_bridge_core.randomization.spec import BODY
from sim_bridge_core.sim.backends import BackendError, substeps_per_control
from sim_bridge_core.simulator.core import SimulatorConfig, simulated_robot
from sim_bridge_core.tasks import Task

if TYPE_CHECKING:
    from sim_bridge_core.learning.modules import Policy

SECTION = "sweep"
ROBUSTNESS_JSON = "robustness.json"
ROBUSTNESS_PNG = "robustness.png"
MODEL_PARAMETERS = ("command_delay_s", *(f"options.{name}" for name in (*OPTION_FIELDS, "cone")))
SPREADS = ("point", "symmetric")
REQUIRES = ("floating_base", "imu", "end_effector")
BASE, END_EFFECTOR = "@base", "@end_effector"
# What a point's value does to the nominal value, by operation: the nominal point.
_NEUTRAL = {"scale": 1.0, "add": 0.0}

WorldsFactory = Callable[..., Worlds]  # (episodes, **SimulatorConfig changes) -> fresh fused worlds


@dataclass(frozen=True)
class _EntryFields:
    label: str = setting("", "the plot's title ('' = the parameter's name)")
    unit: str = setting("", "the plot's x label")
    randomization: str = setting("", "the randomization term a point sets", choices=("", *PARAMETERS))
    model_parameter: str = setting("", "the model parameter a point sets", choices=("", *MODEL_PARAMETERS))
    spread: str = setting(
        "point", "point: low = high = value; symmetric: low = -value, high = value", choices=SPREADS
    )
    targets: list[str] = setting(["*"], "the term's targets (@base, @end_effector: the robot's bodies)")
    operation: str = setting("", "the term's operation ('' = its default)")
    shared: bool = setting(False, "the term's shared")
    axes: str = setting("xyz", "the term's axes")
    requires: str = setting("", "skip the parameter on robots without this", choices=("", *REQUIRES))


@dataclass(frozen=True)
class SweepParameter:
    """One swept parameter: its grid and the randomization term or model parameter it sets."""

    name: str
    label: str
    unit: str
    values: tuple[float | str, ...]
    term: str = ""
    term_fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the entry beside low/high
    model_parameter: str = ""
    spread: str = "point"
    requires: str = ""

    @property
    def key(self) -> str:
        return f"{SECTION}.parameters.{self.name}"

    @property
    def operation(self) -> str:
        return self.term_fields.get("operation", PARAMETERS[self.term].default_operation) if self.term else ""

    def maps_to(self) -> str:
        if self.model_parameter:
            return f"model_parameters.{self.model_parameter}"
        extras = ", ".join(f"{key} {value}" for key, value in self.term_fields.items())
        return f"randomization.{self.term} ({extras or self.operation}, spread {self.spread})"

    def term_spec(self, value: float, targets: Sequence[str] | None = None) -> dict[str, Any]:
        """The randomization mapping of the point at ``value`` (``targets`` replacing the entry's)."""
        low, high = (-value, value) if self.spread == "symmetric" else (value, value)
        entry = {**self.term_fields, "distribution": "uniform", "low": low, "high": high}
        if targets is not None:
            entry["targets"] = list(targets)
        return {"schedule": "startup", self.term: entry}

    def model_parameters(self, value: float | str, base: Mapping[str, Any]) -> dict[str, Any]:
        """``base`` (the robot's model_parameters) with this parameter set to ``value``."""
        merged = {key: dict(item) if isinstance(item, Mapping) else item for key, item in base.items()}
        section, _, option = self.model_parameter.partition(".")
        if option:
            merged[section] = {**merged.get(section, {}), option: value}
        else:
            merged[section] = value
        return merged


@dataclass(frozen=True)
class Sweep:
    source: str
    episodes: int
    parameters: tuple[SweepParameter, ...]


def load_sweep(path: str | Path) -> Sweep:
    """A validated sweep file; ConfigError naming the key (``sweep.parameters.<name>.<key>``)."""
    data = read_yaml_file(path, SECTION)
    if isinstance(data, Mapping) and set(data) == {SECTION}:
        data = data[SECTION]
    if not isinstance(data, Mapping):
        raise ConfigError(f"{SECTION}: {path} must hold a mapping (episodes, parameters)")
    unknown = sorted(set(data) - {"episodes", "parameters"})
    if unknown:
        raise ConfigError(f"{SECTION}.{unknown[0]}: unknown key (known: episodes, parameters)")
    episodes = data.get("episodes", 0)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 0:
        raise ConfigError(f"{SECTION}.episodes: must be a whole number >= 0, got {episodes!r}")
    entries = data.get("parameters")
    if not isinstance(entries, Mapping) or not entries:
        raise ConfigError(f"{SECTION}.parameters: must map at least one parameter name to its grid")
    parameters = tuple(_parameter(str(name), entry) for name, entry in entries.items())
    return Sweep(str(Path(path).expanduser().resolve()), episodes, parameters)


def _parameter(name: str, entry: Any) -> SweepParameter:
    key = f"{SECTION}.parameters.{name}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{key}: must be a mapping (values, and randomization or model_parameter)")
    known = {spec.name for spec in setting_specs(_EntryFields)} | {"values"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    fields = from_mapping(_EntryFields, {k: v for k, v in entry.items() if k != "values"}, key)
    if bool(fields.randomization) == bool(fields.model_parameter):
        raise ConfigError(f"{key}: give one of randomization (a term) or model_parameter")
    values = _values(entry.get("values"), fields.model_parameter == "options.cone", f"{key}.values")
    term_fields = {
        field: getattr(fields, field)
        for field in ("targets", "operation", "shared", "axes")
        if field in entry and fields.randomization
    }
    parameter = SweepParameter(
        name=name,
        label=fields.label or name,
        unit=fields.unit,
        values=values,
        term=fields.randomization,
        term_fields=term_fields,
        model_parameter=fields.model_parameter,
        spread=fields.spread,
        requires=fields.requires,
    )
    _check_points(parameter)
    return parameter


def _values(values: Any, names: bool, key: str) -> tuple[float | str, ...]:
    """A non-empty list of finite numbers (of names, for the solver's cone)."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{key}: must be a non-empty list")
    for value in values:
        if names and not isinstance(value, str):
            raise ConfigError(f"{key}: must name cones ({', '.join(CONES)}), got {value!r}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not names and not (number and math.isfinite(value)):
            raise ConfigError(f"{key}: must be finite numbers, got {value!r}")
    return tuple(value if names else float(value) for value in values)


def _check_points(parameter: SweepParameter) -> None:
    """Every point as the randomization spec or model parameters it becomes, checked without a model."""
    key = parameter.key
    if parameter.model_parameter:
        if parameter.spread != "point" or parameter.term_fields:
            raise ConfigError(f"{key}: spread, targets, operation, shared and axes belong to a term")
        for value in parameter.values:
            try:
                parse_model_parameters(parameter.model_parameters(value, {}))
            except ConfigError as exc:
                raise ConfigError(f"{key}.values: {value!r}: {exc}") from exc
        return
    kind = PARAMETERS[parameter.term]
    if parameter.spread == "symmetric" and (parameter.operation != "add" or min(parameter.values) < 0):
        raise ConfigError(f"{key}.spread: symmetric takes values >= 0 of a term whose operation is add")
    special = [t for t in parameter.term_fields.get("targets", ()) if t.startswith("@")]
    if special and (kind.target != BODY or any(t not in (BASE, END_EFFECTOR) for t in special)):
        raise ConfigError(f"{key}.targets: {BASE} and {END_EFFECTOR} name bodies, for body terms only")
    for value in parameter.values:
        try:
            spec_from_mapping(parameter.term_spec(float(value), ["*"] if special else None))
        except ConfigError as exc:
            raise ConfigError(f"{key}.values: {value!r}: {exc}") from exc


@dataclass(frozen=True)
class _Plan:
    """One parameter made concrete for a robot: each point's simulator changes, or why it is skipped."""

    parameter: SweepParameter
    points: tuple[dict[str, str], ...]
    nominal: float | str | None
    training_range: tuple[float, float] | None
    training_note: str
    skipped: str = ""


def plan_sweep(
    sweep: Sweep, sim: SimulatorConfig, task: Task, training: RandomizationSpec | None
) -> list[_Plan]:
    """Every point checked against the robot before anything runs (ConfigError naming the key)."""
    return [_plan(parameter, sim, task, training) for parameter in sweep.parameters]


def _plan(
    parameter: SweepParameter, sim: SimulatorConfig, task: Task, training: RandomizationSpec | None
) -> _Plan:
    robot = task.robot
    targets = _targets(parameter, task)
    reason = _skip_reason(parameter, task, targets)
    if reason:
        return _Plan(parameter, (), None, None, "", skipped=reason)
    if parameter.model_parameter:
        return _plan_model_parameter(parameter, sim)
    points = []
    for value in parameter.values:
        spec = spec_from_mapping(parameter.term_spec(float(value), targets))
        try:
            bind(spec, robot)
        except ConfigError as exc:
            raise ConfigError(f"{parameter.key}.values: {value!r}: {exc}") from exc
        points.append({"randomization": yaml.safe_dump(parameter.term_spec(float(value), targets))})
    low_high, note = _training_range(parameter, training)
    nominal = 0.0 if parameter.spread == "symmetric" else _NEUTRAL.get(parameter.operation)
    if parameter.term == "action_delay_steps":
        nominal = 0.0
    return _Plan(parameter, tuple(points), nominal, low_high, note)


def _targets(parameter: SweepParameter, task: Task) -> list[str] | None:
    """The entry's targets with @base/@end_effector resolved (None: the entry gives none)."""
    given = parameter.term_fields.get("targets")
    if given is None:
        return None
    robot, site = task.robot, getattr(task, "ee_site", None)
    names = {
        BASE: robot.base.name if robot.base is not None else None,
        END_EFFECTOR: None
        if site is None
        else mujoco.mj_id2name(robot.model, mujoco.mjtObj.mjOBJ_BODY, int(robot.model.site_bodyid[site])),
    }
    return [names.get(target, target) for target in given]


def _skip_reason(parameter: SweepParameter, task: Task, targets: list[str] | None) -> str:
    robot = task.robot
    needs = {
        "floating_base": (robot.base is None, "the robot has no floating base"),
        "imu": (robot.imu is None, "the robot has no IMU"),
        "end_effector": (getattr(task, "ee_site", None) is None, f"task {task.name} has no end effector"),
    }
    if parameter.requires and needs[parameter.requires][0]:
        return needs[parameter.requires][1]
    if parameter.term.startswith("imu_") and robot.imu is None:
        return needs["imu"][1]
    if targets is not None and None in targets:
        missing = parameter.term_fields["targets"][targets.index(None)]
        return needs["floating_base" if missing == BASE else "end_effector"][1]
    return ""


def _plan_model_parameter(parameter: SweepParameter, sim: SimulatorConfig) -> _Plan:
    base = yaml.safe_load(sim.model_parameters) if sim.model_parameters.strip() else {}
    points = []
    for value in parameter.values:
        text = yaml.safe_dump(parameter.model_parameters(value, base or {}), sort_keys=False)
        changed = dataclasses.replace(sim, model_parameters=text)
        try:
            substeps_per_control(sim.control_dt, simulated_robot(changed, SECTION)[0].physics_dt)
        except (ConfigError, BackendError, ModelError) as exc:
            raise ConfigError(f"{parameter.key}.values: {value!r}: {exc}") from exc
        points.append({"model_parameters": text, "randomization": ""})  # the rest nominal
    robot = simulated_robot(sim, SECTION)[0]
    option = parameter.model_parameter.partition(".")[2]
    if not option:
        nominal: float | str = robot.parameters.command_delay_s
    elif option == "cone":
        nominal = next(name for name, code in CONES.items() if code == robot.model.opt.cone)
    else:
        nominal = float(getattr(robot.model.opt, option))
    return _Plan(parameter, tuple(points), nominal, None, "not randomized in training")


def _training_range(
    parameter: SweepParameter, training: RandomizationSpec | None
) -> tuple[tuple[float, float] | None, str]:
    """The range the term was drawn from in training, where it is comparable with the grid."""
    trained = None if training is None or not training.enabled else training.parameter(parameter.term)
    if trained is None:
        return None, "not randomized in training"
    if trained.operation != parameter.operation:
        return None, f"trained as {trained.operation} {trained.low:g}..{trained.high:g}, not comparable"
    note = f"trained on targets {list(trained.targets)}"
    if parameter.spread == "symmetric":
        return (0.0, max(abs(trained.low), abs(trained.high))), note
    return (trained.low, trained.high), note


def training_randomization(
    checkpoint: str | Path, sim: SimulatorConfig
) -> tuple[RandomizationSpec | None, str]:
    """The randomization the checkpoint was trained under, and where that was read: the training
    run's summary.json beside the checkpoint, else the evaluation's own ``sim.randomization``."""
    summary_path = Path(checkpoint).parent / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        summary = {}
    trained = summary.get("randomization") if "iterations" in summary else None  # a training's summary
    if trained == "none":
        return None, f"{summary_path}: none"
    if isinstance(trained, str) and Path(trained).is_file():
        return load_spec(trained), f"{summary_path}: {trained}"
    source = sim.randomization
    if not source.strip():
        return None, "evaluation: none"
    data = yaml.safe_load(source) if "\n" in source else None
    return load_spec(data if isinstance(data, Mapping) else source), "evaluation's randomization setting"


def run_sweep(
    plans: Sequence[_Plan],
    model: Policy,
    episodes: int,
    make_worlds: WorldsFactory,
    stop: threading.Event | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, Any], float]:
    """Each point's success rate over ``episodes`` episodes; the per-parameter results and wall time."""
    from sim_bridge_core.learning.runner import evaluate  # torch: here, not where bringup reads a sweep

    total = sum(len(plan.points) for plan in plans)
    start = time.perf_counter()
    done = 0
    results = {}
    for plan in plans:
        parameter = plan.parameter
        rates: list[float] = []
        for value, changes in zip(parameter.values, plan.points, strict=False):  # none: skipped
            rates.append(evaluate(make_worlds(episodes, **changes), model, episodes, stop))
            done += 1
            elapsed = time.perf_counter() - start
            log(
                f"sweep {done}/{total}: {parameter.name} = {value} {parameter.unit}".rstrip()
                + f": success {rates[-1]:.1%} ({done / elapsed:.2f} points/s, "
                f"~{(total - done) * elapsed / done:.0f} s left)"
            )
        results[parameter.name] = _result(plan, rates, episodes)
    return results, time.perf_counter() - start


def _result(plan: _Plan, rates: list[float], episodes: int) -> dict[str, Any]:
    parameter = plan.parameter
    return {
        "label": parameter.label,
        "unit": parameter.unit,
        "maps_to": parameter.maps_to(),
        "values": list(parameter.values) if not plan.skipped else [],
        "success_rate": rates,
        "training_range": list(plan.training_range) if plan.training_range else None,
        "training_note": plan.training_note,
        "nominal": plan.nominal,
        "episodes": episodes if not plan.skipped else 0,
        "skipped": plan.skipped or None,
    }


@dataclass(frozen=True)
class RobustnessSweep:
    """A sweep checked against the evaluated robot, ready to run: ``prepare`` at the start of an
    evaluation (a bad file or point fails before anything runs), ``run`` after it."""

    sweep: Sweep
    plans: tuple[_Plan, ...]
    episodes: int
    about: dict[str, Any]

    @classmethod
    def prepare(cls, policy: PolicyConfig, sim: SimulatorConfig, task: Task) -> RobustnessSweep:
        sweep = load_sweep(policy.sweep)
        training, source = training_randomization(policy.checkpoint, sim)
        plans = tuple(plan_sweep(sweep, sim, task, training))
        about = {
            "checkpoint": str(Path(policy.checkpoint).resolve()),
            "model": task.robot.name,
            "task": task.name,
            "control_dt": sim.control_dt,
            "seed": sim.seed,
            "training_randomization": source,
            "sweep": sweep.source,
        }
        return cls(sweep, plans, sweep.episodes or policy.eval_episodes, about)

    def run(
        self, model: Policy, output_dir: Path, make_worlds: WorldsFactory, stop: threading.Event | None = None
    ) -> dict[str, Any]:
        """Run every point, write robustness.json and robustness.png; the summary keys naming them."""
        for plan in self.plans:
            if plan.skipped:
                _print(f"sweep: {plan.parameter.name} skipped: {plan.skipped}")
        results, wall_s = run_sweep(self.plans, model, self.episodes, make_worlds, stop, log=_print)
        data = {**self.about, "episodes_per_point": self.episodes, "wall_s": wall_s, "parameters": results}
        json_path = output_dir / ROBUSTNESS_JSON
        json_path.write_text(json.dumps(data, indent=2) + "\n")
        png_path = plot_robustness([("", data)], output_dir / ROBUSTNESS_PNG)
        return {"robustness": str(json_path), "robustness_plot": str(png_path), "robustness_wall_s": wall_s}


def _print(line: str) -> None:
    print(line, flush=True)


def plot_robustness(runs: Sequence[tuple[str, Mapping[str, Any]]], path: str | Path) -> Path:
    """One panel per parameter: success rate against its value for each run (label, robustness.json
    contents), each run's training range shaded in its colour, the nominal value dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, r in runs[0][1]["parameters"].items() if not r["skipped"]]
    columns = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes.flat, names, strict=False):
        for index, (label, data) in enumerate(runs):
            result = data["parameters"].get(name)
            if result and not result["skipped"]:
                _panel(ax, result, colours[index % len(colours)], label)
        ax.set_title(runs[0][1]["parameters"][name]["label"], fontsize=10)
        if len(runs) > 1 or any(label for label, _ in runs):
            ax.legend(fontsize=7)
    first = runs[0][1]
    skipped = [f"{n} ({r['skipped']})" for n, r in first["parameters"].items() if r["skipped"]]
    title = f"{first.get('model', '')} {first.get('task', '')}: success per point, one parameter at a time"
    title += f", {first.get('episodes_per_point')} episodes each; shaded: training range, dashed: nominal"
    if skipped:
        title += "\nskipped: " + "; ".join(skipped)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _panel(ax: Any, result: Mapping[str, Any], colour: str, label: str) -> None:
    values = result["values"]
    names = any(isinstance(value, str) for value in values)
    xs = list(range(len(values))) if names else values
    ax.plot(xs, result["success_rate"], "o-", color=colour, label=label or None, markersize=4)
    if names:
        ax.set_xticks(xs, values)
    low_high, nominal = result["training_range"], result["nominal"]
    if low_high is not None:
        low, high = low_high
        if high > low:
            ax.axvspan(low, high, color=colour, alpha=0.15)
        else:
            ax.axvline(low, color=colour, alpha=0.4, linewidth=4)
    if nominal is not None and (not names or nominal in values):
        ax.axvline(values.index(nominal) if names else nominal, color="0.3", linestyle="--", linewidth=1)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel(result["unit"], fontsize=8)
    ax.set_ylabel("success rate", fontsize=8)
    ax.tick_params(labelsize=7)


def main(argv: list[str] | None = None) -> int:
    """Overlay several robustness.json files in one figure (e.g. two trainings of one robot)."""
    parser = argparse.ArgumentParser(description="Plot robustness.json files side by side (PNG).")
    parser.add_argument("runs", nargs="+", help="LABEL=path/to/robustness.json")
    parser.add_argument("--out", default=ROBUSTNESS_PNG)
    args = parser.parse_args(argv)
    runs = []
    for run in args.runs:
        label, _, path = run.rpartition("=")
        runs.append((label or Path(path).parent.name, json.loads(Path(path).read_text())))
    print(plot_robustness(runs, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
