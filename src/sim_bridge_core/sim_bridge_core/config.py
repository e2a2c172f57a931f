"""The one config schema: typed dataclasses whose fields carry their own documentation and bounds.

The same field metadata validates YAML files, declares ROS parameters (with descriptors
and ranges), and checks launch arguments and ``bringup`` overrides, so a key means the
same thing everywhere and a bad value fails with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that is unknown, of the wrong type or out of range; the message names the key."""


def setting(
    default: Any,
    description: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: Sequence[str] | None = None,
    read_only: bool = True,
) -> Any:
    """A config field with the documentation and bounds that every front end shares.

    ``read_only`` settings are fixed at start-up (ROS parameters declared read-only);
    the others may change while the node runs.
    """
    meta = {"description": description, "low": low, "high": high, "choices": choices, "read_only": read_only}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SettingSpec:
    """One setting as front ends see it: name, type, default and bounds."""

    name: str
    type: type
    default: Any
    description: str
    low: float | None
    high: float | None
    choices: tuple[str, ...] | None
    read_only: bool
    item_type: type | None = None  # element type of a list setting

    @property
    def is_list(self) -> bool:
        return self.type is list


def setting_specs(cls: type) -> list[SettingSpec]:
    """The settings of a config dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        base = typing.get_origin(hint) or hint
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        choices = f.metadata.get("choices")
        specs.append(
            SettingSpec(
                name=f.name,
                type=base,
                default=default,
                description=f.metadata.get("description", ""),
                low=f.metadata.get("low"),
                high=f.metadata.get("high"),
                choices=tuple(choices) if choices else None,
                read_only=f.metadata.get("read_only", True),
                item_type=typing.get_args(hint)[0] if base is list else None,
            )
        )
    return specs


def from_mapping(cls: type[T], values: Mapping[str, Any], section: str) -> T:
    """Build and validate ``cls`` from a mapping; unknown keys and bad values raise ConfigError."""
    specs = {s.name: s for s in setting_specs(cls)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown key (known: {', '.join(specs)})")
    checked = {name: check_value(specs[name], value, section) for name, value in values.items()}
    return cls(**checked)


def check_value(spec: SettingSpec, value: Any, section: str) -> Any:
    """``value`` converted to the setting's type, or ConfigError naming ``section.name``."""
    key = f"{section}.{spec.name}"
    value = _coerce(spec, value, key)
    items = value if spec.is_list else [value]
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{key}: must be finite, got {item}")
        if spec.low is not None and item < spec.low:
            raise ConfigError(f"{key}: must be >= {spec.low}, got {item}")
        if spec.high is not None and item > spec.high:
            raise ConfigError(f"{key}: must be <= {spec.high}, got {item}")
        if spec.choices is not None and item not in spec.choices:
            raise ConfigError(f"{key}: must be one of {', '.join(spec.choices)}, got '{item}'")
    return value


def _coerce(spec: SettingSpec, value: Any, key: str) -> Any:
    if spec.is_list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: must be a list, got {type(value).__name__} {value!r}")
        return [_scalar(spec.item_type, item, key) for item in value]
    return _scalar(spec.type, value, key)


def _scalar(kind: type, value: Any, key: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is dict:  # a section validated by its own parser (YAML files only, not a ROS parameter)
        if isinstance(value, Mapping):
            return dict(value)
        if value is None:
            return {}
    raise ConfigError(f"{key}: must be {kind.__name__}, got {type(value).__name__} {value!r}")


def read_yaml_file(path: str | Path, key: str) -> Any:
    """The YAML document in ``path`` (None if empty); an unreadable or malformed file raises
    ConfigError naming ``key``, the setting that pointed at it."""
    import yaml

    path = Path(path).expanduser()
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: {path} is not valid YAML: {exc}") from exc
