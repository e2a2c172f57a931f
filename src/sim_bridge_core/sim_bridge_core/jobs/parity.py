"""Sim-to-sim parity: a checkpoint evaluated through the deploy path, beside its fused evaluation.

``bringup eval transport:=deploy`` runs three nodes: the simulator as the robot (one world,
lockstep on sim time, so the run goes as fast as the nodes answer), the policy node in deploy
mode (only the robot-facing topics: ``joint_states`` and ``goal`` in, ``joint_trajectory`` or
``joint_commands`` out) and the evaluator. The evaluator is the operator and the referee: it
publishes each episode's goal (the task inputs the simulator drew when the episode began) and
reads each episode's outcome from the simulator's ``batch/task``; the policy never sees that
topic. ``DeployEpisodes`` does the counting; the ROS node only moves messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim_bridge_core.config import setting
from sim_bridge_core.simulator.protocol import STEP_MODULUS, TASK_PAIRING, TASK_SIGNALS
from sim_bridge_core.simulator.wire import WireError, decode_multi_array
from sim_bridge_core.tasks import Task


@dataclass(frozen=True)
class EvaluatorConfig:
    checkpoint: str = setting("", "the checkpoint.pt being deployed (for the fused evaluation beside it)")
    output_dir: str = setting("", "where summary.json goes (default runs/<timestamp>)")
    episodes: int = setting(100, "episodes run through the deploy path", low=1, high=1 << 20)
    eval_episodes: int = setting(
        1024, "episodes of the fused evaluation beside it, nominal physics (0 = none)", low=0, high=1 << 30
    )
    timeout_s: float = setting(
        60.0, "fail when the simulator reports no step for this long (wall time)", low=1.0, high=1e6
    )


class DeployEpisodes:
    """Episode outcomes of the simulator's single world, read from its ``batch/task`` messages.

    ``on_task`` returns the goal to publish when an episode begins (the first message, and
    every step that ended an episode: the world was already reset and its inputs are the new
    episode's). Lockstep resends of a step are recognized by the step field and ignored.
    """

    def __init__(self, task: Task, episodes: int) -> None:
        self.task = task
        self.episodes = episodes
        self.fields = (*TASK_SIGNALS, *task.input_names, *TASK_PAIRING)
        self.labels = ("env", ",".join(self.fields))
        self.outcomes: list[bool] = []
        self.steps = 0
        self._last_step: int | None = None

    @property
    def done(self) -> bool:
        return len(self.outcomes) >= self.episodes

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.outcomes)) if self.outcomes else float("nan")

    def on_task(self, data: bytes) -> np.ndarray | None:
        """A serialized batch/task; the new episode's goal point, or None. ValueError if malformed."""
        try:
            labels, rows = decode_multi_array(data, np.float32)
        except WireError as exc:
            raise ValueError(f"malformed batch/task: {exc}") from exc
        if labels != self.labels or rows.shape != (1, len(self.fields)):
            raise ValueError(
                f"batch/task {labels} {rows.shape}: expected one world of task '{self.task.name}' "
                f"with fields {self.labels[1]}"
            )
        row = rows[0].astype(np.float64)
        step = int(row[-1])
        if step == self._last_step:
            return None  # a lockstep resend
        first = self._last_step is None
        moved = 0 if first else (step - self._last_step) % STEP_MODULUS
        self._last_step = step
        inputs = row[len(TASK_SIGNALS) : -len(TASK_PAIRING)]
        if first:
            return self.task.goal_from_inputs(inputs)
        self.steps += moved
        terminated, truncated, success = row[1], row[2], row[-2]
        if not (terminated or truncated):
            return None
        if not self.done:
            self.outcomes.append(bool(success))
        return self.task.goal_from_inputs(inputs)
