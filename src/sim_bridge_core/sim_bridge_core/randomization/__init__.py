"""Domain randomization: a validated spec, vectorized draws over worlds, and the hooks BatchedEnv calls.

spec = load_spec("config/randomization/default.yaml")
randomizer = Randomizer(spec, backend)            # draws once (startup)
env = BatchedEnv(backend, task, 5.0, randomizer=randomizer)
values, names = randomizer.applied()              # (N, P) float64, P names without commas

Histograms of a spec's draws: ``randomization.plot`` (imports matplotlib only when plotting).
"""

from __future__ import annotations

from sim_bridge_core.randomization.randomizer import Randomizer, VisualState
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
    "VisualState",
    "bind",
    "draw",
    "load_spec",
    "spec_from_mapping",
]
