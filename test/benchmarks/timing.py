"""Throughput measurement shared by the stepping benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(step: Callable[[int], None], steps: int, num_envs: int) -> float:
    """Env-steps (control periods x worlds) per second of ``steps`` calls, after one warm-up call."""
    step(0)  # first touch of buffers and threads
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * num_envs / (time.perf_counter() - start)
