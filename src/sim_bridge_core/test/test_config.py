"""The one config schema: every bad value fails with a message naming its key."""

from __future__ import annotations

import pytest
from sim_bridge_core.config import ConfigError, from_mapping, setting_specs
from sim_bridge_core.simulator.core import SimulatorConfig


def test_defaults_and_types_come_from_the_dataclass():
    specs = {spec.name: spec for spec in setting_specs(SimulatorConfig)}
    assert specs["num_envs"].type is int and specs["num_envs"].low == 1
    assert specs["mode"].choices == ("lockstep", "realtime", "fast")
    assert specs["mirror_envs"].is_list and specs["mirror_envs"].default == [0]
    assert all(spec.description for spec in specs.values())
    config = from_mapping(SimulatorConfig, {"num_envs": 8, "control_dt": 1}, "simulator")
    assert config.num_envs == 8 and config.control_dt == 1.0 and isinstance(config.control_dt, float)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_env": 4}, "simulator.num_env: unknown key"),
        ({"num_envs": 0}, "simulator.num_envs: must be >= 1"),
        ({"num_envs": "many"}, "simulator.num_envs: must be int"),
        ({"num_envs": True}, "simulator.num_envs: must be int"),
        ({"mode": "slow"}, "simulator.mode: must be one of lockstep, realtime, fast"),
        ({"control_dt": float("nan")}, "simulator.control_dt: must be finite"),
        ({"mirror_envs": 3}, "simulator.mirror_envs: must be a list"),
        ({"mirror_envs": [1, -2]}, "simulator.mirror_envs: must be >= 0"),
    ],
)
def test_bad_values_name_their_key(values, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(SimulatorConfig, values, "simulator")


def test_cross_field_check():
    config = from_mapping(SimulatorConfig, {"num_envs": 2, "mirror_envs": [2]}, "simulator")
    with pytest.raises(ConfigError, match=r"simulator\.mirror_envs: world 2 does not exist"):
        config.check()
