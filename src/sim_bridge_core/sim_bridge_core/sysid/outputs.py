"""What ``bringup sysid`` writes: robot.yaml, sysid.json, sysid_report.png and randomization.yaml.

* ``robot.yaml``: the recorded robot's config (every key of the robot config it was given) with
  ``model_parameters`` holding the values the data identifies (``selection``) and the delay in
  whole physics steps as the simulator applies it. Every job takes it as ``robot:=S/robot.yaml``.
* ``sysid.json``: per parameter its nominal, first-fit and written value, bounds, the 95 %
  half-width of its confidence interval, whether the data identifies it and, where not, why it
  stays nominal; per joint the damping + kv sum (what a position servo's data fixes); the errors
  of the nominal, the written and the all-fitted model on the fit, held-out and validation
  windows; the bags, windows and optimizer figures.
* ``sysid_report.png``: recorded, nominal and identified joint positions on the validation
  windows (runs of another kind), or on the held-out ones where there are none.
* ``randomization.yaml``: a spec for ``randomization:=`` centred on the identified values (with
  ``robot:=S/robot.yaml`` they are the nominal ones, so every range is a ``scale`` about 1) whose
  ranges come from the uncertainties: the widest relative half-width of the identified joints of
  each kind (the spec has one range per kind), at least ``MIN_RANGE`` and at most ``MAX_RANGE``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sim_bridge_core.sysid.config import DELAY
from sim_bridge_core.sysid.identify import SysidResult
from sim_bridge_core.sysid.selection import IDENTIFIED_WITHIN, pinned, relative_width

ROBOT = "robot.yaml"
SUMMARY = "sysid.json"
REPORT = "sysid_report.png"
RANDOMIZATION = "randomization.yaml"
MIN_RANGE, MAX_RANGE = 0.02, 0.5
RANDOMIZED = {
    "damping": "dof_damping",
    "armature": "dof_armature",
    "frictionloss": "dof_frictionloss",
    "kp": "actuator_kp",
    "kv": "actuator_kd",
}
REPORT_WINDOWS = 6


def relative_half_width(result: SysidResult, name: str) -> float:
    unknown = next(u for u in result.unknowns if u.name == name)
    return relative_width(result.half_widths[name], result.fitted[name], unknown.unit)


def robot_config(source: Any, result: SysidResult) -> dict[str, Any]:
    """The source robot config (a RobotConfig) with the identified values as model_parameters."""
    config = dataclasses.asdict(source)
    overrides = dict(config.get("model_parameters") or {})
    joints = {name: dict(values) for name, values in (overrides.get("joints") or {}).items()}
    identified = result.parameters()
    for joint, values in identified.joints.items():
        joints.setdefault(joint, {}).update(values)
    overrides["joints"] = joints
    if any(u.joint is None for u in result.unknowns):
        overrides["command_delay_s"] = identified.command_delay_s
    config["model_parameters"] = overrides
    return config


def summary(result: SysidResult, source_path: Path, model_path: str) -> dict[str, Any]:
    parameters = {}
    for unknown in result.unknowns:
        half = result.half_widths[unknown.name]
        entry = {
            "joint": unknown.joint,
            "kind": unknown.kind,
            "nominal": unknown.nominal,
            "identified": result.identified[unknown.name],
            "first_fit": result.fitted[unknown.name],
            "lower": unknown.lower,
            "upper": unknown.upper,
            "uncertainty_95": half if math.isfinite(half) else None,
            "identified_by_data": pinned(unknown, result.fitted, result.half_widths, result.moved),
            "in_robot_yaml": result.reasons[unknown.name] is None,
            "why_nominal": result.reasons[unknown.name],
        }
        if unknown.kind == DELAY:
            entry["applied"] = result.parameters().command_delay_s
        parameters[unknown.name] = entry
    sums = {}
    for joint, half in result.sum_half_widths.items():
        value = sum(result.identified[f"{joint}.{kind}"] for kind in ("damping", "kv"))
        sums[joint] = {
            "nominal": sum(parameters[f"{joint}.{kind}"]["nominal"] for kind in ("damping", "kv")),
            "identified": value,
            "uncertainty_95": half if math.isfinite(half) else None,
            "identified_by_data": half <= IDENTIFIED_WITHIN * abs(value)
            and abs(result.moved[f"{joint}.damping"] + result.moved[f"{joint}.kv"]) <= half,
        }
    return {
        "robot": str(source_path),
        "model_path": model_path,
        "bags": [_bag(run) for run in result.runs],
        "validation_bags": [_bag(run) for run in result.validation_runs],
        "physics_dt": result.physics_dt,
        "window_s": result.window_s,
        "parameters": parameters,
        "damping_plus_kv": sums,
        "errors": result.errors,
        "iterations": result.iterations,
        "wall_s": result.wall_s,
        "optimizer": "mujoco.sysid.optimize (mujoco.minimize.least_squares, Levenberg-Marquardt)",
        "identified_within": IDENTIFIED_WITHIN,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _bag(run: Any) -> dict[str, Any]:
    return {
        "path": str(run.path),
        "state_topic": run.state_topic,
        "command_topic": run.command_topic,
        "command_interface": run.interface,
        "duration_s": run.duration_s,
        "states": len(run.times),
        "commands": len(run.commands),
        "commands_skipped": run.rejected,
        "states_skipped": {"without_robot_joints": run.foreign, "invalid": run.invalid},
    }


def randomization(result: SysidResult) -> dict[str, Any]:
    spec: dict[str, Any] = {"enabled": True, "seed": 0, "schedule": "reset"}
    for kind, parameter in RANDOMIZED.items():
        unknowns = [u for u in result.unknowns if u.kind == kind]
        if not unknowns:
            continue
        widths = [relative_half_width(result, u.name) for u in unknowns]
        if kind == "kv" and result.sum_half_widths:  # the servo's damping: the data fixes damping + kv
            widths = [
                half / (result.identified[f"{joint}.kv"] + result.identified[f"{joint}.damping"])
                for joint, half in result.sum_half_widths.items()
            ]
        width = float(np.clip(max(widths), MIN_RANGE, MAX_RANGE))
        spec[parameter] = {
            "targets": [u.joint for u in unknowns],
            "operation": "scale",
            "distribution": "uniform",
            "low": round(1.0 - width, 6),
            "high": round(1.0 + width, 6),
        }
    return {"randomization": spec}


def plot_report(result: SysidResult, path: Path) -> None:
    """Recorded, nominal and identified positions of each joint on the first validation windows (runs
    of another kind), or on the first held-out ones where there are none."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    joints = result.joint_names
    figure = Figure(figsize=(10, 1.6 * len(joints) + 1), tight_layout=True)
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(len(joints), 1, k + 1) for k in range(len(joints))]
    part = "validation" if "validation" in result.traces else "held_out"
    shown = [w for w in result.windows if w.part == part]
    predicted = result.traces[part]
    traces = zip(shown, predicted["nominal"], predicted["identified"], strict=True)
    for w, (window, nominal, identified) in enumerate(list(traces)[:REPORT_WINDOWS]):
        for k, axis in enumerate(axes):
            first = w == 0
            axis.plot(
                window.times, window.positions[:, k], color="0.6", lw=3, label="recorded" if first else None
            )
            axis.plot(
                window.times, nominal[:, k], "--", color="tab:red", lw=1, label="nominal" if first else None
            )
            axis.plot(
                window.times, identified[:, k], color="tab:blue", lw=1, label="identified" if first else None
            )
    errors = result.errors[part]
    what = "validation" if part == "validation" else "held-out"
    for joint, axis in zip(joints, axes, strict=True):
        before = errors["nominal"]["position_rms_rad_per_joint"][joint]
        after = errors["identified"]["position_rms_rad_per_joint"][joint]
        axis.set_ylabel(f"{joint}, rad", fontsize=8)
        axis.set_title(
            f"{joint}: {what} RMS error {before:.2e} rad nominal, {after:.2e} rad identified", fontsize=8
        )
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel(f"bag time, s: {what} windows, each rolled out open loop from its recorded start")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


