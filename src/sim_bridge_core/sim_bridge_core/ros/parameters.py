"""Declare a config dataclass as ROS parameters, with descriptors, and read it back validated."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from sim_bridge_core.config import ConfigError, SettingSpec, check_value, from_mapping, setting_specs

T = TypeVar("T")
_INT64_MAX = (1 << 63) - 1
_ARRAY_TYPES = {
    float: Parameter.Type.DOUBLE_ARRAY,
    int: Parameter.Type.INTEGER_ARRAY,
    str: Parameter.Type.STRING_ARRAY,
    bool: Parameter.Type.BOOL_ARRAY,
}


def descriptor(spec: SettingSpec) -> ParameterDescriptor:
    """A ParameterDescriptor carrying the setting's description, bounds and choices."""
    desc = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.low is not None or spec.high is not None:
        if spec.type is int:
            low = int(spec.low) if spec.low is not None else -_INT64_MAX
            high = int(spec.high) if spec.high is not None else _INT64_MAX
            desc.integer_range = [IntegerRange(from_value=low, to_value=high, step=0)]
        elif spec.type is float:
            low = float(spec.low) if spec.low is not None else -sys.float_info.max
            high = float(spec.high) if spec.high is not None else sys.float_info.max
            desc.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    return desc


def declare_config(node: Node, cls: type[T], section: str, prefix: str = "") -> T:
    """Declare every setting of ``cls`` on ``node`` (named ``prefix + key``) and return the validated config.

    Any problem (wrong type, out of range, unknown choice) raises ConfigError naming
    ``section.key``, so a node can fail at start-up with one clear line. A prefix such as
    ``"ppo."`` groups a second config under one node (``ppo: {num_steps: 24}`` in YAML).
    """
    values = {}
    for spec in setting_specs(cls):
        # An empty list says nothing of its element type, so declare the typed array instead.
        default = _ARRAY_TYPES[spec.item_type] if spec.is_list and not spec.default else spec.default
        try:
            value = node.declare_parameter(prefix + spec.name, default, descriptor(spec)).value
        except ParameterUninitializedException:
            value = None
        except (ParameterException, TypeError, ValueError) as exc:
            raise ConfigError(f"{section}.{spec.name}: {exc}") from None
        values[spec.name] = list(value or []) if spec.is_list else value
    return from_mapping(cls, values, section)


def watch_config(
    node: Node, cls: type[T], section: str, get: Callable[[], T], apply: Callable[[T], None]
) -> None:
    """Let the writable settings of ``cls`` change at run time, validated by the same schema.

    A refused value (read-only, wrong type, out of range, or a ConfigError from ``apply``)
    is reported back to the caller with the reason, and nothing changes.
    """
    specs = {spec.name: spec for spec in setting_specs(cls)}

    def on_set(parameters: list[Parameter]) -> SetParametersResult:
        changes = {}
        for parameter in parameters:
            spec = specs.get(parameter.name)
            if spec is None:
                continue
            try:
                changes[spec.name] = check_value(spec, parameter.value, section)
            except ConfigError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if changes:
            try:
                apply(dataclasses.replace(get(), **changes))
            except ConfigError as exc:  # the node refused the combination; nothing changed
                return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)


def parameter_overrides(values: dict[str, Any], schemas: dict[str, type]) -> list[Parameter]:
    """``values`` (validated, dotted names) as rclpy Parameter overrides.

    An empty list says nothing of its element type and rclpy would take it for a byte array,
    so an empty list equal to the default is left to the declaration; any other one is typed
    from the schema.
    """
    specs = {prefix + spec.name: spec for prefix, cls in schemas.items() for spec in setting_specs(cls)}
    parameters = []
    for name, value in values.items():
        spec = specs.get(name)
        if spec is not None and spec.is_list and not value:
            if spec.default:
                parameters.append(Parameter(name, _ARRAY_TYPES[spec.item_type], []))
        else:
            parameters.append(Parameter(name, value=value))
    return parameters
