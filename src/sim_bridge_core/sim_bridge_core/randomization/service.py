"""What the randomization node owns, without ROS: its settings and the spec it sends to the simulator.

The node keeps the spec as a YAML mapping; each parameter's range is exposed as the ROS
parameters ``<name>.low`` / ``<name>.high``. Every change goes through ``compose`` (the
schema's own validation) before anything is sent, so a bad value is refused with the
schema's reason and the simulator keeps what it had.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from sim_bridge_core.config import ConfigError, read_yaml_file, setting
from sim_bridge_core.randomization.spec import SCHEDULES, SECTION, spec_from_mapping


@dataclass(frozen=True)
class RandomizationNodeConfig:
    config: str = setting(
        "", "randomization spec YAML (e.g. share/sim_bridge/config/randomization/default.yaml)"
    )
    seed: int = setting(-1, "seed of the draws; -1 = the spec's", low=-1)
    schedule: str = setting("", "startup | reset | interval; '' = the spec's", choices=("", *SCHEDULES))
    interval_s: float = setting(0.0, "resampling period of the interval schedule; 0 = the spec's", low=0.0)
    enabled: bool = setting(True, "false: nominal physics everywhere (evaluation without randomization)")
    simulator: str = setting("simulator", "name of the simulator node whose worlds are randomized")


def read_spec_file(path: str) -> dict[str, Any]:
    """The spec mapping in a YAML file (with or without the top-level ``randomization`` key)."""
    data = read_yaml_file(path, "randomization.config") or {}
    if isinstance(data, Mapping) and set(data) == {SECTION}:
        data = data[SECTION] or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"randomization.config: {path} must hold a mapping")
    return dict(data)


def apply_settings(spec: Mapping[str, Any], config: RandomizationNodeConfig) -> dict[str, Any]:
    """The spec with the node's seed, schedule and interval overrides."""
    spec = dict(spec)
    if config.seed >= 0:
        spec["seed"] = config.seed
    if config.schedule:
        spec["schedule"] = config.schedule
    if config.interval_s > 0:
        spec["interval_s"] = config.interval_s
    return spec


def ranges(spec: Mapping[str, Any]) -> dict[str, float]:
    """``<parameter>.low`` / ``.high`` of every parameter, as ROS parameter names and values."""
    return {
        f"{name}.{bound}": float(entry[bound])
        for name, entry in spec.items()
        if isinstance(entry, Mapping)
        for bound in ("low", "high")
        if bound in entry
    }


def compose(spec: Mapping[str, Any], changed_ranges: Mapping[str, float]) -> dict[str, Any]:
    """The spec with some ranges changed, validated; ConfigError (naming the key) refuses it."""
    updated = {name: dict(entry) if isinstance(entry, Mapping) else entry for name, entry in spec.items()}
    for key, value in changed_ranges.items():
        name, _, bound = key.rpartition(".")
        updated[name][bound] = value
    spec_from_mapping(updated)
    return updated


def to_yaml(spec: Mapping[str, Any]) -> str:
    """The text sent as the simulator's ``randomization`` parameter."""
    return yaml.safe_dump({SECTION: dict(spec)}, sort_keys=False)
