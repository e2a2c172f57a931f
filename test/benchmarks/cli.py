"""The command-line options every stepping/training benchmark shares: which worlds to run."""

from __future__ import annotations

import argparse
from pathlib import Path


def world_parser(
    description: str | None, num_envs: int = 1024, episode_length_s: float | None = None
) -> argparse.ArgumentParser:
    """A parser with --model, --task, --num-envs, --control-dt (and --episode-length-s if given)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="arm7")
    parser.add_argument("--task", default="reach")
    parser.add_argument("--num-envs", type=int, default=num_envs)
    parser.add_argument("--control-dt", type=float, default=0.02)
    if episode_length_s is not None:
        parser.add_argument("--episode-length-s", type=float, default=episode_length_s)
    return parser


def add_ros_arguments(parser: argparse.ArgumentParser) -> None:
    """--startup-timeout, --domain-id and --json: what the benchmarks with a ROS process share."""
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: random)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
