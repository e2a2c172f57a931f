"""mp4 writing: the file decodes back to the frames written, in even sizes."""

import av
import numpy as np
import pytest
from sim_bridge_core.rendering.video import count_mp4_frames, write_mp4


def test_mp4_decodes_to_the_frames_written(tmp_path):
    frames = [np.full((61, 81, 3), 10 * k, np.uint8) for k in range(25)]
    path = tmp_path / "videos" / "clip.mp4"
    assert write_mp4(path, frames, fps=50.0) == 25
    assert count_mp4_frames(path) == 25
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (80, 60)  # odd sizes lose a column and a row
        assert stream.average_rate == 50
        last = list(container.decode(video=0))[-1].to_ndarray(format="rgb24")
    assert abs(float(last.mean()) - 240) < 3  # the last frame's grey, through yuv420p


def test_bad_frames_are_refused_with_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        write_mp4(tmp_path / "a.mp4", [np.zeros((8, 8), np.uint8)], fps=25.0)
    with pytest.raises(ValueError, match="fps"):
        write_mp4(tmp_path / "b.mp4", [], fps=0.0)