def error_line(result: SysidResult) -> str:
    """Joint position errors before and after, held out and (if any) on the validation runs."""
    parts = [("held-out", "held_out"), ("validation", "validation")]
    return "; ".join(
        f"{what} joint position error {result.errors[part]['nominal']['position_rms_rad']:.3g} rad nominal "
        f"-> {result.errors[part]['identified']['position_rms_rad']:.3g} rad identified"
        for what, part in parts
        if part in result.errors
    )


def write_outputs(
    result: SysidResult, source: Any, source_path: Path, model_path: str, output_dir: Path
) -> dict[str, Path]:
    """Write the four files into ``output_dir`` (created); return their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: output_dir / name for name in (ROBOT, SUMMARY, REPORT, RANDOMIZATION)}
    header = (
        f"# Identified by bringup sysid from {', '.join(str(r.path) for r in result.runs)}\n"
        f"# (robot {source_path}). {error_line(result)}. Details: {SUMMARY}.\n"
    )
    paths[ROBOT].write_text(header + yaml.safe_dump(robot_config(source, result), sort_keys=False))
    paths[SUMMARY].write_text(json.dumps(summary(result, source_path, model_path), indent=2) + "\n")
    paths[RANDOMIZATION].write_text(
        "# Domain randomization about the identified robot: use with robot:=robot.yaml (scale 1 =\n"
        "# the identified value); ranges from the identification's 95 % uncertainty (sysid.json).\n"
        + yaml.safe_dump(randomization(result), sort_keys=False)
    )
    plot_report(result, paths[REPORT])
    return paths
