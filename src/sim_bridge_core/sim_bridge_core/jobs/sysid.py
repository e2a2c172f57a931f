"""``bringup sysid``'s job, start to outputs: check everything, fit, then write (nothing before).

Every problem with the input — a folder that is not a bag or cannot be read, a bag without
commands or without the robot's joints, too little data for the parameters asked, joints that
never move, the sysid extra missing — raises ``SysidInputError`` or ``ConfigError`` with one
line, before anything is written. Messages a bag's reader skipped are counted in the log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import ModelError, PdGains, driver_joint_names, load_robot_config, robot_spec
from sim_bridge_core.sysid.bags import read_run
from sim_bridge_core.sysid.config import SysidConfig
from sim_bridge_core.sysid.identify import identify, load_sysid
from sim_bridge_core.sysid.outputs import write_outputs


def output_dir_for(config: SysidConfig) -> Path:
    """The output folder (default runs/<timestamp>_sysid), checked creatable but not created."""
    path = Path(config.output_dir or time.strftime("runs/%Y%m%d-%H%M%S_sysid")).expanduser().resolve()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"sysid.output_dir: {path} cannot be created (no writable folder above it)")
    return path


def run_sysid(config: SysidConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Identify the robot of ``config.robot`` from ``config.bags``; the paths written and the figures."""
    config.check()
    if not config.bags:
        raise ConfigError("sysid.bags: no bag given (bag:=<rosbag2 folder>, repeatable)")
    if not config.robot:
        raise ConfigError("sysid.robot: no robot config given")
    output_dir = output_dir_for(config)
    load_sysid()
    source, source_path, robot = load_robot_config(config.robot, Path(config.robot).expanduser().parent)
    try:
        spec = robot_spec(source.model, PdGains(source.kp, source.kd))
    except ModelError as exc:
        raise ConfigError(f"{source_path.name}: model: {exc}") from exc
    names = driver_joint_names(
        source.joint_name_map, source.joint_prefix, robot.joint_names, source_path.name
    )
    runs, validation = (
        [read_run(bag, robot, config.state_topic, config.command_topic, names) for bag in bags]
        for bags in (config.bags, config.validation_bags)
    )
    for run in runs + validation:
        skipped = [
            f"{count} {what}"
            for count, what in (
                (run.foreign, "states without the robot's joints (another publisher on the topic)"),
                (run.invalid, "states with missing or non-finite positions or velocities"),
                (run.rejected, "commands the controller would refuse"),
            )
            if count
        ]
        log(
            f"{run.path}: {len(run.times)} states on {run.state_topic}, {len(run.commands)} commands on "
            f"{run.command_topic} ({run.interface}) over {run.duration_s:.1f} s"
            + (f"; skipped {', '.join(skipped)}" if skipped else "")
        )
    result = identify(runs, robot, spec, config, log=log, validation=validation)
    paths = write_outputs(result, source, source_path, robot.path, output_dir)
    return {"paths": paths, "result": result}
