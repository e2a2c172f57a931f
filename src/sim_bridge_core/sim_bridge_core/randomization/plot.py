"""Histograms of what a spec draws, one panel per parameter, and a small CLI.

    python -m sim_bridge_core.randomization.plot config/randomization/default.yaml \\
        --model arm7 --seed 0 --out dist.png

Each panel shows the raw draws of one parameter over ``num_envs`` worlds (all its
targets pooled): the factor of a ``scale``, the offset of an ``add``, the value of an
``abs``, with the range marked. matplotlib is imported only when plotting.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sim_bridge_core.config import ConfigError
from sim_bridge_core.models import ModelError, RobotModel, load_robot
from sim_bridge_core.randomization.sampling import bind
from sim_bridge_core.randomization.spec import RandomizationSpec, load_spec

_MEANING = {"scale": "factor", "add": "offset", "abs": "value"}


def plot_distributions(
    spec: RandomizationSpec | str | Path | Mapping[str, Any],
    model: RobotModel | str,
    seed: int = 0,
    path: str | Path = "randomization.png",
    num_envs: int = 1024,
) -> Path:
    """Write a PNG grid of histograms of ``spec``'s draws for ``num_envs`` worlds of ``model``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = load_spec(spec)
    robot = model if isinstance(model, RobotModel) else load_robot(model)
    parameters = bind(spec, robot)
    rng = np.random.default_rng(seed)
    columns = min(4, max(1, len(parameters)))
    rows = max(1, math.ceil(len(parameters) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(parameters) :]:
        ax.set_axis_off()
    if not parameters:
        axes[0, 0].text(0.5, 0.5, "nothing randomized", ha="center", va="center")
    for ax, p in zip(axes.flat, parameters, strict=False):
        s = p.spec
        draws = p.draw(rng, num_envs)
        values = draws[:, 0] if s.shared else draws.ravel()
        if p.kind.integer:
            bins = np.arange(s.low - 0.5, s.high + 1.5)
        else:
            bins = 40 if s.high > s.low else 1
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.8, rwidth=0.8 if p.kind.integer else None)
        for end in (s.low, s.high):
            ax.axvline(end, color="tab:red", linewidth=1, linestyle="--")
        ax.set_title(f"{s.name}\n{s.operation}, {s.distribution}, {p.size} target(s)", fontsize=9)
        ax.set_xlabel(_MEANING[s.operation], fontsize=8)
        ax.tick_params(labelsize=7)
    title = f"{robot.name}: {num_envs} worlds, seed {seed}, schedule {spec.schedule}"
    if spec.curriculum.start_fraction < 1.0:
        title += (
            f"; full ranges shown (the curriculum starts at {spec.curriculum.start_fraction:g} of them "
            f"and reaches them after {spec.curriculum.steps} steps)"
        )
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Histograms of a randomization spec's draws (PNG).")
    parser.add_argument("spec", help="randomization YAML file")
    parser.add_argument("--model", default="arm7", help="built-in model name or MJCF/URDF path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--out", default="randomization.png")
    args = parser.parse_args(argv)
    try:
        out = plot_distributions(args.spec, args.model, args.seed, args.out, args.num_envs)
    except (ConfigError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
