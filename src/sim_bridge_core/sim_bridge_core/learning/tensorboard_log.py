"""Training scalars as TensorBoard event files in the run folder, to watch a run and compare runs.

``tensorboard --logdir runs`` shows every run folder as one run, updated while it trains (the
file is flushed every few seconds). The x axis is env steps, comparable across ``num_envs``,
transports and resumed runs (a resumed run appends a new event file to the same folder).
"""

from __future__ import annotations

import io
import math
import os

import numpy as np
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from sim_bridge_core.learning.runner import REWARD_TERM_PREFIX

# Runner's per-iteration record key -> tag (PPO's, then SAC's and TD3's)
ITERATION_TAGS = {
    "surrogate_loss": "loss/surrogate",
    "value_loss": "loss/value",
    "critic_loss": "loss/critic",
    "actor_loss": "loss/actor",
    "q_value": "policy/q_value",
    "alpha": "policy/alpha",
    "entropy": "policy/entropy",
    "replay_size": "perf/replay_size",
    "learning_rate": "policy/learning_rate",
    "kl": "policy/kl",
    "clip_fraction": "policy/clip_fraction",
    "action_std": "policy/action_std",
    "mean_return": "episode/mean_return",
    "success_rate": "episode/success_rate",
    "env_steps_per_s": "perf/env_steps_per_s",
    "rollout_s": "perf/rollout_s",
    "update_s": "perf/update_s",
}
# summary.json key -> tag
EVALUATION_TAGS = {
    "eval_success_rate_nominal": "eval/success_rate_nominal",
    "eval_success_rate_randomized": "eval/success_rate_randomized",
}
FLUSH_S = 5  # how stale a watched run may look


class TensorBoardLog:
    """Writes ``train``'s iteration records (``iteration`` is an ``on_iteration`` hook) and the
    evaluation results; scalars that are NaN or missing (no episode ended yet) are left out."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self._writer = SummaryWriter(log_dir=str(directory), flush_secs=FLUSH_S)

    def iteration(self, record: dict[str, float], _learner: object = None) -> None:
        """One iteration's scalars, each reward term's mean per episode (``reward/<term>``) included."""
        terms = {key: key for key in record if key.startswith(REWARD_TERM_PREFIX)}
        self._add({**ITERATION_TAGS, **terms}, record, int(record["env_steps"]))

    def evaluation(self, results: dict[str, float | None], env_steps: int) -> None:
        self._add(EVALUATION_TAGS, results, env_steps)

    def video(self, tag: str, frames: np.ndarray, env_steps: int, fps: float) -> None:
        """(N, H, W, 3) uint8 frames as an animated GIF in TensorBoard's images tab: what its own
        add_video writes, encoded here with Pillow (add_video needs moviepy)."""
        images = [Image.fromarray(frame) for frame in frames]
        gif = io.BytesIO()
        duration_ms = round(1000 / fps)
        images[0].save(gif, "GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
        height, width = frames.shape[1:3]
        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif.getvalue())
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self._writer._get_file_writer().add_summary(summary, env_steps)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _add(self, tags: dict[str, str], values: dict[str, float | None], env_steps: int) -> None:
        for key, tag in tags.items():
            value = values.get(key)
            if value is not None and math.isfinite(value):
                self._writer.add_scalar(tag, value, global_step=env_steps)
