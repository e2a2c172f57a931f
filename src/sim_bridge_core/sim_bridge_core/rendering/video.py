"""Frames to an H.264 mp4 that any player (and TensorBoard's viewers) opens.

H.264 in yuv420p wants even sizes: an odd width or height loses its last column or row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_mp4(path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float) -> int:
    """Write (H, W, 3) uint8 RGB ``frames`` to ``path`` at ``fps``; returns the number written."""
    if not fps > 0:
        raise ValueError(f"video: fps must be positive, not {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"video: frames must be (H, W, 3) uint8, not {frame.shape} {frame.dtype}")
            height, width = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            image = np.ascontiguousarray(frame[:height, :width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            count += 1
        if stream is not None:
            container.mux(stream.encode(None))
    return count


def count_mp4_frames(path: str | os.PathLike[str]) -> int:
    """Frames an mp4 decodes to (what a player shows)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def sample_mp4_frames(path: str | os.PathLike[str], count: int) -> np.ndarray:
    """(count, H, W, 3) uint8: frames spread evenly over the video, first and last included
    (a few stills where a viewer cannot play the video)."""
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return np.stack([frames[k] for k in picks])
