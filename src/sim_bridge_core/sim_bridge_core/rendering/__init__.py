"""Cameras and offscreen rendering: what a robot config's ``cameras:`` adds to a model, and one
world's picture from any camera (the simulator's camera topics, evaluation videos)."""

from sim_bridge_core.rendering.cameras import (
    CameraSpec,
    add_cameras,
    camera_info,
    model_cameras,
    parse_cameras,
)
from sim_bridge_core.rendering.renderer import WorldRenderer, require_gl
from sim_bridge_core.rendering.video import count_mp4_frames, sample_mp4_frames, write_mp4

__all__ = [
    "CameraSpec",
    "WorldRenderer",
    "add_cameras",
    "camera_info",
    "count_mp4_frames",
    "model_cameras",
    "parse_cameras",
    "require_gl",
    "sample_mp4_frames",
    "write_mp4",
]
