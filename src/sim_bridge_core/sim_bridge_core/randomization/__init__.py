"""Domain randomization: a validated spec, vectorized draws over worlds, and the hooks BatchedEnv calls.

spec = load_spec("config/randomization/default.yaml")
randomizer = Randomizer(spec, backend)            # draws once (startup)
env = BatchedEnv(backend, task, 5.0, randomizer=randomizer)
values, names = randomizer.applied()              # (N, P) float64, P names without commas
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sim_bridge_core.models import RobotModel
from sim_bridge_core.randomization.randomizer import Randomizer
from sim_bridge_core.randomization.sampling import BoundParameter, bind, draw
from sim_bridge_core.randomization.spec import (
    DISTRIBUTIONS,
    OPERATIONS,
    PARAMETERS,
    SCHEDULES,
    CurriculumSpec,
    ParameterKind,
    ParameterSpec,
    RandomizationSpec,
    load_spec,
    spec_from_mapping,
)


def plot_distributions(
    spec: RandomizationSpec | str | Path | Mapping[str, Any],
    model: RobotModel | str,
    seed: int = 0,
    path: str | Path = "randomization.png",
    num_envs: int = 1024,
) -> Path:
    """A PNG grid of histograms of ``spec``'s draws over ``num_envs`` worlds (see ``randomization.plot``)."""
    from sim_bridge_core.randomization import plot  # matplotlib only when plotting; keeps `-m ...plot` clean

    return plot.plot_distributions(spec, model, seed, path, num_envs)


__all__ = [
    "DISTRIBUTIONS",
    "OPERATIONS",
    "PARAMETERS",
    "SCHEDULES",
    "BoundParameter",
    "CurriculumSpec",
    "ParameterKind",
    "ParameterSpec",
    "RandomizationSpec",
    "Randomizer",
    "bind",
    "draw",
    "load_spec",
    "plot_distributions",
    "spec_from_mapping",
]
