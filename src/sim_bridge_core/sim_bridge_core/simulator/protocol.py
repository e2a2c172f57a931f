"""The lockstep protocol of the ``batch/*`` topics, shared by the simulator and the clients that step it.

``batch/task`` (Float32MultiArray) carries one row per world: the task signals, the task inputs,
then the pairing columns. Float32MultiArray has no header, so ``step`` pairs a batch/task
message with the batch/joint_states of the same control step (a lockstep resend looks like any
other).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sim_bridge_core.envs.batched import StepResult

TASK_SIGNALS = ("reward", "terminated", "truncated")
# Appended after the task inputs (see the module docstring).
TASK_PAIRING = ("success", "step")
# ``step`` wraps here: every integer below 2**24 is exact in float32.
STEP_MODULUS = 1 << 24
_NS = 1_000_000_000


def control_step(time_ns: int, control_dt: float) -> int:
    """The ``step`` field of batch/task for the state stamped ``time_ns``: control periods, mod 2**24."""
    return (int(time_ns) // round(control_dt * _NS)) % STEP_MODULUS


def task_signal_rows(
    result: StepResult | None, inputs: np.ndarray, time_ns: int, control_dt: float
) -> np.ndarray:
    """(N, F) rows of ``batch/task``: reward, terminated, truncated, the inputs, success, step.

    ``result`` is the last step's (None before any step or right after a reset: zeros).
    """
    n = len(inputs)
    if result is None:
        outcome = np.zeros((n, 4))
    else:
        outcome = np.column_stack((result.reward, result.terminated, result.truncated, result.success))
    step = np.full(n, control_step(time_ns, control_dt))
    return np.column_stack((outcome[:, :3], inputs, outcome[:, 3], step))
