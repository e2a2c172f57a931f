"""A simulator shard on another host: two network namespaces joined by a delayed link, DDS over UDP.

Discovery runs without the LOCALHOST range (the peer is on another interface) and the lockstep
crosses the link both ways: the learner, alone on its host, trains over the shard to the end.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import RosProcess, executable

sys.path.insert(0, str(Path(__file__).resolve().parent / "stand_ins"))
from hosts import EmulatedHosts, can_emulate_hosts  # test/stand_ins/hosts.py

WORLD = {"task": "reach", "num_envs": 16, "episode_length_s": 1.0, "control_dt": 0.02}


def ros_args(parameters: dict) -> list[str]:
    return [arg for key, value in parameters.items() for arg in ("-p", f"{key}:={value}")]


def test_a_learner_trains_over_a_shard_on_another_host_across_a_delayed_link(tmp_path):
    why_not = can_emulate_hosts()
    if why_not:
        pytest.skip(f"no emulated hosts here: {why_not}")
    run = tmp_path / "run"
    with EmulatedHosts(delay_ms=2.0) as hosts:
        env = hosts.host_env(os.environ, int(os.environ["ROS_DOMAIN_ID"]))
        simulator = [executable("sim_bridge_sim", "simulator"), "--ros-args", "-r", "__ns:=/far"]
        simulator += ros_args({"mode": "lockstep", **WORLD})
        learner = [executable("sim_bridge_policy", "policy"), "--ros-args"]
        learner += ros_args(
            {
                "mode": "train",
                "transport": "ros",
                "simulators": "[far]",
                "output_dir": str(run),
                "max_env_steps": 2 * 8 * 16,
                "eval_episodes": 4,
                "ppo.num_steps": 8,
                **{f"sim.{key}": value for key, value in WORLD.items()},
            }
        )
        shard = RosProcess(hosts.command(hosts.simulator, simulator), tmp_path / "simulator.log", env=env)
        training = RosProcess(hosts.command(hosts.learner, learner), tmp_path / "policy.log", env=env)
        try:
            assert training.wait_exit(120) == 0, training.output() + shard.output()
            assert shard.alive()
        finally:
            training.stop()
            shard.stop()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 2 * 8 * 16 and summary["simulator_shards"] == ["far"]
